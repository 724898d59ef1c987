"""End to end on a real Docker engine: start-local-docker-rabbitmq.sh's Docker branch, compose.yaml,
compose.cluster.yaml and the flask-jobs stack, with images built by `docker build` from the unmodified Dockerfiles.

Lean on purpose (CI has 15 minutes for everything): one stack up per test, several checks, down.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from devtools.localbroker import free_port
from dockerkit import Compose, Docker, build_image, http_json, load_bases, start_engine, unavailable
from support import RECEIVED, RECEIVER, ROOT, SENDER, SENT, Program, program_env, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def docker():
    """Our own engine (scripts/start-dockerd.sh), with the base images loaded."""
    engine = start_engine()
    load_bases(engine)
    return engine


@pytest.fixture(scope="session")
def programs(docker):
    """The sender and receiver images, built once per session."""
    for tag in ("rabbitipc-sender:0.1.0", "rabbitipc-receiver:0.1.0"):
        build_image(docker, tag)
    return docker


@pytest.fixture(scope="session")
def jobs_image(docker):
    build_image(docker, "rabbitipc-flask-jobs:0.1.0")
    return docker


def ids(pattern: re.Pattern, text: str) -> list[str]:
    return [match.group(2) for match in pattern.finditer(text)]


def test_local_docker_script_runs_the_broker_in_docker(docker, tmp_path):
    """The script's Docker branch: a taken port is a clear error; the broker container has our users,
    the programs talk through it, the management UI answers, a second run reuses it, --stop removes it."""
    name = f"rabbitipc-test-{uuid.uuid4().hex[:6]}"
    amqp_port, ui_port = free_port(), free_port()
    env = {**docker.env, "RABBITIPC_BROKER": "docker", "RABBITIPC_CONTAINER": name,
           "RABBITIPC_NODE_DIR": str(tmp_path / "node"),
           "RABBITIPC_AMQP_PORT": str(amqp_port), "RABBITIPC_UI_PORT": str(ui_port)}
    script = [str(ROOT / "start-local-docker-rabbitmq.sh")]
    try:
        with socket.socket() as taken:  # a port someone else listens on: a clear error, no container left
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = subprocess.run(script, env={**env, "RABBITIPC_AMQP_PORT": str(taken.getsockname()[1])},
                                  capture_output=True, text=True, timeout=120)
        assert busy.returncode == 1 and "is already in use" in busy.stderr, busy.stderr
        assert docker.run("inspect", name, check=False).returncode != 0

        started = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stderr
        assert docker.out("inspect", "-f", "{{.State.Running}}", name).strip() == "true"
        urls = dict(line.split("=", 1) for line in (tmp_path / "node" / "urls.env").read_text().split())
        assert oct((tmp_path / "node" / "urls.env").stat().st_mode & 0o777) == "0o600"

        receiver = Program([sys.executable, str(RECEIVER), "--count", "5"], program_env(urls["RECEIVER_AMQP_URL"]))
        sender = Program([sys.executable, str(SENDER), "--count", "5", "--rate", "20"],
                         program_env(urls["SENDER_AMQP_URL"]))
        assert sender.wait(60) == 0, sender.output
        assert receiver.wait(60) == 0, receiver.output
        assert ids(RECEIVED, receiver.output) == ids(SENT, sender.output) and len(ids(SENT, sender.output)) == 5

        admin = ("rabbitipc-admin", urls["ADMIN_AMQP_URL"].split(":")[2].split("@")[0])
        status, users = http_json(f"http://127.0.0.1:{ui_port}/api/users", auth=admin)
        assert status == 200, users
        assert {user["name"] for user in users} == {"rabbitipc-admin", "rabbitipc-sender", "rabbitipc-receiver",
                                                    "rabbitipc-chat", "rabbitipc-listener"}
        assert http_json(f"http://127.0.0.1:{ui_port}/api/overview", auth=("guest", "guest"))[0] == 401

        again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "already running" in again.stderr, again.stderr
        stopped = subprocess.run([*script, "--stop"], env=env, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert docker.run("inspect", name, check=False).returncode != 0, "container removed"
    finally:
        docker.run("rm", "-f", name, check=False)


def test_two_clones_get_engines_of_their_own_and_stop_only_theirs(tmp_path):
    """scripts/start-dockerd.sh in two checkouts: two engines (socket, bridge, address apart); one clone cannot
    stop the other's; --stop leaves the other engine answering and removes its bridge and iptables rules."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        unavailable("two engines need root and dockerd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITIPC_DOCKER_")}
    clones = [tmp_path / "first", tmp_path / "second"]
    for clone in clones:
        shutil.copytree(ROOT / "scripts", clone / "scripts", ignore=shutil.ignore_patterns("podman"))

    def engine(clone, *args, **extra):
        return subprocess.run([str(clone / "scripts" / "start-dockerd.sh"), *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=300)

    def settings(clone) -> dict[str, str]:
        line = engine(clone, "--help").stdout.strip().splitlines()[-1]
        return dict(re.findall(r"(socket|data|bridge) (\S+?)(?:,|$)", line))

    first, second = settings(clones[0]), settings(clones[1])
    try:
        hosts = []
        for clone in clones:
            started = engine(clone)
            assert started.returncode == 0, started.stderr[-3000:]
            hosts.append(started.stdout.strip().splitlines()[-1])
        assert hosts == [f"unix://{first['socket']}", f"unix://{second['socket']}"] and hosts[0] != hosts[1]
        assert first["bridge"] != second["bridge"] and first["data"] != second["data"]
        addresses = [subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", s["bridge"]], capture_output=True,
                                    text=True).stdout.split()[3] for s in (first, second)]
        assert addresses[0] != addresses[1], addresses

        foreign = engine(clones[1], "--stop", RABBITIPC_DOCKER_RUN=str(Path(first["socket"]).parent))
        assert foreign.returncode == 1 and f"started by {clones[0]}" in foreign.stderr, foreign.stderr
        assert Docker(hosts[0]).run("info", check=False).returncode == 0

        stopped = engine(clones[0], "--stop")
        assert stopped.returncode == 0, stopped.stderr
        assert Docker(hosts[1]).run("info", check=False).returncode == 0, "the second clone's engine still answers"
        assert subprocess.run(["ip", "link", "show", first["bridge"]], capture_output=True).returncode != 0
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        assert first["bridge"] not in rules and addresses[0].rsplit(".", 1)[0] + ".0/24" not in rules
        assert second["bridge"] in rules
    finally:
        for clone, values in zip(clones, (first, second)):
            engine(clone, "--stop")
            for directory in (values["data"], str(Path(values["socket"]).parent)):  # the temporary clones' own
                shutil.rmtree(directory, ignore_errors=True)
    assert second["bridge"] not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def bundle_up(docker: Docker, file: Path):
    """A bundle's compose file up under a project name of our own, on free host ports; down -v afterwards."""
    stack = Compose(docker, file, prefix="rabbitipc-test",
                    env={"RABBITIPC_AMQP_PORT": str(free_port()), "RABBITIPC_UI_PORT": str(free_port())})
    try:
        stack.run("up", "-d", "--no-build", timeout=600)
        yield stack
    finally:
        stack.down()


