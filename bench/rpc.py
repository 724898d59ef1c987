"""Request/reply round trips: our RpcClient against our responder, beside the tutorial's pair, aio-pika's
RPC pattern and a C pair (bench/c/amqp_rpc.c), one caller and 8 concurrent, in one run on one broker.
Our pair runs twice: as the receiver's defaults have it (the handler on a thread of its own), and
with --inline-handler (rabbitipc-inline: on the connection's thread, as every other responder here).

    python -m bench.rpc [--calls N] [--runs N] [--size B] [--out DIR]

On a private broker, each pair (bench/rpc_peers.py, bench/c/amqp_rpc.c) runs as a responder
process and a caller process on a classic queue of its own, deleted after the run; the clock is
the caller's, from its first timed call to its last reply (the Python callers connect and make one
untimed call first; the C caller's clock includes its connections, a few milliseconds). Rounds
are interleaved (every configuration once, then again) and each row is the median of the rounds:
calls/s, p50 and p99 of the round trip. Writes rpc.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from bench.__main__ import C_DIR, ROOT, delete_queue, ensure_c, private_node, settle, start_consumer
from devtools.localbroker import LocalBroker

CLIENTS = ("rabbitipc", "rabbitipc-inline", "tutorial", "aio-pika", "c-librabbitmq")
#: Our pair with the responder's --inline-handler: the handler on the connection's thread, as in the other pairs'
#: responders (the default gives it a thread of its own, for handlers slower than a heartbeat).
OURS = ("rabbitipc", "rabbitipc-inline")
C_RPC = C_DIR / "amqp_rpc"
CONCURRENCY = (1, 8)


def responder(client: str, url: str, queue: str) -> subprocess.Popen:
    """Start the pair's responder and return it once it consumes."""
    if client in OURS:
        command = [sys.executable, str(ROOT / "receiver" / "receive.py"), "--url", url, "--queue", queue,
                   "--queue-type", "classic", "--pattern", "rpc", "--handler", "bench.rpc_peers:echo",
                   "--retry-timeout", "10", *(["--inline-handler"] if client == "rabbitipc-inline" else [])]
    elif client == "c-librabbitmq":
        command = [str(C_RPC), "serve", url, queue]
    else:
        command = [sys.executable, "-m", "bench.rpc_peers", "serve", client, url, queue]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    server = start_consumer(command)
    # its log lines are read and dropped, so a full pipe never stops it
    threading.Thread(target=lambda: server.stdout.read(), daemon=True).start()
    return server


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run_once(broker: LocalBroker, client: str, concurrency: int, calls: int, size: int) -> dict:
    queue = f"bench-rpc-{client}-{uuid.uuid4().hex[:6]}"
    settle(broker)
    server = responder(client, broker.url, queue)
    try:
        program = [str(C_RPC), "call"] if client == "c-librabbitmq" else \
            [sys.executable, "-m", "bench.rpc_peers", "call", "rabbitipc" if client in OURS else client]
        caller = subprocess.run([*program, broker.url, queue, str(calls), str(concurrency), str(size)], cwd=ROOT,
                                capture_output=True, text=True, timeout=900)
        if caller.returncode != 0:
            raise RuntimeError(f"{client} caller exited {caller.returncode}: {caller.stderr[-500:]}")
        result = json.loads(caller.stdout.splitlines()[-1])
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    latencies = result["latencies_ms"]
    return {"client": client, "callers": concurrency, "calls": len(latencies), "size": size,
            "calls_per_s": len(latencies) / result["wall_s"], "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99), "queues_left": delete_queue(broker, queue)}


def table(rows: list[dict]) -> str:
    head = f"{'client':<17} {'callers':>7} {'calls':>6} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    return "\n".join([head, "-" * len(head)] + [
        f"{r['client']:<17} {r['callers']:>7} {r['calls']:>6} {r['calls_per_s']:>8.0f} {r['p50_ms']:>7.2f} "
        f"{r['p99_ms']:>7.2f}" for r in rows])


def available() -> list[str]:
    """The pairs that can run here: the C pair needs a compiler and librabbitmq-dev (one stderr line if not)."""
    if ensure_c(C_RPC, "-lpthread"):
        return list(CLIENTS)
    print("no C compiler or librabbitmq-dev (apt-get install librabbitmq-dev): the C pair is left out",
          file=sys.stderr)
    return [client for client in CLIENTS if client != "c-librabbitmq"]


def measure(broker: LocalBroker, calls: int, runs: int, size: int) -> tuple[list[dict], list[dict]]:
    """(medians per configuration, every single run in order): rounds interleaved."""
    plan = [(client, concurrency) for concurrency in CONCURRENCY for client in available()]
    single = []
    for _ in range(runs):
        for client, concurrency in plan:
            single.append(run_once(broker, client, concurrency, calls, size))
            print(f"  {client}, {concurrency} caller(s): {single[-1]['calls_per_s']:.0f} calls/s", file=sys.stderr)
    rows = []
    for client, concurrency in plan:
        mine = [r for r in single if r["client"] == client and r["callers"] == concurrency]
        rows.append({**mine[0], **{key: statistics.median(r[key] for r in mine)
                                   for key in ("calls_per_s", "p50_ms", "p99_ms")}, "runs": len(mine)})
    return rows, single


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per configuration (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--size", type=int, default=100, help="request and reply body bytes (default 100)")
    parser.add_argument("--out", default="bench-results", help="directory for rpc.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with private_node("rabbitipc-bench-rpc-") as broker:  # private: its CPU and queues are the bench's to watch
        rows, single = measure(broker, args.calls, args.runs, args.size)
    (out / "rpc.json").write_text(json.dumps({"results": rows, "single_runs": single}, indent=2) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
