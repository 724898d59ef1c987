"""The benchmark harness runs end to end (its figures are for people, not assertions)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.peers import PEERS, Peer, installed
from support import ROOT


def test_bench_measures_every_client_scenario_and_target(tmp_path):
    """python -m bench with tiny counts: each client, size and scenario measured; table, targets, JSON."""
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--count", "100", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    rows = data["results"]
    throughput = [row for row in rows if row["scenario"] == "throughput"]
    measured = {row["client"] for row in throughput}
    assert {"rabbitipc", "rabbitipc-fast", "rabbitipc-pure", "rabbitipc-classic", "tutorial-pika"} <= measured
    for peer in PEERS:  # each Python peer whose package is there (CI: the test extra has them all)
        assert peer.name in measured or (not installed(peer) and os.environ.get("CI") != "true"), peer.package
    assert {row["size"] for row in throughput} == {100, 65536}
    assert all(row["msgs_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] for row in throughput)
    paced_peers = {peer.name for peer in PEERS if peer.paced and peer.name in measured}
    assert {"rabbitipc", "rabbitipc-classic", "tutorial-pika"} | paced_peers \
        == {row["client"] for row in rows if row["scenario"] == "paced"} - {"c-librabbitmq", "amqplib"}
    backlog = [row for row in rows if row["scenario"] == "backlog"]
    assert backlog and backlog[0]["consumer_rss_mib"] > 0 and backlog[0]["rss_second_half_mib"] > 0
    assert "rabbitipc throughput at 100 B relative to" in result.stdout and "tutorial-pika: " in result.stdout
    if Path("/usr/include/amqp.h").exists():  # librabbitmq-dev: CI installs it, the bench builds the C client
        assert "c-librabbitmq" in measured
    assert "targets:" in result.stdout
    checks = [what for what, _measured, _met in data["targets"]]
    assert any("1.5x the fastest other Python client" in what for what in checks)
    assert any("RSS flat through" in what for what in checks)
    if "c-librabbitmq" in measured:
        assert any("pure-Python fallback no slower than before" in what for what in checks)
        assert "64 KiB MB/s >= 0.8x c-librabbitmq" in checks
        assert "64 KiB MB/s >= 0.8x c-librabbitmq, rabbitipc-classic (the same queue type)" in checks


def test_a_peer_whose_package_is_missing_is_left_out_with_one_line(monkeypatch, capsys):
    """--clients keeps the bench's order, and a client without its package is named once on stderr."""
    import bench.__main__ as harness

    missing = Peer("kombu", "kombu_peer", "no_such_module_for_the_bench", "kombu", "test")
    monkeypatch.setattr(harness, "peers_by_name", lambda: {"kombu": missing})
    assert harness.available(("kombu", "rabbitipc-pure", "rabbitipc")) == ["rabbitipc", "rabbitipc-pure"]
    assert capsys.readouterr().err.splitlines() == [
        "kombu: package kombu not installed (pip install -e '.[bench]'): left out"]


def test_clients_option_rejects_an_unknown_name():
    """--clients with a typo: a one-line usage error naming the choices, exit 2."""
    result = subprocess.run([sys.executable, "-m", "bench", "--clients", "rabbitipc,pika-selct"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown client pika-selct; choose from rabbitipc," in result.stderr


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


def test_scenarios_option_runs_only_those(tmp_path):
    """--scenarios paced: only the paced rows (rabbitipc on both queue types here); a typo is a usage error."""
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--count", "50", "--out", str(tmp_path),
                             "--clients", "rabbitipc,rabbitipc-classic", "--scenarios", "paced"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert sorted((row["scenario"], row["client"]) for row in rows) == [("paced", "rabbitipc"),
                                                                         ("paced", "rabbitipc-classic")]
    typo = subprocess.run([sys.executable, "-m", "bench", "--scenarios", "pacd"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert typo.returncode == 2 and "unknown scenario pacd; choose from throughput, paced, backlog" in typo.stderr
