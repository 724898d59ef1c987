"""`rabbitipc-ctl status`: one screen per program and queue, from the numbers the metrics export.

Programs: read from their health files (`--health-file`, kept fresh with the metrics' numbers:
metrics.snapshot). Queues: asked of the broker with passive declares (ready messages, consumers,
and the messages parked in <queue>.dead).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pika.exceptions as px

from .connection import Broker, open_once


@dataclass(frozen=True)
class QueueNumbers:
    """What the broker says of one queue (None: it does not exist)."""

    ready: int | None
    consumers: int | None
    dead: int | None


def queue_numbers(broker: Broker, queues: list[str]) -> dict[str, QueueNumbers]:
    """The numbers of each queue, asked of the first of the broker's nodes that answers (one try each)."""
    connection = open_once(broker, "rabbitipc-ctl")
    try:
        numbers = {}
        for queue in queues:
            ready, consumers = _passive(connection, queue)
            dead, _ = _passive(connection, f"{queue}.dead")
            numbers[queue] = QueueNumbers(ready, consumers, dead)
        return numbers
    finally:
        connection.close()


def _passive(connection, queue: str) -> tuple[int | None, int | None]:
    channel = connection.channel()  # a missing queue closes the channel (404): one channel per question
    try:
        ok = channel.queue_declare(queue, passive=True).method
    except px.ChannelClosedByBroker:
        return None, None
    channel.close()
    return ok.message_count, ok.consumer_count


def read_health(path: str) -> tuple[float, list[dict]]:
    """(age of the beat in seconds, the program's rows) of a health file; OSError/ValueError when unreadable."""
    with open(path) as handle:
        state = json.load(handle)
    return time.time() - float(state.get("beat", 0)), list(state.get("status", []))


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def render(programs: list[tuple[str, float, list[dict]]], queues: dict[str, QueueNumbers]) -> str:
    """The screen: a line per program row, then a line per queue (columns as wide as the longest name)."""
    width = max([24, *(len(row["queue"]) for _, _, rows in programs for row in rows), *map(len, queues)])
    lines = [f"{'program':<10} {'queue':<{width}} {'node':<22} {'conn':<4} {'done':>9} {'dead':>6} {'dup':>5} "
             f"{'flight':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  source"]
    for source, age, rows in programs:
        for row in rows:
            handled = row.get("handled", {})
            done = row["confirmed"] if row.get("role") == "publisher" else handled.get("acked", 0)
            latency = row.get("latency_ms", {})
            lines.append(f"{row['program']:<10} {row['queue']:<{width}} {(row.get('node') or '-')[:22]:<22} "
                         f"{'yes' if row.get('connected') else 'NO':<4} {done:>9} "
                         f"{handled.get('dead_lettered', 0):>6} {handled.get('duplicate', 0):>5} "
                         f"{row.get('in_flight', 0):>6} {latency.get('p50', 0):>8.1f} {latency.get('p99', 0):>8.1f} "
                         f"{latency.get('max', 0):>8.1f}  {source} ({age:.0f}s ago)")
    if queues:
        lines.append("")
        lines.append(f"{'queue':<{width}} {'backlog':>9} {'consumers':>9} {'dead letters':>12}")
        for queue, n in queues.items():
            lines.append(f"{queue:<{width}} {_number(n.ready):>9} {_number(n.consumers):>9} {_number(n.dead):>12}"
                         + ("  (no such queue)" if n.ready is None else ""))
    return "\n".join(lines)
