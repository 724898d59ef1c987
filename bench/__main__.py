"""Benchmark: the programs users run, against the baselines, on one private broker, in one run.

    python -m bench [--quick] [--runs N] [--out DIR] [--count N] [--backlog N] [--clients A,B,...]
                    [--scenarios throughput,paced,backlog]

Clients (each a separate publisher and consumer process, durable queue):
  rabbitipc         sender/send.py --rate 0 and receiver/receive.py as shipped, reliable mode:
                    persistent messages, streamed confirms (window 1000), manual acks in batches
                    after handling, a log line per message up to 100 a second, then summaries
  rabbitipc-fast    the same with --transient: messages not written to disk by the broker
  rabbitipc-pure    the same as rabbitipc with RABBITIPC_PURE_PYTHON=1: the pure-Python wire codec
  rabbitipc-classic the same as rabbitipc on a classic queue (--queue-type classic on both; quorum is the default)
  the Python peers  bench/peers/, each its fastest reliable strategy (persistent messages,
                    publisher confirms, manual acks): pika-select, py-amqp, aio-pika, aiormq,
                    amqpstorm, kombu, tutorial-pika (the RabbitMQ tutorials' way); a peer whose
                    package is missing is left out (pip install -e '.[bench]' installs them)
  c-librabbitmq     a small C program on Debian's librabbitmq-dev (bench/c, built here): the
                    limit, the practical capacity of this machine and broker; and
  amqplib           Node's amqplib: both with streamed confirms (window 1000), prefetch 1000,
                    acks per 100
Scenarios:
  throughput  as fast as possible, 100 B and 64 KiB payloads: end-to-end msgs/s and MB/s
              (first to last receive), p50/p99 latency (send time to handled time), CPU per
              message of broker, publisher and consumer (process start included), peak RSS
  paced       100 B at 1,000 msgs/s: the latency a steady stream sees (rabbitipc on its default quorum
              queue and, as rabbitipc-classic, on the classic queue the other clients use)
  backlog     the rabbitipc receiver draining --backlog queued messages: its RSS sampled
              through the drain (flat: the second half's peak within 10% of the first half's)
Each configuration runs --runs times and the median is reported (rabbitipc's percentiles come
from its receiver's histogram, 2% buckets). Writes results.json and throughput.png
(matplotlib) to --out, prints the table, the ratios and the targets.
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
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.peers import PEERS
from bench.peers import by_name as peers_by_name
from bench.peers import installed as peer_installed
from devtools.localbroker import LocalBroker
from rabbitipc.wire import PURE_PYTHON_ENV  # set to 1: the pure-Python codec, not the C extension

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
SIZES = (100, 65536)
PACED_RATE = 1000
TICKS = os.sysconf("SC_CLK_TCK")
DONE = re.compile(r"receiver done: (\d+) messages handled; first to last ([\d.]+)s .*"
                  r"latency_ms p50=([\d.]+) p99=([\d.]+)")
C_DIR = ROOT / "bench" / "c"
C_BINARY = C_DIR / "amqp_bench"
NON_PYTHON = ("c-librabbitmq", "amqplib")
RABBITIPC = ("rabbitipc", "rabbitipc-fast", "rabbitipc-pure", "rabbitipc-classic")
CLIENTS = (*RABBITIPC, *(peer.name for peer in PEERS), *NON_PYTHON)
SCENARIOS = ("throughput", "paced", "backlog")
# rabbitipc at 100 B before the compiled path, as a share of the C client's msgs/s in the same run
# (docs/performance.md, 2026-11-24: 15,220 / 32,754): what the pure-Python fallback must still reach.
BEFORE_COMPILED_VS_C = 0.46


def broker_cpu(pid: int) -> float:
    """utime + stime of the broker's VM, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def reap(proc: subprocess.Popen, timeout: float = 900) -> dict:
    """Wait for a child and return its CPU seconds and peak RSS (MiB) from wait4."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(map(str, proc.args[:3]))} exited {proc.returncode}")
            return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args} did not finish in {timeout}s")
        time.sleep(0.01)


def commands(client: str, url: str, queue: str, count: int, size: int, rate: float = 0,
             tuning: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(consumer, publisher) command lines; tuning: extra rabbitipc flags for the sweep."""
    python = sys.executable
    if client.startswith("rabbitipc"):
        common = ["--url", url, "--queue", queue, "--retry-timeout", "10"]
        if client == "rabbitipc-classic":
            common += ["--queue-type", "classic"]
        # `env` execs the program, so the pid (and wait4's CPU and RSS) stay the program's own.
        prefix = ["env", f"{PURE_PYTHON_ENV}=1"] if client == "rabbitipc-pure" else []
        sender = [*prefix, python, str(ROOT / "sender" / "send.py"), *common, "--rate", str(rate),
                  "--count", str(count), "--size", str(size)]
        receiver = [*prefix, python, str(ROOT / "receiver" / "receive.py"), *common, "--count", str(count)]
        if client == "rabbitipc-fast":
            sender.append("--transient")
        for flag, value in zip(tuning[::2], tuning[1::2]):
            (sender if flag == "--window" else receiver).extend([flag, value])
        return receiver, sender
    peer = peers_by_name().get(client)
    if peer:
        program = [python, "-m", f"bench.peers.{peer.module}"]
        return ([*program, "consume", url, queue, str(count)],
                [*program, "publish", url, queue, str(count), str(size), str(rate)])
    program = [str(C_BINARY)] if client == "c-librabbitmq" else ["node", str(NODE_DIR / "amqp_bench.js")]
    return ([*program, "consume", url, queue, str(count)],
            [*program, "publish", url, queue, str(count), str(size), str(rate)])


