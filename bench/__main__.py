"""Benchmark: the programs users run, against the baselines, on one private broker, in one run.

    python -m bench [--quick] [--runs N] [--out DIR] [--count N] [--backlog N] [--clients A,B,...]
                    [--scenarios throughput,paced,backlog,cluster,retries]

Clients (each a separate publisher and consumer process, durable queue):
  rabbitipc         sender/send.py --rate 0 and receiver/receive.py as shipped, reliable mode
                    (persistent messages, streamed confirms in a window of 1000, manual acks in batches
                    after handling, a log line per message up to 100 a second, then summaries), on a
                    classic queue (--queue-type classic): the queue type every other client declares,
                    so this is the row the headline compares
  rabbitipc-fast    the same with --transient: messages not written to disk by the broker
  rabbitipc-pure    the same as rabbitipc with RABBITIPC_PURE_PYTHON=1: the pure-Python wire codec
  rabbitipc-quorum  the same on rabbitipc's default quorum queue: shown apart; only its ratio to
                    rabbitipc is printed
  the Python peers  bench/peers/, each its fastest reliable strategy (persistent messages,
                    publisher confirms, manual acks): pika-select, py-amqp, aio-pika, aiormq,
                    amqpstorm, kombu, tutorial-pika (the RabbitMQ tutorials' way); a peer whose
                    package is missing is left out (pip install -e '.[bench]' installs them)
  c-librabbitmq     a small C program on Debian's librabbitmq-dev (bench/c, built here): the
                    limit, the practical capacity of this machine and broker; and
  amqplib           Node's amqplib: both with streamed confirms (window 1000), prefetch 1000,
                    acks per 100
Scenarios:
  throughput  as fast as possible, 100 B and 64 KiB payloads: msgs/s and MB/s from the publisher's
              start to the consumer's exit (what a user waits for), the steady rate beside it (first
              to last receive), p50/p99 latency (send time to handled time), CPU per message of
              broker, publisher and consumer (process start included), peak RSS (each program's own
              VmHWM, read from /proc until it exits)
  paced       100 B at 1,000 msgs/s: the latency a steady stream sees
  backlog     the rabbitipc receiver draining --backlog queued messages (its default quorum queue):
              its RSS sampled through the drain (flat: the second half's peak within 10% of the first)
  rpc         request/reply round trips (bench/rpc.py, as make bench-rpc): our RpcClient against our
              responder, the tutorial's pair, aio-pika's RPC and a C pair; 1 and 8 callers; p50, p99, calls/s
  cluster     a private 3-node cluster (devtools/localcluster.py), 100 B on a quorum queue replicated
              to the three nodes: rabbitipc-quorum and c-librabbitmq (AMQP_BENCH_QUEUE_TYPE=quorum),
              both connected to node 1 (where the queue's leader then lives), broker CPU summed over
              the three nodes; the ratio is printed (not in --quick unless asked for: the cluster takes
              half a minute to form)
  retries     what retries cost: the rabbitipc receiver (default quorum queue, 100 B) with a handler
              that fails the first attempt of one message in ten (retried once after 0.1 s through its
              delay queue, bench/handlers.py), against the same handler never failing; ratio printed
Method, the same for every client: the consumer starts and declares its queue, then the clock starts
with the publisher's process; before each run the broker is left to settle (its CPU idle), after it
the queue is deleted (the broker reports none left); the rounds are interleaved (every configuration
once, then again: A B C A B C) and each row is the median of --runs rounds (rabbitipc's percentiles
come from its receiver's histogram, 2% buckets). The queue type of each row is the broker's own
answer. Writes results.json (medians, every single run in order) and throughput.svg (the chart, no
dependency) to --out, prints the table, the ratios and the performance targets, met or not; when one is
missed, where rabbitipc's CPU goes (bench/profile.py under py-spy, its stacks in --out/profile).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import enum
import html
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
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pika

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
RABBITIPC = ("rabbitipc", "rabbitipc-fast", "rabbitipc-pure", "rabbitipc-quorum")
CLIENTS = (*RABBITIPC, *(peer.name for peer in PEERS), *NON_PYTHON)
SCENARIOS = ("throughput", "paced", "backlog", "rpc", "cluster", "retries")
#: The retries scenario's two receivers: the same handler, never failing and failing 10% of first attempts.
RETRY_FLAGS = ("--max-attempts", "3", "--min-backoff", "0.1", "--max-backoff", "0.1")
RETRY_ROWS = {"handler never failing": ("--handler", "bench.handlers:succeed", *RETRY_FLAGS),
              "handler failing 10%": ("--handler", "bench.handlers:fail_one_in_ten", *RETRY_FLAGS)}
CLUSTER_CLIENTS = ("rabbitipc-quorum", "c-librabbitmq")
# rabbitipc at 100 B before the compiled path, as a share of the C client's msgs/s in the same run
# (docs/performance.md, 2026-11-24: 15,220 / 32,754): what the pure-Python fallback must still reach.
BEFORE_COMPILED_VS_C = 0.46
# Before each run the broker settles: its CPU below this share of one core over SETTLE_WINDOW seconds
# (at most SETTLE_LIMIT seconds: a busy machine is recorded in the row's settle_s, not waited out).
SETTLE_SHARE, SETTLE_WINDOW, SETTLE_LIMIT = 0.05, 0.25, 20.0


class QueueType(enum.Enum):
    """The queue a row's clients declare; the headline compares rows of one type only."""

    CLASSIC = "classic"
    QUORUM = "quorum"