@pytest.fixture
def bundle(programs):
    """compose.yaml up."""
    yield from bundle_up(programs, ROOT / "compose.yaml")


def stop_sender_and_await_every_message(stack: Compose) -> set[str]:
    """Stop the sender (SIGTERM: every accepted message confirmed) and wait until the receiver has logged each
    message the sender logged as sent; the accepted ids."""
    stack.run("stop", "sender")
    accepted = set(ids(SENT, stack.logs("sender")))

    def lost() -> set[str]:
        return accepted - set(ids(RECEIVED, stack.logs("receiver")))

    wait_until(lambda: not lost(), 120, "every accepted message received",
               lambda: f"lost: {sorted(lost())[:5]}\n{stack.logs()[-6000:]}")
    assert "stopped by SIGTERM" in stack.logs("sender")
    return accepted


def test_compose_bundle_flows_and_loses_nothing_across_a_broker_restart(bundle):
    """compose.yaml: all healthy, messages flow, the management UI shows our users and the queue;
    messages queued while the receiver is stopped survive a broker restart and are all received."""
    ui = f"http://127.0.0.1:{bundle.env['RABBITIPC_UI_PORT']}"
    admin = ("rabbitipc-admin", "admin-dev-password")
    wait_until(lambda: bundle.all_healthy("rabbitmq", "sender", "receiver"), 240, "every service healthy",
               lambda: bundle.logs()[-4000:])
    wait_until(lambda: len(ids(RECEIVED, bundle.logs("receiver"))) >= 3, 120, "3 messages received",
               lambda: bundle.logs()[-4000:])

    status, users = http_json(f"{ui}/api/users", auth=admin)
    assert status == 200 and {u["name"] for u in users} == {"rabbitipc-admin", "rabbitipc-sender",
                                                            "rabbitipc-receiver"}, "definitions loaded, no guest"
    status, queue = http_json(f"{ui}/api/queues/%2F/hello", auth=admin)
    assert status == 200 and queue["durable"] and queue["consumers"] == 1, queue

    # Messages wait in the queue with nobody consuming, then the broker restarts under them.
    bundle.run("stop", "receiver")
    before = len(ids(SENT, bundle.logs("sender")))
    wait_until(lambda: len(ids(SENT, bundle.logs("sender"))) >= before + 3, 60, "3 messages queued")
    bundle.run("restart", "rabbitmq")
    wait_until(lambda: bundle.all_healthy("rabbitmq"), 180, "the broker back")
    bundle.run("start", "receiver")
    restarted = len(ids(SENT, bundle.logs("sender")))
    wait_until(lambda: len(ids(SENT, bundle.logs("sender"))) >= restarted + 3, 120, "the sender sending again",
               lambda: bundle.logs("sender")[-3000:])
    stop_sender_and_await_every_message(bundle)
    assert not re.search(r" (ERROR|CRITICAL) |Traceback", bundle.logs("sender") + bundle.logs("receiver"))


