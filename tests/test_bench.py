"""The benchmark harness runs end to end (its figures are for people, not assertions)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert {"rabbitipc", "rabbitipc-fast", "rabbitipc-pure", "rabbitipc-quorum", "tutorial-pika"} <= measured
    for peer in PEERS:  # each Python peer whose package is there (CI: the test extra has them all)
        assert peer.name in measured or (not installed(peer) and os.environ.get("CI") != "true"), peer.package
    assert {row["size"] for row in throughput} == {100, 65536}
    assert all(row["msgs_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] for row in throughput)
    paced_peers = {peer.name for peer in PEERS if peer.paced and peer.name in measured}
    assert {"rabbitipc", "rabbitipc-quorum", "tutorial-pika"} | paced_peers \
        == {row["client"] for row in rows if row["scenario"] == "paced"} - {"c-librabbitmq", "amqplib"}
    backlog = [row for row in rows if row["scenario"] == "backlog"]
    assert backlog and backlog[0]["consumer_rss_mib"] > 0 and backlog[0]["rss_second_half_mib"] > 0
    assert "rabbitipc throughput at 100 B (classic queues) relative to" in result.stdout
    assert "tutorial-pika: " in result.stdout
    if Path("/usr/include/amqp.h").exists():  # librabbitmq-dev: CI installs it, the bench builds the C client
        assert "c-librabbitmq" in measured
    assert "targets:" in result.stdout
    checks = [what for what, _measured, _met in data["targets"]]
    assert any("100 B msgs/s ahead of every other client" in what for what in checks)
    assert any("RSS flat through" in what for what in checks)
    rpc = {(row["client"], row["callers"]) for row in data["rpc"]}
    assert {("rabbitipc", 1), ("rabbitipc", 8), ("rabbitipc-inline", 1), ("tutorial", 1), ("aio-pika", 8)} <= rpc
    assert "request/reply, 100 B, classic queues" in result.stdout
    if "c-librabbitmq" in measured:
        assert any("pure-Python fallback no slower than before" in what for what in checks)
        assert {"100 B msgs/s >= 0.9x c-librabbitmq", "64 KiB MB/s >= 0.8x c-librabbitmq",
                "100 B publisher CPU per message <= 2x c-librabbitmq's", "RPC p50, 1 caller(s), <= 1.5x the C pair's",
                "RPC p50, 8 caller(s), <= 1.5x the C pair's",
                "RPC p50, 1 caller(s), --inline-handler, <= 1.5x the C pair's"} <= set(checks)
        c_row = find_row(rows, "c-librabbitmq")
        # each program's own peak: the C client's few MiB, not the bench's (Linux carries a forking parent's
        # peak into an exec'd child's wait4 figures)
        assert 0 < c_row["publisher_rss_mib"] < 15 and 0 < c_row["consumer_rss_mib"] < 15, c_row
    if not all(met for _what, _measured, met in data["targets"]):  # a target missed: where the CPU goes
        profile = result.stdout.split("where rabbitipc's CPU goes")[-1]
        assert re.search(r"^receiver \(draining a queue alone\): [\d.]+ us of CPU per message", profile, re.MULTILINE) \
            and re.search(r"^ +[\d.]+%  rabbitipc$", profile, re.MULTILINE), result.stdout[-3000:]
    assert (tmp_path / "throughput.svg").exists()


def find_row(rows, client, size=100):
    return next(row for row in rows if row["scenario"] == "throughput" and row["client"] == client
                and row["size"] == size)


def test_rounds_interleave_on_one_queue_type_each_queue_deleted_and_the_chart_written(tmp_path):
    """Two rounds run A B C A B C; headline rows are on classic queues (the broker says), rabbitipc-quorum
    apart; no queue is left after any run; every row is timed from publisher start to consumer exit; the
    SVG chart of this run is written."""
    result = subprocess.run([sys.executable, "-m", "bench", "--runs", "2", "--count", "50", "--out", str(tmp_path),
                             "--clients", "rabbitipc,rabbitipc-quorum,pika-select", "--scenarios", "throughput"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    labels = [config["label"] for config in data["order"]]
    first_round = [f"{client} {size} B" for size in (100, 65536)
                   for client in ("rabbitipc", "rabbitipc-quorum", "pika-select")]
    assert labels == first_round * 2
    assert [(row["client"], row["size"]) for row in data["single_runs"]] \
        == [(config["client"], config["size"]) for config in data["order"]]
    assert all(row["queues_left"] == 0 for row in data["single_runs"])
    assert {(row["client"], row["queue_type"]) for row in data["results"]} == {
        ("rabbitipc", "classic"), ("pika-select", "classic"), ("rabbitipc-quorum", "quorum")}
    assert all(row["runs"] == 2 and row["msgs_per_s"] < row["steady_msgs_per_s"] for row in data["results"])
    assert "rabbitipc throughput at 100 B (classic queues) relative to pika-select: " in result.stdout
    assert "other queue types (apart: not compared with the rows above)" in result.stdout
    svg = (tmp_path / "throughput.svg").read_text()
    assert data["date"] in svg and "pika-select" in svg and "rabbitipc-quorum" not in svg


def test_a_peer_whose_package_is_missing_is_left_out_with_one_line(monkeypatch, capsys):
    """--clients keeps the bench's order, and a client without its package is named once on stderr."""
    import bench.__main__ as harness

    missing = Peer("kombu", "kombu_peer", "no_such_module_for_the_bench", "kombu", "test")
    monkeypatch.setattr(harness, "peers_by_name", lambda: {"kombu": missing})
    assert harness.available(("kombu", "rabbitipc-pure", "rabbitipc")) == ["rabbitipc", "rabbitipc-pure"]
    assert capsys.readouterr().err.splitlines() == [
        "kombu: package kombu not installed (pip install -e '.[bench]'): left out"]


