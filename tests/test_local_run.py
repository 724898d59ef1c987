"""The README's run command and its examples: broker, receiver and sender come up, traffic shows, the examples
run as printed, and Ctrl-C (or a hangup) at any moment stops all the script started."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from devtools.localbroker import LocalBroker, free_port, port_open
from support import ROOT, Program, wait_until


def local_run_env(node: Path, **extra: str) -> dict[str, str]:
    """run-local.sh on a private node in `node`, on free ports, even where a Docker engine answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITIPC_") and k != "AMQP_URL"}
    env.update(RABBITIPC_NODE_DIR=str(node), RABBITIPC_BROKER="local", RABBITIPC_AMQP_PORT=str(free_port()),
               RABBITIPC_UI_PORT=str(free_port()), **extra)
    return env


def node_processes(node: Path) -> list[str]:
    """Processes that belong to the node in `node` (its Erlang VM, by its -home argument) or to the scripts
    run on it; epmd, which every Erlang node of the machine shares, is not the node's."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if str(node).encode() in cmdline and b"epmd" not in cmdline.split(b"\0")[0]:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {shown}")
    return found


def test_run_local_shows_traffic_and_stops_cleanly_on_ctrl_c(tmp_path):
    """./run-local.sh starts its own broker, shows both programs' lines, and Ctrl-C ends everything."""
    node = tmp_path / "node"
    env = local_run_env(node, RABBITIPC_MIN_INTERVAL="0.1", RABBITIPC_MAX_INTERVAL="0.2",
                        RABBITIPC_QUEUE="local-run-test")
    run = Program([str(ROOT / "run-local.sh")], env, new_session=True)
    try:
        run.wait_for_line("receiver | ", timeout=240)
        wait_until(lambda: sum(" received seq=" in line for line in run.lines) >= 3, 60,
                   "three received lines", lambda: run.output)
        assert any(line.startswith("sender   | ") and " sent seq=" in line for line in run.lines)
        os.killpg(run.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert run.wait(60) == 0, run.output
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
    assert "receiver done:" in run.output and "sender done:" in run.output
    # One Ctrl-C (SIGINT from the terminal, then SIGTERM from the script): one stop line per program.
    assert sum("received, stopping" in line for line in run.lines) == 2, run.output
    # Each program has its own user from the definitions the broker loaded; no guest.
    assert "broker amqp://rabbitipc-sender:***@" in run.output
    assert "broker amqp://rabbitipc-receiver:***@" in run.output
    assert "guest" not in (node / "broker.json").read_text()  # the definitions left no guest user
    # The script itself says where AMQP listens (the port is not 5672 here).
    assert f"==> AMQP: 127.0.0.1:{env['RABBITIPC_AMQP_PORT']}" in run.output, run.output
    assert oct((node / "urls.env").stat().st_mode & 0o777) == "0o600"
    # The node directory (passwords, the definitions' password hashes, the Erlang cookie) is private.
    assert oct(node.stat().st_mode & 0o777) == "0o700"
    assert oct((node / "definitions" / "definitions.json").stat().st_mode & 0o777) == "0o600"
    assert "stopped the local node" in run.output
    assert not LocalBroker(node).running()


#: Moments of the start-up, each a file the start writes (or the broker's VM appearing).
MOMENTS = {
    "credentials": lambda node: (node / "credentials.env").exists(),
    "node-state": lambda node: (node / "broker.json").exists(),
    "vm-started": lambda node: any("beam" in process for process in node_processes(node)),
    "vm-pid-file": lambda node: (node / "rabbitmq.pid").exists(),
}


STOPS = [pytest.param(moment, signal.SIGINT, id=f"{moment}-ctrl-c") for moment in MOMENTS] + [
    pytest.param(moment, signal.SIGHUP, id=f"{moment}-hangup") for moment in ("node-state", "vm-pid-file")]


@pytest.mark.parametrize("moment,signum", STOPS)
def test_a_stop_during_broker_start_up_leaves_no_process(tmp_path, moment, signum):
    """Ctrl-C or a hangup at any moment of the broker's start: the script exits without a traceback, and
    nothing it started runs on (no Erlang VM, the AMQP port free)."""
    node = tmp_path / "node"
    env = local_run_env(node)
    run = Program([str(ROOT / "run-local.sh")], env, new_session=True)
    try:
        wait_until(lambda: MOMENTS[moment](node) or run.proc.poll() is not None, 180, moment, lambda: run.output)
        assert run.proc.poll() is None, run.output
        os.killpg(run.proc.pid, signum)  # the terminal signals its whole foreground process group
        assert run.wait(90) == 0, run.output
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
    assert "Traceback" not in run.output, run.output
    wait_until(lambda: not node_processes(node), 30, "no process of the node left", lambda: "\n".join(
        node_processes(node)) + "\n" + run.output)
    assert not port_open(int(env["RABBITIPC_AMQP_PORT"])), run.output


# -- the README's examples, run as printed in a fresh clone --------------------------------------------------
def readme_examples() -> list[str]:
    """The command lines of the README's block under "## The programs", comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The programs\n.*?```sh\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The checkout's files as a clone has them (tracked and new, nothing ignored), with the virtualenv the
    run command makes (linked, not rebuilt); its broker is stopped at the end."""
    target = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    yield target
    subprocess.run([str(target / "start-local-docker-rabbitmq.sh"), "--stop"], cwd=target, env=clone_env(target),
                   capture_output=True, timeout=120)


_PORTS: dict[str, str] = {}


def clone_env(clone: Path) -> dict[str, str]:
    """A newcomer's environment: no AMQP_URL, no RABBITIPC_ settings; the broker on free ports (never 5672)."""
    if not _PORTS:
        _PORTS.update(RABBITIPC_AMQP_PORT=str(free_port()), RABBITIPC_UI_PORT=str(free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITIPC_") and k != "AMQP_URL"}
    return {**env, "RABBITIPC_BROKER": "local", **_PORTS}


#: What a program that runs until stopped prints once it works.
WORKING = re.compile(r" sent seq=\d+ | consuming from queue ")


def run_example(clone: Path, line: str) -> str:
    """One README line in the clone, as typed: a sender with --count or stdin ends by itself, the other programs
    work until Ctrl-C; either way exit 0. Returns the output."""
    ends = not line.startswith(".venv/") or ("sender/send.py" in line and "--count" in line) or "--message -" in line
    working = re.compile("shout: ") if "--handler" in line else WORKING
    program = Program(["bash", "-c", line], clone_env(clone), new_session=True, cwd=clone)
    try:
        if not ends:
            wait_until(lambda: program.proc.poll() is not None or program.matches(working), 120, line,
                       lambda: program.output)
            assert program.proc.poll() is None, f"{line}\n{program.output}"
            os.killpg(program.proc.pid, signal.SIGINT)  # Ctrl-C
        assert program.wait(300 if ends else 60) == 0, f"{line}\n{program.output}"
    finally:
        if program.proc.poll() is None:
            os.killpg(program.proc.pid, signal.SIGKILL)
    return program.output


def test_readme_examples_run_as_printed_in_a_fresh_clone(clone):
    """Each line of the README's examples, typed as printed in a fresh clone: it finishes with 0, or works until
    Ctrl-C and then exits 0; every program finds the local broker's URLs by itself and says so."""
    lines = readme_examples()
    assert lines[0].startswith("./start-local-docker-rabbitmq.sh") and len(lines) >= 8, lines
    urls = clone / ".rabbitmq" / "urls.env"
    for line in lines:
        if "--handler" in line:  # a message for the handler, whatever the receivers before it took
            run_example(clone, "echo hi | .venv/bin/python sender/send.py --message -")
        output = run_example(clone, line)
        assert "Traceback" not in output and ": error: " not in output, f"{line}\n{output}"
        if ".venv/bin/python" in line:
            assert f"(from {urls})" in output, f"{line}\n{output}"
        if "examples.handlers:shout" in line:
            assert re.search(r"shout: (HI|HELLO \d+)$", output, re.M), output


def test_the_guest_url_refused_names_the_file_with_the_right_urls(clone):
    """AMQP_URL with guest against the local broker (which has none): exit 3, one line naming urls.env."""
    if not (clone / ".rabbitmq" / "urls.env").exists():  # run alone, without the examples' test before it
        subprocess.run(["./start-local-docker-rabbitmq.sh"], cwd=clone, env=clone_env(clone), check=True,
                       capture_output=True, timeout=300)
    port = json.loads((clone / ".rabbitmq" / "broker.json").read_text())["amqp_port"]
    env = {**clone_env(clone), "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/%2F"}
    result = subprocess.run([".venv/bin/python", "sender/send.py", "--count", "1"], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "refused user 'guest'" in errors[0], result.stderr
    assert f"its users' URLs are in {clone / '.rabbitmq' / 'urls.env'}" in errors[0], errors[0]
