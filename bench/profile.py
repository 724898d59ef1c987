"""Where the CPU goes: the sender and the receiver under py-spy, grouped by who spends it.

    python -m bench.profile [--count N] [--out DIR]

The sender fills a queue with N 100-byte messages, then the receiver drains it, each sampled by
py-spy (in the bench extra; needs ptrace, as root or with CAP_SYS_PTRACE). Samples are grouped
by the innermost Python frame: pika's frame encoding and decoding and its callback machinery,
the socket calls pika makes, rabbitipc's own code, json, logging, the rest. Alongside, the
CPU per message of each process from its rusage (start-up included). Writes the raw py-spy
stacks to --out for flame graphs (e.g. speedscope.app, or flamegraph.pl on the raw files).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from .__main__ import ROOT, private_node, reap

SOCKET_CALLS = {"_sigint_safe_send", "_sigint_safe_recv", "poll"}


def group(frame: str) -> str:
    """'function (path/file.py:line)' -> who spends the time."""
    function, _, where = frame.partition(" (")
    if function.rsplit(".", 1)[-1] in SOCKET_CALLS:
        return "socket calls (kernel time of send/recv/poll)"
    if "pika/" in where:
        if "frame.py" in where or "spec.py" in where or "data.py" in where:
            return "pika: AMQP frame encoding/decoding"
        return "pika: connection, channel and callback machinery"
    if "rabbitipc/" in where or "receive.py" in where or "send.py" in where:
        return "rabbitipc"
    if "json/" in where:
        return "json"
    if "logging/" in where:
        return "logging"
    if "importlib" in where or "<frozen" in where:
        return "start-up (imports)"
    return "other (stdlib, uuid, threading...)"


def breakdown(raw: Path) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        counts[group(stack.split(";")[-1])] += int(samples)
    total = sum(counts.values()) or 1
    return [(name, 100 * n / total) for name, n in counts.most_common()]


def cpu_per_message(command: list[str], count: int) -> float:
    """Microseconds of CPU per message of one unprofiled run (start-up included)."""
    usage = reap(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), timeout=1800)
    return usage["cpu_s"] / count * 1e6


def profiled(py_spy: str, raw: Path, command: list[str]) -> Path:
    proc = subprocess.Popen([py_spy, "record", "--rate", "500", "--format", "raw", "--output", str(raw),
                             "--", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reap(proc, timeout=1800)
    return raw


def profile(count: int, out: Path, py_spy: str) -> list[tuple[str, float, Path, list[tuple[str, float]]]]:
    """On a private node: each program's CPU per message unprofiled, then its py-spy samples by component;
    [(program, us per message, raw stacks, breakdown)]."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with private_node("rabbitipc-profile-") as broker:
        for sampled in (False, True):  # first the CPU figures, then the samples (py-spy costs CPU too)
            queue = f"profile-{uuid.uuid4().hex[:6]}"
            common = ["--url", broker.url, "--queue", queue, "--count", str(count), "--log-rate", "100"]
            sender = [sys.executable, str(ROOT / "sender" / "send.py"), *common, "--rate", "0", "--size", "100"]
            receiver = [sys.executable, str(ROOT / "receiver" / "receive.py"), *common]
            for name, command in (("sender", sender), ("receiver", receiver)):
                if sampled:
                    profiled(py_spy, out / f"{name}.txt", command)
                else:
                    results.append((name, cpu_per_message(command, count), out / f"{name}.txt"))
    return [(name, us, raw, breakdown(raw)) for name, us, raw in results]


def find_py_spy() -> str | None:
    """py-spy beside this Python (the bench extra installs it) or on PATH."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return py_spy if Path(py_spy).exists() else None


def report(results: list[tuple[str, float, Path, list[tuple[str, float]]]]) -> str:
    lines = []
    for name, us_per_msg, raw, shares in results:
        lines.append(f"{name} ({'filling' if name == 'sender' else 'draining'} a queue alone): {us_per_msg:.1f} us "
                     f"of CPU per message; py-spy samples by component (stacks in {raw}):")
        lines += [f"  {share:5.1f}%  {what}" for what, share in shares]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100000, help="messages (default 100000)")
    parser.add_argument("--out", default="bench-results/profile", help="directory for the raw py-spy stacks")
    args = parser.parse_args(argv)
    py_spy = find_py_spy()
    if py_spy is None:
        print("py-spy not found: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    print(report(profile(args.count, Path(args.out), py_spy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