def test_amqplib_is_left_out_with_one_line_where_npm_cannot_install_it(monkeypatch, capsys, tmp_path):
    """npm failing (no registry): the bench runs on without the amqplib row, saying why in one line."""
    import bench.__main__ as harness

    tools = tmp_path / "bin"
    tools.mkdir()
    for name, script in (("node", "exit 0"), ("npm", "echo 'npm ERR! network request failed' >&2; exit 1")):
        (tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(harness, "NODE_DIR", tmp_path / "node")  # no node_modules: npm must install
    (tmp_path / "node").mkdir()
    assert harness.available(("amqplib", "rabbitipc")) == ["rabbitipc"]
    assert capsys.readouterr().err.splitlines()[-1] == (
        "npm install failed (npm ERR! network request failed): the amqplib baseline is left out")


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
                             "--clients", "rabbitipc,rabbitipc-quorum", "--scenarios", "paced"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert sorted((row["scenario"], row["client"]) for row in rows) == [("paced", "rabbitipc"),
                                                                         ("paced", "rabbitipc-quorum")]
    typo = subprocess.run([sys.executable, "-m", "bench", "--scenarios", "pacd"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert typo.returncode == 2 and "unknown scenario pacd; choose from throughput, paced, backlog" in typo.stderr


def test_sweep_prints_a_row_per_prefetch_and_window_and_leaves_no_node():
    """python -m bench --sweep (how the defaults were chosen): one line per receiver prefetch and sender window,
    each with its rate and both programs' CPU per message."""
    result = subprocess.run([sys.executable, "-m", "bench", "--sweep", "--count", "50"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^--(prefetch|window) +(\d+): +(\d+) msgs/s .* receiver +[\d.]+ us/msg, sender +[\d.]+ us/msg$",
                      result.stdout, re.MULTILINE)
    assert [(flag, value) for flag, value, _rate in rows] == \
        [("prefetch", p) for p in ("10", "50", "100", "250", "500", "1000", "2000")] + \
        [("window", w) for w in ("1", "10", "100", "500", "1000", "5000")]
    assert all(int(rate) > 0 for _flag, _value, rate in rows)


def test_retries_scenario_prints_what_a_handler_failing_10_percent_costs(tmp_path):
    """--scenarios retries: the same handler never failing and failing 1 first attempt in 10, each message handled
    (the receiver's --count reached through the retries), and the ratio printed."""
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--count", "1000", "--out", str(tmp_path),
                             "--clients", "rabbitipc-quorum", "--scenarios", "retries"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert sorted(row["variant"] for row in rows) == ["handler failing 10%", "handler never failing"]
    assert all(row["scenario"] == "retries" and row["count"] == 200 and row["queues_left"] == 0 for row in rows)
    assert re.search(r"retries \(.*\): \d+ msgs/s, [\d.]+x the same handler never failing", result.stdout)


@pytest.mark.rabbit_cluster
def test_cluster_scenario_compares_rabbitipc_with_c_on_a_replicated_quorum_queue(tmp_path):
    """--scenarios cluster: a 3-node cluster forms, rabbitipc-quorum and the C client each run on a quorum
    queue replicated to the three nodes, and the ratio is printed."""
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--count", "300", "--out", str(tmp_path),
                             "--clients", "rabbitipc-quorum,c-librabbitmq", "--scenarios", "cluster"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    clients = {"rabbitipc-quorum", "c-librabbitmq"} if Path("/usr/include/amqp.h").exists() else {"rabbitipc-quorum"}
    assert {row["client"] for row in rows} == clients
    assert all(row["scenario"] == "cluster" and row["queue_type"] == "quorum" and row["msgs_per_s"] > 0
               for row in rows)
    if "c-librabbitmq" in clients:
        assert re.search(r"cluster \(3 nodes, .*\): rabbitipc-quorum \d+ msgs/s, [\d.]+x c-librabbitmq", result.stdout)


def test_http_front_bench_prints_latency_and_memory(broker):
    """python -m bench.http_front with a few requests prints p50, p99 and the sender's RSS."""
    result = subprocess.run([sys.executable, "-m", "bench.http_front", "--requests", "20", "--url", broker.url],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "20 sequential POSTs of 100 B: p50 " in result.stdout and "sender RSS " in result.stdout, result.stdout


def test_rpc_bench_prints_round_trips_of_each_pair_in_interleaved_rounds(tmp_path):
    """python -m bench.rpc: our RpcClient and responder, the tutorial's pair, aio-pika's RPC and the C pair, 1 and 8
    callers, p50/p99 and calls/s, rounds interleaved, every queue deleted."""
    result = subprocess.run([sys.executable, "-m", "bench.rpc", "--calls", "16", "--runs", "2", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "rpc.json").read_text())
    pairs = ("rabbitipc", "rabbitipc-inline", "tutorial", "aio-pika") + \
        (("c-librabbitmq",) if Path("/usr/include/amqp.h").exists() else ())
    plan = [(client, callers) for callers in (1, 8) for client in pairs]
    assert [(row["client"], row["callers"]) for row in data["results"]] == plan
    assert [(row["client"], row["callers"]) for row in data["single_runs"]] == plan * 2
    assert all(row["calls"] == 16 and row["p99_ms"] >= row["p50_ms"] > 0 and row["calls_per_s"] > 0
               and row["queues_left"] == 0 for row in data["single_runs"])
    assert "calls/s  p50 ms  p99 ms" in result.stdout


def test_crosscheck_times_the_same_programs_on_a_plain_node_and_compares_with_a_bench_run(tmp_path):
    """bench/crosscheck.sh: the C client, pika-select and rabbitipc timed by the shell on a node of its own, each
    median printed beside the bench's row and the difference; bad arguments are usage errors (exit 2)."""
    bench = tmp_path / "results.json"
    bench.write_text(json.dumps({"results": [{"scenario": "throughput", "client": "rabbitipc", "size": 100,
                                              "msgs_per_s": 1000.0}]}))
    result = subprocess.run(["bash", "bench/crosscheck.sh", "--count", "200", "--rounds", "2", "--compare", str(bench)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^rabbitipc +\d+ msgs/s +bench +1000, [+-][\d.]+%$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^pika-select +\d+ msgs/s +\(not in the bench run\)$", result.stdout, re.MULTILINE)
    if Path("/usr/include/amqp.h").exists():
        assert re.search(r"^c-librabbitmq +\d+ msgs/s", result.stdout, re.MULTILINE)
    assert result.stderr.count("round 2: ") == 3
    typo = subprocess.run(["bash", "bench/crosscheck.sh", "--rounds", "zero"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert typo.returncode == 2 and "positive integers" in typo.stderr
