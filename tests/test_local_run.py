"""The README's run command: broker, receiver and sender come up, traffic shows, Ctrl-C stops all."""

import os
import signal

from devtools.localbroker import LocalBroker
from support import ROOT, Program, wait_until


def test_run_local_shows_traffic_and_stops_cleanly_on_ctrl_c(tmp_path):
    """./run-local.sh starts its own broker, shows both programs' lines, and Ctrl-C ends everything."""
    env = dict(os.environ, RABBITIPC_NODE_DIR=str(tmp_path / "node"), RABBITIPC_MIN_INTERVAL="0.1",
               RABBITIPC_MAX_INTERVAL="0.2", RABBITIPC_QUEUE="local-run-test",
               RABBITIPC_BROKER="local")  # the private node even where a Docker engine answers
    env.pop("AMQP_URL", None)
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
    # Each program has its own user from the definitions the broker loaded; no guest.
    assert "broker amqp://rabbitipc-sender:***@" in run.output
    assert "broker amqp://rabbitipc-receiver:***@" in run.output
    assert oct((tmp_path / "node" / "urls.env").stat().st_mode & 0o777) == "0o600"
    # The node directory (passwords, the definitions' password hashes, the Erlang cookie) is private.
    assert oct((tmp_path / "node").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "node" / "definitions" / "definitions.json").stat().st_mode & 0o777) == "0o600"
    assert "stopped the local node" in run.output
    assert not LocalBroker(tmp_path / "node").running()