HEADLINE = QueueType.CLASSIC  # what every peer declares (the broker's default type)


def queue_type(client: str) -> QueueType:
    """rabbitipc-quorum runs on rabbitipc's default quorum queue; every other row on a classic one."""
    return QueueType.QUORUM if client == "rabbitipc-quorum" else QueueType.CLASSIC


@dataclass(frozen=True)
class Config:
    """One configuration of the bench: run once per round."""

    scenario: str
    client: str
    size: int
    count: int
    rate: float = 0
    variant: str = ""  # the retries scenario: a key of RETRY_ROWS

    @property
    def label(self) -> str:
        return f"{self.client} {self.size} B" + (f" paced {self.rate:.0f}/s" if self.rate else "") + \
            (f", {self.variant}" if self.variant else "")


def schedule(plan: list[Config], runs: int) -> list[Config]:
    """Interleaved rounds: every configuration once, then again (A B C A B C, never A A A B B B)."""
    return [config for _ in range(runs) for config in plan]


class ClusterTarget:
    """A local cluster as run_once sees a broker: node 1's addresses (every client connects there, so the
    queue's leader is there for each of them alike) and the CPU of every node."""

    def __init__(self, cluster) -> None:
        self.nodes = cluster.nodes

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def management_url(self) -> str:
        return self.nodes[0].management_url


def broker_cpu(broker: LocalBroker | ClusterTarget) -> float:
    """utime + stime of the broker's VM (of every node's, for a cluster), in seconds."""
    total = 0.0
    for node in getattr(broker, "nodes", [broker]):
        fields = Path(f"/proc/{node.pid()}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def settle(broker: LocalBroker | ClusterTarget) -> float:
    """Wait until the broker is idle (the last run's work done); the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < SETTLE_LIMIT:
        before = broker_cpu(broker)
        time.sleep(SETTLE_WINDOW)
        if broker_cpu(broker) - before < SETTLE_SHARE * SETTLE_WINDOW:
            break
    return time.monotonic() - start


def management(broker: LocalBroker, path: str) -> object:
    """GET the management API (guest over loopback) and return its JSON."""
    request = urllib.request.Request(broker.management_url + "api/" + path, headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def queue_kind(broker: LocalBroker, queue: str) -> str:
    """The queue's type, as the broker reports it ("classic", "quorum")."""
    return management(broker, "queues/%2F/" + urllib.parse.quote(queue, safe=""))["type"]


def queue_names(broker: LocalBroker) -> list[str]:
    return [row["name"] for row in management(broker, "queues?columns=name")]


def delete_queue(broker: LocalBroker, queue: str) -> int:
    """Delete the run's queue and those named after it (rabbitipc's <queue>.dead); how many queues the
    broker still has (0: the next run starts clean)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        for name in queue_names(broker):
            if name == queue or name.startswith(queue + "."):
                channel.queue_delete(name)
    finally:
        connection.close()
    return len(queue_names(broker))


def reap(proc: subprocess.Popen, timeout: float = 900) -> dict:
    """Wait for a child and return its CPU seconds from wait4 (not its ru_maxrss: see PeakRss)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(map(str, proc.args[:3]))} exited {proc.returncode}")
            return {"cpu_s": usage.ru_utime + usage.ru_stime}
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args} did not finish in {timeout}s")
        time.sleep(0.01)


