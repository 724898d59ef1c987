"""The health file behind the Kubernetes probes reflects the loop and the broker connection."""

import subprocess
import sys

from devtools.localbroker import free_port
from support import wait_until


def probe(path, *flags):
    return subprocess.run([sys.executable, "-m", "rabbitipc.health", str(path), *flags],
                          capture_output=True, text=True, timeout=30)


def test_connected_receiver_is_live_and_ready(run, tmp_path):
    """A consuming receiver passes both the liveness and the readiness probe."""
    health = tmp_path / "health"
    receiver = run("receiver", "--health-file", str(health))
    receiver.wait_for_line("consuming from queue")
    wait_until(lambda: probe(health, "--connected").returncode == 0, 10, "ready")
    assert probe(health).returncode == 0


def test_sender_without_broker_is_live_but_not_ready(run, tmp_path):
    """While the broker is unreachable the program is alive (retrying) but not ready."""
    health = tmp_path / "health"
    sender = run("sender", "--health-file", str(health), url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    sender.wait_for_line("not reachable")
    wait_until(health.exists, 10, "health file")
    result = probe(health, "--connected")
    assert result.returncode == 1 and "not connected to the broker" in result.stderr
    assert probe(health).returncode == 0


def test_stale_or_missing_health_file_fails_the_probe(tmp_path):
    """No file, or a beat older than --max-age, fails liveness with the reason."""
    assert "no health file" in probe(tmp_path / "missing").stderr
    (tmp_path / "old").write_text('{"beat": 1, "connected": true}')
    result = probe(tmp_path / "old", "--max-age", "5")
    assert result.returncode == 1 and "silent for" in result.stderr


def test_unwritable_health_file_is_reported_once_and_work_goes_on(run, tmp_path):
    """A health file in a missing directory: one warning, and messages still flow."""
    from support import RECEIVED

    receiver = run("receiver", "--health-file", str(tmp_path / "missing" / "health"))
    sender = run("sender", "--count", "3", "--rate", "0")
    assert sender.wait() == 0
    receiver.wait_count(RECEIVED, 3)
    assert receiver.output.count("cannot write health file") == 1
