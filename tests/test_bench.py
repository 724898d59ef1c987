"""The benchmark harness runs end to end (its figures are for people, not assertions)."""

import json
import subprocess
import sys

from support import ROOT


def test_bench_produces_a_row_per_client_and_size(tmp_path):
    """python -m bench with tiny counts: every client and size measured, table and JSON written."""
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--count", "100", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    clients = {row["client"] for row in rows}
    assert {"rabbitipc", "tutorial-pika"} <= clients
    assert {row["size"] for row in rows} == {100, 65536}
    assert all(row["msgs_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] >= 0 for row in rows)
    assert "rabbitipc throughput at 100 B relative to tutorial-pika" in result.stdout