def commands(client: str, url: str, queue: str, count: int, size: int, rate: float = 0,
             tuning: tuple[str, ...] = (), quorum: bool = False) -> tuple[list[str], list[str]]:
    """(consumer, publisher) command lines; tuning: extra rabbitipc flags for the sweep; quorum: the C
    client declares a quorum queue (rabbitipc-quorum's type) instead of the broker's default."""
    python = sys.executable
    if client.startswith("rabbitipc"):
        common = ["--url", url, "--queue", queue, "--retry-timeout", "10",
                  "--queue-type", queue_type(client).value]
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
    if quorum and client == "c-librabbitmq":
        program = ["env", "AMQP_BENCH_QUEUE_TYPE=quorum", *program]
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


def consumer_result(client: str, consumer: subprocess.Popen) -> tuple[float, float, float, float]:
    """Read the consumer's output to its end (the process exits): (that moment on the monotonic clock,
    first-to-last receive seconds, p50 ms, p99 ms)."""
    lines = list(consumer.stdout)
    ended = time.monotonic()
    if client.startswith("rabbitipc"):
        for line in lines:
            match = DONE.search(line)
            if match:
                return ended, float(match.group(2)), float(match.group(3)), float(match.group(4))
        raise RuntimeError("the receiver ended without its 'receiver done' line")
    result = json.loads([line for line in lines if line.startswith("{")][-1])
    latencies = sorted(result["latencies_ms"])
    return (ended, result["last_recv"] - result["first_recv"], latencies[len(latencies) // 2],
            latencies[max(0, int(len(latencies) * 0.99) - 1)])


def run_once(broker: LocalBroker | ClusterTarget, client: str, size: int, count: int, rate: float = 0,
             tuning: tuple[str, ...] = ()) -> dict:
    """One run, timed like every other: from the publisher's start to the consumer's exit."""
    queue = f"bench-{client}-{size}-{uuid.uuid4().hex[:6]}"
    on_cluster = isinstance(broker, ClusterTarget)
    consume_cmd, publish_cmd = commands(client, broker.url, queue, count, size, rate, tuning, quorum=on_cluster)
    settled = settle(broker)
    consumer = start_consumer(consume_cmd)
    consumer_rss = PeakRss(consumer.pid)
    cpu_before = broker_cpu(broker)
    started = time.monotonic()
    publisher = subprocess.Popen(publish_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    publisher_rss = PeakRss(publisher.pid)
    ended, span, p50, p99 = consumer_result(client, consumer)
    publisher_usage = reap(publisher)
    consumer_usage = reap(consumer)
    broker_cpu_s = broker_cpu(broker) - cpu_before
    kind = queue_kind(broker, queue)
    wall = ended - started
    return {
        "scenario": "cluster" if on_cluster else "paced" if rate else "throughput",
        "client": client, "queue_type": kind,
        "tuning": " ".join(tuning), "size": size, "count": count, "rate": rate,
        "msgs_per_s": count / wall, "mb_per_s": count * size / wall / 1e6, "wall_s": wall,
        "steady_msgs_per_s": (count - 1) / span if span > 0 else 0.0,
        "p50_ms": p50, "p99_ms": p99, "broker_cpu_s": broker_cpu_s,
        "publisher_cpu_s": publisher_usage["cpu_s"], "consumer_cpu_s": consumer_usage["cpu_s"],
        "publisher_rss_mib": publisher_rss.mib(), "consumer_rss_mib": consumer_rss.mib(),
        "settle_s": settled, "queues_left": delete_queue(broker, queue),
    }


def run_backlog(broker: LocalBroker, count: int) -> dict:
    """Queue `count` messages first, then let one rabbitipc receiver (default quorum queue) drain them."""
    queue = f"bench-backlog-{uuid.uuid4().hex[:6]}"
    consume_cmd, publish_cmd = commands("rabbitipc-quorum", broker.url, queue, count, 100)
    settle(broker)
    filled = time.monotonic()
    reap(subprocess.Popen(publish_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), timeout=3600)
    filled = time.monotonic() - filled
    consumer = start_consumer(consume_cmd)
    started = time.monotonic()
    samples: list[float] = []
    sampler = threading.Thread(target=sample_rss, args=(consumer.pid, samples), daemon=True)
    sampler.start()
    ended, _span, _p50, _p99 = consumer_result("rabbitipc", consumer)
    sampler.join()  # ends when the receiver exits (its /proc entry goes)
    usage = reap(consumer, timeout=3600)
    half = max(1, len(samples) // 2)  # a drain shorter than two samples compares one sample with itself
    return {"scenario": "backlog", "client": "rabbitipc-quorum", "queue_type": queue_kind(broker, queue),
            "size": 100, "count": count, "fill_s": filled, "msgs_per_s": count / (ended - started),
            "consumer_cpu_s": usage["cpu_s"], "consumer_rss_mib": max(samples, default=0.0),
            "rss_first_half_mib": max(samples[:half], default=0.0),
            "rss_second_half_mib": max(samples[half:] or samples[-1:], default=0.0),
            "queues_left": delete_queue(broker, queue)}


def status_mib(status: Path, field: str) -> float | None:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in MiB; None once the process is gone or a zombie."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None  # a zombie has no memory fields left


class PeakRss:
    """A child's peak resident set (MiB): its VmHWM in /proc (which only rises), read every 0.1 s until it exits.
    Not wait4's ru_maxrss: Linux carries the forking process's own peak into an exec'd child's, so every
    client reported at least the bench's 34 MiB (the C client uses under 5). 0.0: it exited before a read."""

    def __init__(self, pid: int) -> None:
        self._status, self._peak = Path(f"/proc/{pid}/status"), 0.0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while (peak := status_mib(self._status, "VmHWM")) is not None:
            self._peak = peak
            time.sleep(0.1)

    def mib(self) -> float:
        """The peak, once the process has exited (call after reaping it)."""
        self._thread.join()
        return self._peak


def sample_rss(pid: int, samples: list[float], every: float = 0.05) -> None:
    """Append the process's resident set (MiB) every `every` seconds while it runs."""
    status = Path(f"/proc/{pid}/status")
    while (rss := status_mib(status, "VmRSS")) is not None:
        samples.append(rss)
        time.sleep(every)


def median_run(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, float) and k != "rate"]
    return {**runs[0], **{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": len(runs)}


def medians(done: list[tuple[Config, dict]]) -> list[dict]:
    """One row per configuration, in the plan's order: the median of its rounds."""
    by_config: dict[Config, list[dict]] = {}
    for config, row in done:
        by_config.setdefault(config, []).append(row)
    return [median_run(rows) for rows in by_config.values()]


def find(results: list[dict], scenario: str, client: str, size: int = 100) -> dict | None:
    return next((r for r in results if r["scenario"] == scenario and r["client"] == client and r["size"] == size),
                None)


def headline(results: list[dict], scenario: str = "throughput", size: int = 100) -> list[dict]:
    """The rows compared with each other: one scenario and size, all on the headline queue type."""
    return [r for r in results if r["scenario"] == scenario and r["size"] == size
            and r["queue_type"] == HEADLINE.value]


def table(results: list[dict]) -> str:
    head = (f"{'scenario':<10} {'client':<16} {'queue':<7} {'size':>6} {'msgs/s':>7} {'steady':>7} {'MB/s':>6} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'CPU us/msg: broker':>18} {'pub':>5} {'cons':>5} "
            f"{'RSS MiB: pub':>12} {'cons':>5}")
    rows = [r for r in results if r["scenario"] != "backlog"]
    lines = [head, "-" * len(head)]
    for title, part in ((None, [r for r in rows if r["queue_type"] == HEADLINE.value]),
                        ("other queue types (apart: not compared with the rows above)",
                         [r for r in rows if r["queue_type"] != HEADLINE.value])):
        if title and part:
            lines += ["", title]
        for r in part:
            per = 1e6 / r["count"]
            lines.append(f"{r['scenario']:<10} {r['client']:<16} {r['queue_type']:<7} {r['size']:>6} "
                         f"{r['msgs_per_s']:>7.0f} {r['steady_msgs_per_s']:>7.0f} {r['mb_per_s']:>6.1f} "
                         f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['broker_cpu_s'] * per:>18.0f} "
                         f"{r['publisher_cpu_s'] * per:>5.0f} {r['consumer_cpu_s'] * per:>5.0f} "
                         f"{r['publisher_rss_mib']:>12.1f} {r['consumer_rss_mib']:>5.1f}"
                         + (f"  {r['variant']}" if r.get("variant") else ""))
    lines.append("\nmsgs/s: from the publisher's start to the consumer's exit (what a user waits for); "
                 "steady: first to last receive")
    for r in results:
        if r["scenario"] == "backlog":
            lines.append(f"\nbacklog: the receiver drained {r['count']} queued messages ({r['queue_type']} queue) "
                         f"at {r['msgs_per_s']:.0f} msgs/s with a peak RSS of {r['consumer_rss_mib']:.1f} MiB "
                         f"(first half of the drain {r['rss_first_half_mib']:.1f}, second half "
                         f"{r['rss_second_half_mib']:.1f})")
    lines.append("")
    for size in SIZES:
        ours = find(results, "throughput", "rabbitipc", size)
        others = [r for r in headline(results, size=size) if r is not ours]
        if ours and others:
            lines.append(f"rabbitipc throughput at {size} B ({HEADLINE.value} queues) relative to " + ", ".join(
                f"{r['client']}: {ours['msgs_per_s'] / r['msgs_per_s']:.2f}x" for r in others))
        quorum = find(results, "throughput", "rabbitipc-quorum", size)
        if ours and quorum:
            lines.append(f"rabbitipc-quorum at {size} B: {quorum['msgs_per_s'] / ours['msgs_per_s']:.2f}x "
                         f"rabbitipc on a {HEADLINE.value} queue")
    clean, retried = (next((r for r in results if r.get("variant") == variant), None) for variant in RETRY_ROWS)
    if retried and clean:
        lines.append(f"retries (rabbitipc-quorum, 100 B, a handler failing the first attempt of 1 message in 10, "
                     f"retried after 0.1 s): {retried['msgs_per_s']:.0f} msgs/s, "
                     f"{retried['msgs_per_s'] / clean['msgs_per_s']:.2f}x the same handler never failing "
                     f"({clean['msgs_per_s']:.0f} msgs/s); receiver CPU per message "
                     f"{retried['consumer_cpu_s'] / retried['count'] * 1e6:.0f} us against "
                     f"{clean['consumer_cpu_s'] / clean['count'] * 1e6:.0f} us")
    ours, limit = find(results, "cluster", "rabbitipc-quorum"), find(results, "cluster", "c-librabbitmq")
    if ours and limit:
        lines.append(f"cluster (3 nodes, quorum queue replicated to the three, 100 B): rabbitipc-quorum "
                     f"{ours['msgs_per_s']:.0f} msgs/s, {ours['msgs_per_s'] / limit['msgs_per_s']:.2f}x c-librabbitmq "
                     f"({limit['msgs_per_s']:.0f} msgs/s)")
    return "\n".join(lines)


def limit_client(results: list[dict]) -> str | None:
    """The limit: the C client when it ran, else the fastest non-Python client at 100 B in this run."""
    rows = [r for r in headline(results) if r["client"] in NON_PYTHON]
    if any(r["client"] == "c-librabbitmq" for r in rows):
        return "c-librabbitmq"
    return max(rows, key=lambda r: r["msgs_per_s"])["client"] if rows else None


def fastest_other(results: list[dict], limit: str | None, size: int = 100) -> dict | None:
    """The fastest other client at `size` (every peer, amqplib; rabbitipc's own rows and the limit excluded)."""
    rows = [r for r in headline(results, size=size) if r["client"] not in RABBITIPC and r["client"] != limit]
    return max(rows, key=lambda r: r["msgs_per_s"]) if rows else None


def targets(results: list[dict], rpc: list[dict] = ()) -> list[tuple[str, str, bool]]:
    """The performance targets, as (what, measured, met) from this run's figures: rabbitipc against the clients on the
    same (classic) queue type, at the rate a user waits for (publisher start to consumer exit)."""
    out = []
    limit_name = limit_client(results)
    for size, key, share, unit in ((100, "msgs_per_s", 0.9, "msgs/s"), (65536, "mb_per_s", 0.8, "MB/s")):
        ours, limit = find(results, "throughput", "rabbitipc", size), find(results, "throughput", limit_name, size)
        label = "100 B" if size == 100 else "64 KiB"
        if ours and limit:
            ratio = ours[key] / limit[key]
            out.append((f"{label} {unit} >= {share}x {limit_name}", f"{ratio:.2f}x", ratio >= share))
        other = fastest_other(results, limit_name, size)
        if ours and other:
            ratio = ours[key] / other[key]
            out.append((f"{label} {unit} ahead of every other client but {limit_name} (the fastest: {other['client']})",
                        f"{ratio:.2f}x", ratio > 1.0))
    ours, limit = find(results, "throughput", "rabbitipc"), find(results, "throughput", limit_name)
    if ours and limit:
        for side in ("publisher", "consumer"):
            mine, theirs = (r[f"{side}_cpu_s"] / r["count"] * 1e6 for r in (ours, limit))
            out.append((f"100 B {side} CPU per message <= 2x {limit_name}'s",
                        f"{mine:.1f} us vs {theirs:.1f} us ({mine / theirs:.2f}x)", mine <= 2 * theirs))
    paced, paced_limit = find(results, "paced", "rabbitipc"), find(results, "paced", limit_name)
    if paced and paced_limit and paced["queue_type"] == paced_limit["queue_type"]:
        ratio = paced["p99_ms"] / paced_limit["p99_ms"]
        out.append((f"p99 at {PACED_RATE} msgs/s <= 1.5x {limit_name}'s (both on {paced['queue_type']} queues)",
                    f"{paced['p99_ms']:.1f} ms vs {paced_limit['p99_ms']:.1f} ms ({ratio:.2f}x)", ratio <= 1.5))
    for callers in sorted({r["callers"] for r in rpc}):
        pair = next((r for r in rpc if r["client"] == "c-librabbitmq" and r["callers"] == callers), None)
        for client, how in (("rabbitipc", ""), ("rabbitipc-inline", " --inline-handler,")):
            mine = next((r for r in rpc if r["client"] == client and r["callers"] == callers), None)
            if mine and pair:
                ratio = mine["p50_ms"] / pair["p50_ms"]
                out.append((f"RPC p50, {callers} caller(s),{how} <= 1.5x the C pair's",
                            f"{mine['p50_ms']:.2f} ms vs {pair['p50_ms']:.2f} ms ({ratio:.2f}x)", ratio <= 1.5))
    backlog = find(results, "backlog", "rabbitipc-quorum")
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


def chart(results: list[dict], path: Path, caption: str) -> None:
    """Write the run's chart as SVG (no dependency, so every run writes it): one horizontal bar panel per
    measure, the headline rows on their queue type, rabbitipc's bars in red; `caption` says when and how."""
    panels = [("throughput", 100, "msgs_per_s", "messages per second, 100 B (publisher start to consumer exit)"),
              ("throughput", 65536, "mb_per_s", "MB per second, 64 KiB (publisher start to consumer exit)"),
              ("paced", 100, "p99_ms", f"p99 latency (ms) at {PACED_RATE} msgs/s")]
    width, bar, left = 900, 16, 150
    parts, y = [], 30
    parts.append(f'<text x="10" y="18" font-size="13">{html.escape(caption)}</text>')
    for scenario, size, key, title in panels:
        rows = headline(results, scenario, size)
        if not rows:
            continue
        top = max(r[key] for r in rows) or 1
        y += 24
        parts.append(f'<text x="10" y="{y}" font-size="14" font-weight="bold">{html.escape(title)}, '
                     f'{HEADLINE.value} queues</text>')
        y += 8
        for r in rows:
            length = (width - left - 90) * r[key] / top
            colour = "#d94f30" if r["client"].startswith("rabbitipc") else "#8a8a8a"
            parts.append(f'<text x="{left - 6}" y="{y + bar - 4}" font-size="12" text-anchor="end">'
                         f'{html.escape(r["client"])}</text>')
            parts.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar - 2}" fill="{colour}"/>')
            parts.append(f'<text x="{left + length + 4:.1f}" y="{y + bar - 4}" font-size="12">{r[key]:,.1f}</text>')
            y += bar
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 20}" '
                    f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
                    + "\n".join(parts) + "\n</svg>\n")