@pytest.fixture
def jobs_stack(jobs_image):
    """examples/flask-jobs/compose.yaml up with two workers, on free host ports."""
    stack = Compose(jobs_image, ROOT / "examples" / "flask-jobs" / "compose.yaml", prefix="flask-jobs-test",
                    env={"JOBS_HTTP_PORT": str(free_port()), "JOBS_UI_PORT": str(free_port())})
    try:
        stack.run("up", "-d", "--no-build", "--scale", "worker=2", timeout=600)
        yield stack
    finally:
        stack.down()


def test_flask_jobs_stack_scales_workers_and_survives_a_broker_restart(jobs_stack):
    """Jobs POSTed over HTTP are done by both workers; with the broker stopped a POST is 503 at once;
    the jobs in hand and in the queue when it stopped are all done after it is back."""
    web = f"http://127.0.0.1:{jobs_stack.env['JOBS_HTTP_PORT']}"

    def post(job: dict) -> tuple[int, dict]:
        return http_json(f"{web}/jobs", "POST", job)

    def done(job_ids) -> dict:
        states = {job_id: http_json(f"{web}/jobs/{job_id}")[1] for job_id in job_ids}
        return states if all(s and s["state"] == "done" for s in states.values()) else {}

    def answers() -> bool:
        try:
            return http_json(f"{web}/jobs/none")[0] == 404
        except OSError:
            return False

    def story() -> str:
        """The stack's logs without the status polling, which would fill any tail."""
        lines = [line for line in jobs_stack.logs().splitlines() if '"GET /jobs/' not in line]
        return "\n".join(lines[-80:])

    wait_until(answers, 120, "the web front answering", story)
    first = [post({"text": f"job number {n}", "seconds": 0.5}) for n in range(6)]
    assert [status for status, _ in first] == [202] * 6, first
    results = wait_until(lambda: done(body["id"] for _, body in first), 120, "the first jobs done", story)
    workers = {jobs_stack.docker.out("inspect", "-f", "{{.Config.Hostname}}", c).strip()
               for c in jobs_stack.containers("worker")}
    assert len(workers) == 2
    assert {state["result"]["worker"] for state in results.values()} == workers, "both workers took jobs"
    assert all(state["result"]["words"] == 3 for state in results.values())

    slow = [post({"text": "slow one", "seconds": 3})[1]["id"] for _ in range(4)]
    jobs_stack.run("stop", "rabbitmq")
    started = time.monotonic()
    status, answer = post({"text": "while the broker is away"})
    assert status == 503 and "retry later" in answer["error"], answer
    assert time.monotonic() - started < 5
    jobs_stack.run("start", "rabbitmq")
    after = wait_until(lambda: (a := post({"text": "after the restart"}))[0] == 202 and a, 120,
                       "a 202 once the broker is back")
    accepted = [*slow, after[1]["id"]]
    wait_until(lambda: done(accepted), 240, "every job accepted done",
               lambda: f"{[http_json(f'{web}/jobs/{job_id}')[1] for job_id in accepted]}\n{story()}")
    status, overview = http_json(f"http://127.0.0.1:{jobs_stack.env['JOBS_UI_PORT']}/api/overview",
                                 auth=("jobs", os.environ.get("JOBS_BROKER_PASSWORD", "jobs-dev-password")))
    assert status == 200 and overview["rabbitmq_version"], "the management UI answers"


@pytest.fixture
def cluster_bundle(programs):
    """compose.cluster.yaml up."""
    yield from bundle_up(programs, ROOT / "compose.cluster.yaml")


