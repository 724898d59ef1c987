"""The HTTP front's cost per request: sequential POST latency and the sender's memory.

    python -m bench.http_front [--requests 500] [--size 100] [--url AMQP_URL]

On one private broker (or --url's), `rabbitipc-send --http` as a subprocess; one client POSTs --requests JSON
bodies of about --size bytes one after another over one keep-alive connection (after 50 not
counted), each answered 202 once the broker confirmed it. Reported: the latency p50 and p99 in
milliseconds, and the sender's resident memory (VmRSS) after start and after the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.localbroker import LocalBroker, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def post_all(port: int, count: int, size: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seconds = []
    for n in range(count):
        body = json.dumps({"job": n, "pad": "x" * max(0, size - 25)}).encode()
        started = time.perf_counter()
        connection.request("POST", "/messages", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        seconds.append(time.perf_counter() - started)
        if response.status != 202:
            raise RuntimeError(f"POST {n}: {response.status}")
    connection.close()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--url", help="an existing broker (default: a private node started for the run)")
    args = parser.parse_args(argv)
    node = None if args.url else LocalBroker(tempfile.mkdtemp(prefix="http-front-"))
    if node is not None:
        node.start()
    port = free_port()
    env = {**os.environ, "AMQP_URL": args.url or node.url, "PYTHONPATH": str(ROOT)}
    sender = subprocess.Popen([sys.executable, str(ROOT / "sender" / "send.py"), "--http", f"127.0.0.1:{port}",
                               "--queue", "bench-http"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            if time.monotonic() > deadline or sender.poll() is not None:
                raise RuntimeError("the HTTP front did not start")
            time.sleep(0.1)
        post_all(port, 50, args.size)  # warm-up: connection to the broker, queue declared
        started_rss = rss_kib(sender.pid)
        seconds = sorted(post_all(port, args.requests, args.size))
        p50 = statistics.median(seconds) * 1000
        p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))] * 1000
        print(f"{args.requests} sequential POSTs of {args.size} B: p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
              f"sender RSS {started_rss / 1024:.1f} MiB after start, {rss_kib(sender.pid) / 1024:.1f} MiB after")
    finally:
        sender.terminate()
        sender.wait(20)
        if node is not None:
            node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