def ensure_c(binary: Path = C_BINARY, *libraries: str) -> bool:
    """Build a C client (bench/c/NAME.c) when a compiler and librabbitmq-dev are there
    (apt-get install librabbitmq-dev)."""
    source = binary.with_suffix(".c")
    newest = max(source.stat().st_mtime, (C_DIR / "amqp_common.h").stat().st_mtime)
    if binary.exists() and binary.stat().st_mtime >= newest:
        return True
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return False
    build = subprocess.run([compiler, "-O2", "-o", str(binary), str(source), "-lrabbitmq", *libraries],
                           capture_output=True, text=True, timeout=120)
    return build.returncode == 0


def ensure_node() -> str | None:
    """Node's amqplib installed in bench/node (npm install, once), or why it cannot be: then the bench
    runs without the amqplib row."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not found"
    if not (NODE_DIR / "node_modules" / "amqplib").exists():
        print(f"installing Node's amqplib into {NODE_DIR / 'node_modules'} with npm (once)", file=sys.stderr)
        try:
            result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                                    capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return "npm install did not finish in 300 s (no registry reachable?)"
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            return f"npm install failed ({last[:200]})"
    return None


@contextlib.contextmanager
def private_node(prefix: str = "rabbitipc-bench-") -> Iterator[LocalBroker]:
    """A node of the bench's own in a temporary directory, attached (in this session, as a node started from the
    same shell: see LocalBroker), stopped whatever ends the block; started inside it, so a stop during the
    boot stops the node too."""
    with tempfile.TemporaryDirectory(prefix=prefix) as node_dir:
        broker = LocalBroker(node_dir, attached=True)
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()


def sweep(count: int) -> int:
    """Throughput of the reliable path by receiver prefetch and sender window: how the defaults were chosen."""
    settings = [("--prefetch", p) for p in ("10", "50", "100", "250", "500", "1000", "2000")] + \
               [("--window", w) for w in ("1", "10", "100", "500", "1000", "5000")]
    with private_node() as broker:
        for flag, value in settings:
            row = run_once(broker, "rabbitipc-quorum", 100, count, tuning=(flag, value))
            print(f"{flag} {value:>5}: {row['msgs_per_s']:>7.0f} msgs/s  p50 {row['p50_ms']:>7.1f} ms  "
                  f"receiver {row['consumer_cpu_s'] / count * 1e6:5.1f} us/msg, "
                  f"sender {row['publisher_cpu_s'] / count * 1e6:5.1f} us/msg", flush=True)
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
        elif client == "amqplib" and (reason := ensure_node()):
            print(f"{reason}: the amqplib baseline is left out", file=sys.stderr)
        else:
            clients.append(client)
    return clients


def scaled(client: str, count: int) -> int:
    """A slow peer's share of the count, so it takes about as long as the others (at least 100 messages)."""
    peer = peers_by_name().get(client)
    return max(min(count, 100), int(count * peer.share)) if peer else count