#: The node a program's last connect line names (compose.cluster.yaml's hosts rabbitmq-1..3).
CONNECTED_NODE = re.compile(r"connected to amqp://\S+@(rabbitmq-\d):")
#: When the sender logged a message as sent (confirmed).
SENT_AT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z INFO \S+ sent seq=")


def longest_pause(sender_log: str) -> float:
    """The longest gap, in seconds, between two messages the sender logged as sent."""
    from datetime import datetime

    times = [datetime.fromisoformat(stamp).timestamp() for stamp in SENT_AT.findall(sender_log)]
    return max(b - a for a, b in zip(times, times[1:]))


def test_compose_cluster_keeps_every_message_once_across_a_node_stop(cluster_bundle):
    """compose.cluster.yaml: three nodes form one cluster, the queue has a replica on each; the node the sender
    is on is stopped mid-stream and started again: the programs move on, 0 lost, 0 handled twice, down -v leaves
    nothing."""
    stack = cluster_bundle
    nodes = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
    ui = f"http://127.0.0.1:{stack.env['RABBITIPC_UI_PORT']}"
    admin = ("rabbitipc-admin", "admin-dev-password")
    wait_until(lambda: stack.all_healthy(*nodes, "sender", "receiver"), 300, "every service healthy",
               lambda: stack.logs()[-6000:])
    wait_until(lambda: len(ids(RECEIVED, stack.logs("receiver"))) >= 3, 120, "3 messages received",
               lambda: stack.logs()[-4000:])

    status, overview = http_json(f"{ui}/api/nodes", auth=admin)
    assert status == 200 and sorted(node["name"] for node in overview) == [f"rabbit@{n}" for n in nodes], overview
    status, queue = http_json(f"{ui}/api/queues/%2F/hello", auth=admin)
    assert status == 200 and queue["type"] == "quorum", queue
    assert sorted(queue["members"]) == [f"rabbit@{n}" for n in nodes], "a replica on each node"
    status, users = http_json(f"{ui}/api/users", auth=admin)
    assert status == 200 and "guest" not in {user["name"] for user in users}, users

    def running() -> list[str]:
        try:
            status, answer = http_json(f"{ui}/api/nodes", auth=admin)
        except OSError:  # the UI of rabbitmq-1, when that is the node coming back
            return []
        return sorted(node["name"] for node in answer if node["running"]) if status == 200 else []

    # Stop the node the sender is connected to; it moves to another at once.
    victim = CONNECTED_NODE.findall(stack.logs("sender"))[-1]
    before = len(ids(SENT, stack.logs("sender")))
    stack.run("stop", victim, timeout=120)
    wait_until(lambda: len(ids(SENT, stack.logs("sender"))) >= before + 5, 120, f"sending on with {victim} stopped",
               lambda: stack.logs()[-6000:])
    stack.run("start", victim, timeout=120)
    wait_until(lambda: stack.all_healthy(victim), 180, f"{victim} back", lambda: stack.logs(victim)[-4000:])
    wait_until(lambda: len(running()) == 3, 120, f"{victim} rejoined the cluster", lambda: stack.logs(victim)[-4000:])
    restarted = len(ids(SENT, stack.logs("sender")))
    wait_until(lambda: len(ids(SENT, stack.logs("sender"))) >= restarted + 3, 120, "the sender sending on",
               lambda: stack.logs("sender")[-3000:])
    stop_sender_and_await_every_message(stack)
    handled = ids(RECEIVED, stack.logs("receiver"))
    twice = sorted({i for i in handled if handled.count(i) > 1})
    assert not twice, f"handled twice: {twice[:5]}"
    assert CONNECTED_NODE.findall(stack.logs("sender"))[-1] != victim, "the sender moved to another node"
    pause = longest_pause(stack.logs("sender"))
    print(f"compose cluster, {victim} stopped: {len(handled)} handled, 0 lost, 0 twice, longest pause {pause:.1f} s")
    assert pause < 10, f"the sender paused {pause:.1f} s"
    assert not re.search(r" (ERROR|CRITICAL) |Traceback", stack.logs("sender") + stack.logs("receiver"))

    stack.run("down", "-v", "--timeout", "30", timeout=300)
    label = f"label=com.docker.compose.project={stack.project}"
    left = [stack.docker.out(*kind, "-q", "--filter", label).split()
            for kind in (("container", "ls", "-a"), ("volume", "ls"), ("network", "ls"))]
    assert left == [[], [], []], f"left after down -v: {left}"
