"""Benchmark: the programs users run, against the baselines, on one private broker, in one run.

    python -m bench [--quick] [--runs N] [--out DIR]

Clients (each a separate publisher and consumer process, durable queue, persistent messages):
  rabbitipc      sender/send.py --rate 0 and receiver/receive.py, as shipped (reliable mode:
                 a confirm per publish, prefetch 10, an ack and a log line per message)
  tutorial-pika  pika as the RabbitMQ tutorials write it (confirm per publish, prefetch 1)
  amqplib        Node's amqplib with streamed confirms (window 1000), prefetch 1000, acks per
                 100: the practical limit of this machine and broker
For 100-byte and 64 KiB messages: end-to-end msgs/s and MB/s (first to last receive),
p50/p99 latency (send time to handled time), CPU seconds of broker, publisher and consumer,
and peak RSS of each client; the median of --runs runs. Writes results.json and
throughput.png (matplotlib) to --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from rabbitipc.localbroker import LocalBroker

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
SIZES = {"100B": 100, "64KiB": 65536}
TICKS = os.sysconf("SC_CLK_TCK")
LATENCY = re.compile(r"latency_ms=([\d.]+)")


def broker_cpu(pid: int) -> float:
    """utime + stime of the broker's VM, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def reap(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """Wait for a child and return its CPU seconds and peak RSS (MiB) from wait4."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args} did not finish in {timeout}s")
        time.sleep(0.01)


def log_time(line: str) -> float:
    stamp = line.split()[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=None).timestamp() - time.timezone


def commands(client: str, url: str, queue: str, count: int, size: int) -> tuple[list[str], list[str]]:
    python = sys.executable
    if client == "rabbitipc":
        common = ["--url", url, "--queue", queue, "--retry-timeout", "10"]
        return ([python, str(ROOT / "receiver" / "receive.py"), *common],
                [python, str(ROOT / "sender" / "send.py"), *common, "--rate", "0", "--count", str(count),
                 "--size", str(size)])
    if client == "tutorial-pika":
        script = str(ROOT / "bench" / "tutorial.py")
        return [python, script, "consume", url, queue, str(count)], [python, script, "publish", url, queue,
                                                                      str(count), str(size)]
    script = str(NODE_DIR / "amqp_bench.js")
    return ["node", script, "consume", url, queue, str(count)], ["node", script, "publish", url, queue,
                                                                 str(count), str(size)]


def run_once(broker: LocalBroker, client: str, size: int, count: int) -> dict:
    queue = f"bench-{client}-{size}-{uuid.uuid4().hex[:6]}"
    consume_cmd, publish_cmd = commands(client, broker.url, queue, count, size)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AMQP_URL", None)
    consumer = subprocess.Popen(consume_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ready = "consuming from queue" if client == "rabbitipc" else "ready"
    for line in consumer.stdout:
        if ready in line:
            break
    cpu_before = broker_cpu(broker.pid())
    started = time.time()
    publisher = subprocess.Popen(publish_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    latencies: list[float] = []
    if client == "rabbitipc":
        first = last = 0.0
        for line in consumer.stdout:
            match = LATENCY.search(line)
            if match and " received seq=" in line:
                latencies.append(float(match.group(1)))
                last = log_time(line)
                first = first or last
                if len(latencies) == count:
                    break
        consumer.send_signal(signal.SIGTERM)
    else:
        result = {}
        for line in consumer.stdout:
            if line.startswith("{"):
                result = json.loads(line)
        latencies, last = result["latencies_ms"], result["last_recv"]
    publisher_usage = reap(publisher)
    consumer_usage = reap(consumer)
    broker_cpu_s = broker_cpu(broker.pid()) - cpu_before
    first = first if client == "rabbitipc" else result["first_recv"]
    elapsed = last - first  # steady state: first to last receive, no interpreter start-up
    latencies.sort()
    return {
        "client": client, "size": size, "count": count,
        "msgs_per_s": (count - 1) / elapsed, "mb_per_s": (count - 1) * size / elapsed / 1e6,
        "wall_s": last - started,
        "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "broker_cpu_s": broker_cpu_s, "publisher_cpu_s": publisher_usage["cpu_s"],
        "consumer_cpu_s": consumer_usage["cpu_s"], "publisher_rss_mib": publisher_usage["rss_mib"],
        "consumer_rss_mib": consumer_usage["rss_mib"],
    }


def median_run(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    return {**runs[0], **{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": len(runs)}


def table(results: list[dict]) -> str:
    head = f"{'client':<14} {'size':>6} {'msgs/s':>9} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} " \
           f"{'broker cpu':>10} {'pub cpu':>8} {'cons cpu':>8} {'pub MiB':>8} {'cons MiB':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['client']:<14} {r['size']:>6} {r['msgs_per_s']:>9.0f} {r['mb_per_s']:>8.1f} "
                     f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['broker_cpu_s']:>9.2f}s "
                     f"{r['publisher_cpu_s']:>7.2f}s {r['consumer_cpu_s']:>7.2f}s "
                     f"{r['publisher_rss_mib']:>8.1f} {r['consumer_rss_mib']:>8.1f}")
    lines.append("")
    for size in sorted({r["size"] for r in results}):
        by = {r["client"]: r for r in results if r["size"] == size}
        if "rabbitipc" in by:
            ratios = [f"{other}: {by['rabbitipc']['msgs_per_s'] / by[other]['msgs_per_s']:.2f}x"
                      for other in by if other != "rabbitipc"]
            lines.append(f"rabbitipc throughput at {size} B relative to " + ", ".join(ratios))
    return "\n".join(lines)


def chart(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = sorted({r["size"] for r in results})
    clients = list(dict.fromkeys(r["client"] for r in results))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4))
    for ax, size in zip(axes if len(sizes) > 1 else [axes], sizes):
        values = [next((r["msgs_per_s"] for r in results if r["client"] == c and r["size"] == size), 0)
                  for c in clients]
        ax.bar(clients, values, color=["#d94f30" if c == "rabbitipc" else "#8a8a8a" for c in clients])
        ax.set_title(f"{size}-byte messages, durable, confirmed")
        ax.set_ylabel("messages per second (end to end)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def ensure_node() -> bool:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False
    if not (NODE_DIR / "node_modules" / "amqplib").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True,
                       timeout=300)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run: under a minute")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration; the median is reported")
    parser.add_argument("--out", default="bench-results", help="directory for results.json and throughput.png")
    parser.add_argument("--count", type=int, help="messages per configuration (overrides the defaults)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the private broker is stopped
    counts = {100: 2000, 65536: 200} if args.quick else {100: 20000, 65536: 2000}
    if args.count:
        counts = dict.fromkeys(counts, args.count)
    runs = 1 if args.quick else args.runs
    clients = ["rabbitipc", "tutorial-pika"] + (["amqplib"] if ensure_node() else [])
    if "amqplib" not in clients:
        print("node/npm not found: the amqplib limit is left out", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="rabbitipc-bench-") as node_dir:
        broker = LocalBroker(node_dir)
        broker.start()
        try:
            for size in SIZES.values():
                for client in clients:
                    samples = [run_once(broker, client, size, counts[size]) for _ in range(runs)]
                    results.append(median_run(samples))
                    print(f"  {client} {size} B: {results[-1]['msgs_per_s']:.0f} msgs/s", file=sys.stderr)
        finally:
            broker.stop()
    (out / "results.json").write_text(json.dumps({"quick": args.quick, "results": results}, indent=2) + "\n")
    print(table(results))
    if chart(results, out / "throughput.png"):
        print(f"\nchart: {out / 'throughput.png'}; data: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