def paced(client: str) -> bool:
    """Paced 1,000 msgs/s: every client able to keep that rate; of rabbitipc's variants the headline row
    (classic queue) and rabbitipc-quorum (a quorum queue delivers a message only once it is in its log)."""
    peer = peers_by_name().get(client)
    return client in ("rabbitipc", "rabbitipc-quorum") or (peer.paced if peer else client in NON_PYTHON)


def plan(clients: list[str], scenarios: tuple[str, ...], counts: dict) -> list[Config]:
    """One round: every throughput and paced configuration once, in the bench's order."""
    configs = [Config("throughput", client, size, scaled(client, counts[size]))
               for size in (SIZES if "throughput" in scenarios else ()) for client in clients]
    configs += [Config("paced", client, 100, counts["paced"], PACED_RATE)
                for client in clients if paced(client) and "paced" in scenarios]
    if "retries" in scenarios and "rabbitipc-quorum" in clients:
        configs += [Config("retries", "rabbitipc-quorum", 100, counts[100] // 5, variant=variant)
                    for variant in RETRY_ROWS]
    return configs


def cluster_plan(clients: list[str], scenarios: tuple[str, ...], count: int) -> list[Config]:
    """One round of the cluster scenario: rabbitipc-quorum and the C client, where asked for and available."""
    return [Config("cluster", client, 100, count) for client in CLUSTER_CLIENTS
            if client in clients and "cluster" in scenarios]


def run_on_cluster(order: list[Config], done: list[tuple[Config, dict]]) -> None:
    """Form a private 3-node cluster and run `order` on it, node 1 the clients' address."""
    from devtools.localcluster import LocalCluster

    with tempfile.TemporaryDirectory(prefix="rabbitipc-bench-cluster-") as cluster_dir:
        cluster = LocalCluster(cluster_dir, attached=True)  # as the single node: in the bench's session
        print("  forming a 3-node cluster (about half a minute)", file=sys.stderr)
        try:
            cluster.start()
            target = ClusterTarget(cluster)
            for n, config in enumerate(order):
                row = run_once(target, config.client, config.size, config.count)
                done.append((config, row))
                print(f"  [cluster {n + 1}/{len(order)}] {config.label}: {row['msgs_per_s']:.0f} msgs/s "
                      f"({row['queue_type']} queue, 3 nodes)", file=sys.stderr)
        finally:
            cluster.stop()


def print_profile(count: int, out: Path) -> None:
    """Where rabbitipc's CPU goes, printed under the targets when one is missed (python -m bench.profile)."""
    from bench.profile import find_py_spy, profile, report

    py_spy = find_py_spy()
    if py_spy is None:
        print("\nno profile: py-spy not found (pip install -e '.[bench]')")
        return
    print(f"\nwhere rabbitipc's CPU goes, {count} messages of 100 B (python -m bench.profile; a target is missed):")
    try:
        print(report(profile(count, out, py_spy)))
    except (RuntimeError, OSError, TimeoutError) as exc:  # py-spy without ptrace rights, a program failing
        print(f"no profile: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round: a check that it runs")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds (every configuration once per round, interleaved); medians are reported")
    parser.add_argument("--out", default="bench-results", help="directory for results.json and throughput.svg")
    parser.add_argument("--count", type=int, help="messages per configuration (overrides the defaults: "
                                                  "100000 at 100 B, 3000 at 64 KiB, 10000 paced; the slower "
                                                  "peers get a share of it) and RPC calls (at most 2000)")
    parser.add_argument("--backlog", type=int, help="messages queued before the receiver starts "
                                                    "(default 1000000, --quick 20000)")
    parser.add_argument("--clients", type=name_list("client", CLIENTS), default=CLIENTS, metavar="A,B,...",
                        help="clients to measure, comma-separated (default: every one available): "
                             + ", ".join(CLIENTS))
    parser.add_argument("--scenarios", type=name_list("scenario", SCENARIOS), default=None,
                        metavar="A,B,...",
                        help="scenarios to run, comma-separated (default: all; with --quick all but cluster): "
                             + ", ".join(SCENARIOS))
    parser.add_argument("--sweep", action="store_true",
                        help="instead: rabbitipc on its default quorum queue at 100 B across --prefetch and --window "
                             "values (sizing the defaults)")
    args = parser.parse_args(argv)
    if args.sweep:
        return sweep(args.count or 20000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the private broker is stopped
    counts = {100: 5000, 65536: 300, "paced": PACED_RATE, "rpc": 200} if args.quick else \
        {100: 100_000, 65536: 3000, "paced": 10 * PACED_RATE, "rpc": 2000}
    if args.count:
        counts = dict.fromkeys(counts, args.count) | {"rpc": min(args.count, 2000)}
    backlog = args.backlog or args.count or (20000 if args.quick else 1_000_000)
    runs = 1 if args.quick else args.runs
    scenarios = args.scenarios or tuple(s for s in SCENARIOS if not (args.quick and s == "cluster"))
    clients = available(args.clients)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    order = schedule(plan(clients, scenarios, counts), runs)
    on_cluster = schedule(cluster_plan(clients, scenarios, counts[100]), runs)
    done: list[tuple[Config, dict]] = []
    backlogs: list[dict] = []
    rpc: tuple[list[dict], list[dict]] = ([], [])
    with private_node() as broker:
        for n, config in enumerate(order):
            row = run_once(broker, config.client, config.size, config.count, config.rate,
                           RETRY_ROWS.get(config.variant, ()))
            if config.variant:
                row |= {"scenario": config.scenario, "variant": config.variant}
            done.append((config, row))
            print(f"  [{n + 1}/{len(order)}] {config.label}: {row['msgs_per_s']:.0f} msgs/s "
                  f"({row['queue_type']} queue)", file=sys.stderr)
        if any(client in RABBITIPC for client in clients) and "backlog" in scenarios:
            backlogs.append(run_backlog(broker, backlog))
            print(f"  rabbitipc-quorum backlog of {backlog}: {backlogs[-1]['consumer_rss_mib']:.1f} MiB peak",
                  file=sys.stderr)
        if "rabbitipc" in clients and "rpc" in scenarios:
            from bench.rpc import measure  # bench.rpc builds on this module

            try:
                rpc = measure(broker, counts["rpc"], runs, 100)
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
                print(f"the rpc scenario failed, its rows left out: {exc}", file=sys.stderr)
    if on_cluster:
        run_on_cluster(on_cluster, done)
    results = medians(done) + backlogs
    checks = targets(results, rpc[0])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "results.json").write_text(json.dumps({
        "date": when, "quick": args.quick, "runs": runs, "results": results, "rpc": rpc[0], "targets": checks,
        "order": [asdict(config) | {"label": config.label} for config in order + on_cluster],
        "single_runs": [row for _config, row in done], "rpc_single_runs": rpc[1]}, indent=2) + "\n")
    print(table(results))
    if rpc[0]:
        from bench.rpc import table as rpc_table

        print(f"\nrequest/reply, 100 B, classic queues (medians of {runs} interleaved round(s) of {counts['rpc']} "
              f"calls; the caller's clock):\n{rpc_table(rpc[0])}")
    print("\ntargets:")
    for what, measured, met in checks:
        print(f"  [{'met' if met else 'NOT met'}] {what}: {measured}")
    caption = (f"python -m bench, {when}: medians of {runs} interleaved round(s), {counts[100]} messages at 100 B "
               "(fewer for clients that wait per publish), durable queues, persistent, confirms, acks")
    chart(results, out / "throughput.svg", caption)
    if not all(met for _what, _measured, met in checks):
        print_profile(min(counts[100], 20_000), out / "profile")
    print(f"\nchart: {out / 'throughput.svg'}; data: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
