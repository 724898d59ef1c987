"""The benchmark harness runs end to end (its figures are for people, not assertions)."""

import json
import subprocess
import sys
from pathlib import Path

from support import ROOT


def test_bench_measures_every_client_scenario_and_target(tmp_path):
    """python -m bench with tiny counts: each client, size and scenario measured; table, targets, JSON."""
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--count", "100", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    rows = data["results"]
    throughput = [row for row in rows if row["scenario"] == "throughput"]
    assert {"rabbitipc", "rabbitipc-fast", "tutorial-pika"} <= {row["client"] for row in throughput}
    assert {row["size"] for row in throughput} == {100, 65536}
    assert all(row["msgs_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] for row in throughput)
    assert {"rabbitipc", "tutorial-pika"} <= {row["client"] for row in rows if row["scenario"] == "paced"}
    backlog = [row for row in rows if row["scenario"] == "backlog"]
    assert backlog and backlog[0]["consumer_rss_mib"] > 0
    assert "rabbitipc throughput at 100 B relative to" in result.stdout and "tutorial-pika: " in result.stdout
    if Path("/usr/include/amqp.h").exists():  # librabbitmq-dev: CI installs it, the bench builds the C client
        assert "c-librabbitmq" in {row["client"] for row in throughput}
    assert "targets:" in result.stdout
    assert any("10x tutorial-pika" in what for what, _measured, _met in data["targets"])


def test_profile_groups_samples_by_who_spends_them(tmp_path):
    """bench.profile's breakdown: py-spy's raw stacks summed by their innermost frame's owner."""
    from bench.profile import breakdown

    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "process 1:\"\";<module> (send.py:13);Connection._send_message (pika/connection.py:2381);"
        "Frame._marshal (pika/frame.py:60) 6\n"
        "process 1:\"\";<module> (send.py:13);_AsyncTransportBase._sigint_safe_send "
        "(pika/adapters/utils/io_services_utils.py:907) 2\n"
        "process 1:\"\";<module> (send.py:13);Message.body (rabbitipc/message.py:55) 2\n")
    assert breakdown(raw) == [("pika: AMQP frame encoding/decoding", 60.0),
                              ("socket calls (kernel time of send/recv/poll)", 20.0), ("rabbitipc", 20.0)]