def start_consumer(command: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AMQP_URL", None)
    consumer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=ROOT)
    for line in consumer.stdout:
        if "consuming from queue" in line or line.strip() == "ready":
            return consumer
    raise RuntimeError(f"consumer {command[:3]} exited before it was ready")


def consumer_result(client: str, consumer: subprocess.Popen) -> tuple[float, float, float]:
    """Read the consumer's output to the end: (first-to-last seconds, p50 ms, p99 ms)."""
    if client.startswith("rabbitipc"):
        for line in consumer.stdout:
            match = DONE.search(line)
            if match:
                return float(match.group(2)), float(match.group(3)), float(match.group(4))
        raise RuntimeError("the receiver ended without its 'receiver done' line")
    result = {}
    for line in consumer.stdout:
        if line.startswith("{"):
            result = json.loads(line)
    latencies = sorted(result["latencies_ms"])
    return (result["last_recv"] - result["first_recv"], latencies[len(latencies) // 2],
            latencies[max(0, int(len(latencies) * 0.99) - 1)])


def run_once(broker: LocalBroker, client: str, size: int, count: int, rate: float = 0,
             tuning: tuple[str, ...] = ()) -> dict:
    queue = f"bench-{client}-{size}-{uuid.uuid4().hex[:6]}"
    consume_cmd, publish_cmd = commands(client, broker.url, queue, count, size, rate, tuning)
    consumer = start_consumer(consume_cmd)
    cpu_before = broker_cpu(broker.pid())
    publisher = subprocess.Popen(publish_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    span, p50, p99 = consumer_result(client, consumer)
    publisher_usage = reap(publisher)
    consumer_usage = reap(consumer)
    return {
        "scenario": "paced" if rate else "throughput", "client": client, "tuning": " ".join(tuning), "size": size,
        "count": count, "rate": rate, "msgs_per_s": (count - 1) / span, "mb_per_s": (count - 1) * size / span / 1e6,
        "p50_ms": p50, "p99_ms": p99, "broker_cpu_s": broker_cpu(broker.pid()) - cpu_before,
        "publisher_cpu_s": publisher_usage["cpu_s"], "consumer_cpu_s": consumer_usage["cpu_s"],
        "publisher_rss_mib": publisher_usage["rss_mib"], "consumer_rss_mib": consumer_usage["rss_mib"],
    }


def run_backlog(broker: LocalBroker, count: int) -> dict:
    """Queue `count` messages first, then let one rabbitipc receiver drain them."""
    queue = f"bench-backlog-{uuid.uuid4().hex[:6]}"
    consume_cmd, publish_cmd = commands("rabbitipc", broker.url, queue, count, 100)
    filled = time.monotonic()
    reap(subprocess.Popen(publish_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), timeout=3600)
    filled = time.monotonic() - filled
    consumer = start_consumer(consume_cmd)
    samples: list[float] = []
    sampler = threading.Thread(target=sample_rss, args=(consumer.pid, samples), daemon=True)
    sampler.start()
    span, p50, p99 = consumer_result("rabbitipc", consumer)
    sampler.join()  # ends when the receiver exits (its /proc entry goes)
    usage = reap(consumer, timeout=3600)
    half = max(1, len(samples) // 2)  # a drain shorter than two samples compares one sample with itself
    return {"scenario": "backlog", "client": "rabbitipc", "size": 100, "count": count, "fill_s": filled,
            "msgs_per_s": (count - 1) / span, "consumer_cpu_s": usage["cpu_s"], "consumer_rss_mib": usage["rss_mib"],
            "rss_first_half_mib": max(samples[:half], default=0.0),
            "rss_second_half_mib": max(samples[half:] or samples[-1:], default=0.0)}


def sample_rss(pid: int, samples: list[float], every: float = 0.05) -> None:
    """Append the process's resident set (MiB) every `every` seconds while it runs."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
        if match is None:  # a zombie has no memory left: the drain is over
            return
        samples.append(int(match.group(1)) / 1024)
        time.sleep(every)


def median_run(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, float) and k != "rate"]
    return {**runs[0], **{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": len(runs)}


def find(results: list[dict], scenario: str, client: str, size: int = 100) -> dict | None:
    return next((r for r in results if r["scenario"] == scenario and r["client"] == client and r["size"] == size),
                None)


def table(results: list[dict]) -> str:
    head = (f"{'scenario':<10} {'client':<16} {'size':>6} {'msgs/s':>8} {'MB/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'CPU us/msg: broker':>18} {'pub':>5} {'cons':>5} {'RSS MiB: pub':>12} {'cons':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        if r["scenario"] == "backlog":
            continue
        per = 1e6 / r["count"]
        lines.append(f"{r['scenario']:<10} {r['client']:<16} {r['size']:>6} {r['msgs_per_s']:>8.0f} "
                     f"{r['mb_per_s']:>7.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['broker_cpu_s'] * per:>18.0f} "
                     f"{r['publisher_cpu_s'] * per:>5.0f} {r['consumer_cpu_s'] * per:>5.0f} "
                     f"{r['publisher_rss_mib']:>12.1f} {r['consumer_rss_mib']:>5.1f}")
    for r in results:
        if r["scenario"] == "backlog":
            lines.append(f"\nbacklog: the receiver drained {r['count']} queued messages at {r['msgs_per_s']:.0f} "
                         f"msgs/s with a peak RSS of {r['consumer_rss_mib']:.1f} MiB (first half of the drain "
                         f"{r['rss_first_half_mib']:.1f}, second half {r['rss_second_half_mib']:.1f})")
    lines.append("")
    for size in SIZES:
        ours = find(results, "throughput", "rabbitipc", size)
        others = [r for r in results if r["scenario"] == "throughput" and r["size"] == size and r is not ours]
        if ours and others:
            lines.append(f"rabbitipc throughput at {size} B relative to " + ", ".join(
                f"{r['client']}: {ours['msgs_per_s'] / r['msgs_per_s']:.2f}x" for r in others))
    return "\n".join(lines)


def limit_client(results: list[dict]) -> str | None:
    """The limit: the C client when it ran, else the fastest non-Python client at 100 B in this run."""
    rows = [r for r in results if r["scenario"] == "throughput" and r["size"] == 100 and r["client"] in NON_PYTHON]
    if any(r["client"] == "c-librabbitmq" for r in rows):
        return "c-librabbitmq"
    return max(rows, key=lambda r: r["msgs_per_s"])["client"] if rows else None


def fastest_python_peer(results: list[dict]) -> dict | None:
    """The fastest other Python client at 100 B (reliable: every peer; rabbitipc's own rows excluded)."""
    rows = [r for r in results if r["scenario"] == "throughput" and r["size"] == 100
            and r["client"] not in RABBITIPC and r["client"] not in NON_PYTHON]
    return max(rows, key=lambda r: r["msgs_per_s"]) if rows else None


def targets(results: list[dict]) -> list[tuple[str, str, bool]]:
    """The targets, as (what, measured, met) from this run's figures."""
    out = []
    limit_name = limit_client(results)
    ours, limit = find(results, "throughput", "rabbitipc"), find(results, "throughput", limit_name)
    if ours and limit:
        ratio = ours["msgs_per_s"] / limit["msgs_per_s"]
        out.append((f"100 B reliable throughput >= 0.8x {limit_name}", f"{ratio:.2f}x", ratio >= 0.8))
    peer = fastest_python_peer(results)
    if ours and peer:
        ratio = ours["msgs_per_s"] / peer["msgs_per_s"]
        out.append((f"100 B reliable throughput >= 1.5x the fastest other Python client ({peer['client']})",
                    f"{ratio:.2f}x", ratio >= 1.5))
    paced, paced_limit = find(results, "paced", "rabbitipc"), find(results, "paced", limit_name)
    if paced and paced_limit:
        ratio = paced["p99_ms"] / paced_limit["p99_ms"]
        out.append((f"p99 at {PACED_RATE} msgs/s <= 1.5x {limit_name}'s",
                    f"{paced['p99_ms']:.1f} ms vs {paced_limit['p99_ms']:.1f} ms ({ratio:.2f}x)", ratio <= 1.5))
    classic = find(results, "paced", "rabbitipc-classic")
    if classic and paced_limit:
        ratio = classic["p99_ms"] / paced_limit["p99_ms"]
        out.append((f"p99 at {PACED_RATE} msgs/s <= 1.5x {limit_name}'s, rabbitipc-classic (the same queue type)",
                    f"{classic['p99_ms']:.1f} ms vs {paced_limit['p99_ms']:.1f} ms ({ratio:.2f}x)", ratio <= 1.5))
    big, big_limit = find(results, "throughput", "rabbitipc", 65536), find(results, "throughput", limit_name, 65536)
    if big and big_limit:
        ratio = big["mb_per_s"] / big_limit["mb_per_s"]
        out.append((f"64 KiB MB/s >= 0.8x {limit_name}", f"{ratio:.2f}x", ratio >= 0.8))
    big_classic = find(results, "throughput", "rabbitipc-classic", 65536)
    if big_classic and big_limit:
        ratio = big_classic["mb_per_s"] / big_limit["mb_per_s"]
        out.append((f"64 KiB MB/s >= 0.8x {limit_name}, rabbitipc-classic (the same queue type)", f"{ratio:.2f}x",
                    ratio >= 0.8))
    backlog = find(results, "backlog", "rabbitipc")
    if backlog and backlog["rss_first_half_mib"]:
        ratio = backlog["rss_second_half_mib"] / backlog["rss_first_half_mib"]
        out.append((f"receiver RSS flat through a {backlog['count']}-message backlog (second half <= 1.1x first)",
                    f"{backlog['rss_first_half_mib']:.1f} MiB then {backlog['rss_second_half_mib']:.1f} MiB",
                    ratio <= 1.1))
    pure = find(results, "throughput", "rabbitipc-pure")
    if pure and limit and limit_name == "c-librabbitmq":  # the recorded share is of the C client's rate
        ratio = pure["msgs_per_s"] / limit["msgs_per_s"]
        compiled = f", rabbitipc {ours['msgs_per_s'] / pure['msgs_per_s']:.2f}x of it" if ours else ""
        out.append((f"pure-Python fallback no slower than before: rabbitipc-pure >= {BEFORE_COMPILED_VS_C:.2f}x "
                    f"{limit_name} (rabbitipc's share before the compiled path)", f"{ratio:.2f}x{compiled}",
                    ratio >= BEFORE_COMPILED_VS_C))
    return out


def chart(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [("throughput", 100, "msgs_per_s", "messages per second, 100 B"),
              ("throughput", 65536, "mb_per_s", "MB per second, 64 KiB"),
              ("paced", 100, "p99_ms", f"p99 latency (ms) at {PACED_RATE} msgs/s")]
    panels = [p for p in panels if any(r["scenario"] == p[0] and r["size"] == p[1] for r in results)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5))
    for ax, (scenario, size, key, title) in zip(axes if len(panels) > 1 else [axes], panels):
        rows = [r for r in results if r["scenario"] == scenario and r["size"] == size]
        ax.bar([r["client"] for r in rows], [r[key] for r in rows],
               color=["#d94f30" if r["client"].startswith("rabbitipc") else "#8a8a8a" for r in rows])
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    fig.suptitle("durable queue, confirmed publishes, acked deliveries (median of runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def ensure_c() -> bool:
    """Build the C client when a compiler and librabbitmq-dev are there (apt-get install librabbitmq-dev)."""
    source = C_DIR / "amqp_bench.c"
    if C_BINARY.exists() and C_BINARY.stat().st_mtime >= source.stat().st_mtime:
        return True
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return False
    build = subprocess.run([compiler, "-O2", "-o", str(C_BINARY), str(source), "-lrabbitmq"],
                           capture_output=True, text=True, timeout=120)
    return build.returncode == 0


def ensure_node() -> bool:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False
    if not (NODE_DIR / "node_modules" / "amqplib").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True,
                       timeout=300)
    return True


def sweep(count: int) -> int:
    """Throughput of the reliable path by receiver prefetch and sender window: how the defaults were chosen."""
    settings = [("--prefetch", p) for p in ("10", "50", "100", "250", "500", "1000", "2000")] + \
               [("--window", w) for w in ("1", "10", "100", "500", "1000", "5000")]
    with tempfile.TemporaryDirectory(prefix="rabbitipc-bench-") as node_dir:
        broker = LocalBroker(node_dir)
        broker.start()
        try:
            for flag, value in settings:
                row = run_once(broker, "rabbitipc", 100, count, tuning=(flag, value))
                print(f"{flag} {value:>5}: {row['msgs_per_s']:>7.0f} msgs/s  p50 {row['p50_ms']:>7.1f} ms  "
                      f"receiver {row['consumer_cpu_s'] / count * 1e6:5.1f} us/msg, "
                      f"sender {row['publisher_cpu_s'] / count * 1e6:5.1f} us/msg", flush=True)
        finally:
            broker.stop()
    return 0


def name_list(kind: str, known: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for --clients/--scenarios: names of `known`, comma-separated."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(unknown) or '(none given)'}; "
                                             f"choose from {', '.join(known)}")
        return names
    return parse


def available(wanted: tuple[str, ...]) -> list[str]:
    """The wanted clients that can run here, in the bench's order; one stderr line for each left out."""
    peers = peers_by_name()
    clients = []
    for client in CLIENTS:
        if client not in wanted:
            continue
        if client in peers and not peer_installed(peers[client]):
            print(f"{client}: package {peers[client].package} not installed (pip install -e '.[bench]'): "
                  "left out", file=sys.stderr)
        elif client == "c-librabbitmq" and not ensure_c():
            print("no C compiler or librabbitmq-dev (apt-get install librabbitmq-dev): the C limit is left out",
                  file=sys.stderr)
        elif client == "amqplib" and not ensure_node():
            print("node/npm not found: the amqplib baseline is left out", file=sys.stderr)
        else:
            clients.append(client)
    return clients


def scaled(client: str, count: int) -> int:
    """A slow peer's share of the count, so it takes about as long as the others (at least 100 messages)."""
    peer = peers_by_name().get(client)
    return max(min(count, 100), int(count * peer.share)) if peer else count


def paced(client: str) -> bool:
    """Paced 1,000 msgs/s: every client able to keep that rate; of rabbitipc's variants the default (quorum
    queue) and rabbitipc-classic, on the classic queue every other client declares (a quorum queue delivers a
    message only once it is written to its log: about twice the latency of a classic one, measured)."""
    peer = peers_by_name().get(client)
    return client in ("rabbitipc", "rabbitipc-classic") or (peer.paced if peer else client in NON_PYTHON)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run: about two minutes")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration; the median is reported")
    parser.add_argument("--out", default="bench-results", help="directory for results.json and throughput.png")
    parser.add_argument("--count", type=int, help="messages per configuration (overrides the defaults)")
    parser.add_argument("--backlog", type=int, help="messages queued before the receiver starts "
                                                    "(default 1000000, --quick 20000)")
    parser.add_argument("--clients", type=name_list("client", CLIENTS), default=CLIENTS, metavar="A,B,...",
                        help="clients to measure, comma-separated (default: every one available): "
                             + ", ".join(CLIENTS))
    parser.add_argument("--scenarios", type=name_list("scenario", SCENARIOS), default=SCENARIOS,
                        metavar="A,B,...",
                        help="scenarios to run, comma-separated (default: all): " + ", ".join(SCENARIOS))
    parser.add_argument("--sweep", action="store_true",
                        help="instead: rabbitipc at 100 B across --prefetch and --window values (sizing the defaults)")
    args = parser.parse_args(argv)
    if args.sweep:
        return sweep(args.count or 20000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the private broker is stopped
    counts = {100: 5000, 65536: 300, "paced": PACED_RATE} if args.quick else \
        {100: 30000, 65536: 3000, "paced": 10 * PACED_RATE}
    if args.count:
        counts = dict.fromkeys(counts, args.count)
    backlog = args.backlog or args.count or (20000 if args.quick else 1_000_000)
    runs = 1 if args.quick else args.runs
    clients = available(args.clients)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []

    def measure(label: str, *how) -> None:
        results.append(median_run([run_once(broker, *how) for _ in range(runs)]))
        print(f"  {label}: {results[-1]['msgs_per_s']:.0f} msgs/s", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="rabbitipc-bench-") as node_dir:
        broker = LocalBroker(node_dir)
        broker.start()
        try:
            for size in SIZES if "throughput" in args.scenarios else ():
                for client in clients:
                    measure(f"{client} {size} B", client, size, scaled(client, counts[size]))
            for client in [c for c in clients if paced(c) and "paced" in args.scenarios]:
                measure(f"{client} paced {PACED_RATE}/s", client, 100, counts["paced"], PACED_RATE)
            if "rabbitipc" in clients and "backlog" in args.scenarios:
                results.append(run_backlog(broker, backlog))
                print(f"  rabbitipc backlog of {backlog}: {results[-1]['consumer_rss_mib']:.1f} MiB peak",
                      file=sys.stderr)
        finally:
            broker.stop()
    checks = targets(results)
    (out / "results.json").write_text(json.dumps({"quick": args.quick, "runs": runs, "results": results,
                                                  "targets": checks}, indent=2) + "\n")
    print(table(results))
    print("\ntargets:")
    for what, measured, met in checks:
        print(f"  [{'met' if met else 'NOT met'}] {what}: {measured}")
    if chart(results, out / "throughput.png"):
        print(f"\nchart: {out / 'throughput.png'}; data: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
