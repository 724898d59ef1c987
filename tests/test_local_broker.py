"""The private node the tests and the local run start: reachable from this machine only, secrets private."""

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rabbitipc import definitions
from support import ROOT


def listening(port: int) -> set[str]:
    """Addresses a TCP socket listens on for this port, from /proc/net/tcp{,6} (no ss in a bare image)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(struct.pack("<I", word) for word in struct.unpack(f">{len(raw) // 4}I", raw))
            found.add(socket.inet_ntop(family, raw))
    return found


def test_every_port_of_the_node_listens_on_loopback_only(broker):
    """AMQP, the management UI and the Erlang distribution port answer on 127.0.0.1, on no other interface."""
    if not hasattr(broker, "dist_port"):
        broker.dist_port  # noqa: B018 - skips with the reason for an external broker
    for name, port in (("AMQP", broker.amqp_port), ("management", broker.management_port),
                       ("Erlang distribution", broker.dist_port)):
        assert listening(port) == {"127.0.0.1"}, f"{name} port {port} listens on {listening(port)}"


def test_definitions_for_a_local_node_are_readable_by_their_owner_only(tmp_path):
    """definitions.json holds password hashes: written 0600 for a node running as the writer."""
    users = {role: (f"rabbitipc-{role}", "pw") for role in definitions.ROLES}
    definitions.write(tmp_path / "api", users, private=True)
    assert oct((tmp_path / "api" / "definitions.json").stat().st_mode & 0o777) == "0o600"
    env = dict(os.environ, **{f"RABBITIPC_{role.upper()}_PASSWORD": "pw" for role in definitions.ROLES})
    result = subprocess.run([sys.executable, "-m", "rabbitipc.definitions", "--out", str(tmp_path / "cli"),
                             "--private"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert oct((tmp_path / "cli" / "definitions.json").stat().st_mode & 0o777) == "0o600"


def test_the_script_reuses_its_private_node_when_a_docker_engine_answers_later(tmp_path):
    """A private node the script started earlier is this checkout's broker even once a Docker engine answers: a
    second start reuses it (no container, urls.env untouched), Docker-only refuses while it runs, --stop stops it."""
    from devtools.localbroker import free_port, port_open

    calls = tmp_path / "docker-calls"
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = info ]\n')  # an engine that answers
    (tools / "docker").chmod(0o755)
    node = tmp_path / "node"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITIPC_") and k != "AMQP_URL"}
    env.update(RABBITIPC_NODE_DIR=str(node), RABBITIPC_AMQP_PORT=str(port), RABBITIPC_UI_PORT=str(free_port()))
    with_docker = {**env, "PATH": f"{tools}{os.pathsep}{env['PATH']}"}
    script = [str(ROOT / "start-local-docker-rabbitmq.sh")]

    def run(*args, **environment):
        return subprocess.run([*script, *args], env=environment, capture_output=True, text=True, timeout=300)

    try:
        first = run(RABBITIPC_BROKER="local", **env)
        assert first.returncode == 0, first.stderr
        urls = (node / "urls.env").read_text()
        again = run(**with_docker)
        assert again.returncode == 0, again.stderr
        assert f"the private node in {node} already runs" in again.stderr
        assert (node / "urls.env").read_text() == urls
        assert not calls.exists() or calls.read_text().split() == ["info"], "no container asked for"
        docker_only = run(RABBITIPC_BROKER="docker", **with_docker)
        assert docker_only.returncode == 1 and f"the private node in {node} runs" in docker_only.stderr
        stopped = run("--stop", **with_docker)
        assert stopped.returncode == 0, stopped.stderr
        assert not port_open(port)
    finally:
        run("--stop", RABBITIPC_BROKER="local", **env)


def test_a_node_whose_boot_crashes_fails_with_that_reason_not_after_its_timeout(tmp_path):
    """A node that dies while booting (here: definitions it cannot read) is reported as such once its VM is gone,
    instead of rabbitmqctl waiting out the whole start timeout; nothing of it is left running."""
    from devtools.localbroker import LocalBroker, NotStarted

    node = LocalBroker(tmp_path, extra_config=f"load_definitions = {tmp_path / 'missing.json'}")
    try:
        with pytest.raises(NotStarted, match="its Erlang VM exited while booting"):
            node.start(timeout=280)
    finally:
        node.stop()
    assert node.vm_pids() == []


def test_an_attached_node_runs_in_our_session_and_stops_leaving_nothing(tmp_path):
    """attached=True (the bench's node): the VM stays in this process's session, as a node started from the same
    shell (the scheduler then shares the CPU with our children thread by thread), answers AMQP, and stop() leaves
    no VM."""
    import pika

    from devtools.localbroker import LocalBroker

    node = LocalBroker(tmp_path, attached=True)
    try:
        node.start()
        [vm] = node.vm_pids()
        assert os.getsid(vm) == os.getsid(0)
        pika.BlockingConnection(pika.URLParameters(node.url)).close()
    finally:
        node.stop()
    assert node.vm_pids() == []


def test_a_stop_whose_rabbitmqctl_outwaits_its_deadline_still_ends_the_node(tmp_path):
    """ci on 8fab186 failed at a cluster's teardown: `rabbitmqctl stop` ran past its 60 s under load and stop() raised,
    leaving the node to whoever came next. Now the VM gets SIGTERM (SIGKILL after a grace) and nothing is left.
    A deadline far shorter than rabbitmqctl's own start-up makes the same case on a quiet machine."""
    from devtools.localbroker import LocalBroker, port_open

    node = LocalBroker(tmp_path)
    try:
        node.start()
        assert node.vm_pids()
        node.stop(timeout=0.01)
        assert node.vm_pids() == []
        assert not port_open(node.amqp_port)
    finally:
        node.stop()
