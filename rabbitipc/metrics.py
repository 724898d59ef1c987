"""Prometheus metrics of every rabbitipc publisher and consumer in this process, read at scrape time.

Nothing here runs per message. The publishing engine and the consumer count in plain attributes
of a `Stats` object (one per program and queue, shared by every object with those labels), and
the end-to-end latency histogram is the one the receiver's summary lines already keep
(consume/latency.py). A `prometheus_client` collector turns them into metric families only when
Prometheus scrapes, so the hot path pays an attribute increment (tens of nanoseconds) instead of a
locked prometheus-client counter per message (about 0.3 us each).

The collector is registered in prometheus-client's default `REGISTRY` (`REGISTRY` here): a process
that already serves it (its own `start_http_server`, a web framework's /metrics) shows ours beside
its own, and `serve(port)` serves it when nothing else does (the programs' `--metrics-port`).
Labels stay few: the program, the queue (or the sender's destination), an outcome or a reason;
never a message id or a routing key.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .consume.latency import LOWEST_MS, RATIO, Latencies

LOGGER = logging.getLogger(__name__)

__all__ = ["BUCKETS", "REGISTRY", "Handled", "Reconnect", "Stats", "serve", "stats_for"]

#: Histogram bucket bounds (seconds) shown to Prometheus. The latencies are kept in 2%-wide
#: buckets (consume/latency.py); each bound here counts the samples of the buckets below it, so a
#: sample within 2% above a bound may be counted under it.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0)


class Handled(enum.Enum):
    """The values of the `outcome` label of rabbitipc_messages_handled_total."""

    ACKED = "acked"  # handled, then acked
    DEAD_LETTERED = "dead_lettered"  # parked in <queue>.dead, then acked
    DUPLICATE = "duplicate"  # already handled (same id): acked again, not handled
    RETRIED = "retried"  # could not be parked (or sent to a delay queue): requeued for a later try
    DELAYED = "delayed"  # the handler failed, attempts are left: a copy waits in a delay queue, then acked


class Reconnect(enum.Enum):
    """The values of the `reason` label of rabbitipc_reconnects_total."""

    CONNECTION_LOST = "connection_lost"
    CHANNEL_CLOSED = "channel_closed"
    CONSUMER_CANCELLED = "consumer_cancelled"  # the broker cancelled the consumer (queue deleted, leader moved)
    CONSUMER_TIMEOUT = "consumer_timeout"  # the broker's consumer_timeout closed the channel
    BLOCKED = "blocked"  # a memory or disk alarm blocked publishing longer than the blocked timeout


@dataclass(eq=False)
class Stats:
    """What one program counts for one queue (or destination); plain attributes, incremented in place.

    Each is written by one thread (pika's I/O thread of its owner); the collector only reads.
    """

    program: str
    queue: str
    role: str  # "publisher" or "consumer": which families it contributes to
    confirmed: int = 0
    unrouted: int = 0
    # One attribute per outcome: an Enum-keyed dict costs about 6x an attribute increment (Enum hashing
    # runs Python code; timeit, this machine under load: 1.3 us against 0.2 us).
    acked: int = 0
    dead_lettered: int = 0
    duplicate: int = 0
    retried: int = 0
    delayed: int = 0
    reconnects: dict[Reconnect, int] = field(default_factory=lambda: dict.fromkeys(Reconnect, 0))
    end_to_end: Latencies = field(default_factory=Latencies)  # ms, sent_at to handled
    handler: Latencies = field(default_factory=Latencies)  # ms, the handler's own time
    confirm: Latencies = field(default_factory=Latencies)  # ms, publish to the broker's confirm (sampled)
    #: The live objects counting here: each has `in_flight` (int) and `connected` (bool) properties.
    owners: weakref.WeakSet = field(default_factory=weakref.WeakSet)
    node: str = ""  # host:port of the broker node last connected to

    @property
    def handled(self) -> dict[Handled, int]:
        """The counts by outcome (read at scrape time)."""
        return {outcome: getattr(self, outcome.value) for outcome in Handled}

    def reconnected(self, reason: Reconnect) -> None:
        self.reconnects[reason] += 1

    @property
    def in_flight(self) -> int:
        return sum(owner.in_flight for owner in list(self.owners))

    @property
    def connected(self) -> bool:
        owners = list(self.owners)
        return bool(owners) and all(owner.connected for owner in owners)


_STATS: dict[tuple[str, str, str], Stats] = {}
_LOCK = threading.Lock()


def stats_for(program: str, queue: str, role: str, owner: object | None = None) -> Stats:
    """The Stats of (program, queue), made on first use; `owner` joins it for the gauges."""
    with _LOCK:
        stats = _STATS.get((program, queue, role))
        if stats is None:
            stats = _STATS[(program, queue, role)] = Stats(program, queue, role)
        if owner is not None:
            stats.owners.add(owner)
    return stats


def all_stats() -> list[Stats]:
    with _LOCK:
        return list(_STATS.values())


def snapshot() -> list[dict]:
    """Each Stats as plain data (the health file's "status", rabbitipc-ctl status): the metrics' numbers."""
    rows = []
    for s in all_stats():
        latency = s.end_to_end if s.role == "consumer" else s.confirm
        rows.append({
            "program": s.program, "queue": s.queue, "role": s.role, "node": s.node, "connected": s.connected,
            "confirmed": s.confirmed, "handled": {outcome.value: n for outcome, n in s.handled.items()},
            "in_flight": s.in_flight,
            "latency_ms": {"p50": latency.percentile(50), "p99": latency.percentile(99), "max": latency.max,
                           "count": latency.total},
        })
    return rows


def _bucket_limits() -> list[int]:
    """For each bound of BUCKETS, the highest index of Latencies.counts whose upper edge is within it."""
    return [int(math.floor(math.log(bound * 1000 / LOWEST_MS) / math.log(RATIO) + 1e-9)) for bound in BUCKETS]


_LIMITS = _bucket_limits()


def histogram_buckets(latencies: Latencies) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs in seconds, +Inf last, and the sum in seconds."""
    counts = list(latencies.counts)  # a snapshot: the owner's thread may be adding
    buckets, seen, done = [], 0, 0
    for bound, limit in zip(BUCKETS, _LIMITS):
        seen += sum(counts[done:limit + 1])
        done = limit + 1
        buckets.append((_le(bound), seen))
    buckets.append(("+Inf", seen + sum(counts[done:])))
    return buckets, latencies.sum_ms / 1000


def _le(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


class RabbitipcCollector(Collector):
    """Reads every Stats at scrape time and yields the rabbitipc_* families."""

    def collect(self) -> Iterator:
        from . import wire

        info = GaugeMetricFamily("rabbitipc_build_info", "rabbitipc version and wire codec (always 1)",
                                 labels=["version", "codec"])
        info.add_metric([__version__, wire.implementation().value], 1)
        yield info
        stats = all_stats()
        publishers = [s for s in stats if s.role == "publisher"]
        consumers = [s for s in stats if s.role == "consumer"]
        confirmed = CounterMetricFamily("rabbitipc_messages_confirmed", "messages the broker accepted "
                                        "(publisher confirm)", labels=["program", "destination"])
        unrouted = CounterMetricFamily("rabbitipc_messages_unrouted", "messages no queue was bound for "
                                       "(exchange patterns)", labels=["program", "destination"])
        confirm = HistogramMetricFamily("rabbitipc_publish_confirm_latency_seconds", "publish to the broker's "
                                        "confirm (one message per round trip is timed)",
                                        labels=["program", "destination"])
        for s in publishers:
            labels = [s.program, s.queue]
            confirmed.add_metric(labels, s.confirmed)
            unrouted.add_metric(labels, s.unrouted)
            confirm.add_metric(labels, *histogram_buckets(s.confirm))
        yield from (confirmed, unrouted, confirm)
        handled = CounterMetricFamily("rabbitipc_messages_handled", "messages a consumer settled, by outcome",
                                      labels=["program", "queue", "outcome"])
        end_to_end = HistogramMetricFamily("rabbitipc_end_to_end_latency_seconds", "sent_at to handled, queue "
                                           "time included (rabbitipc messages)", labels=["program", "queue"])
        handler = HistogramMetricFamily("rabbitipc_handler_duration_seconds", "time in the --handler",
                                        labels=["program", "queue"])
        for s in consumers:
            for outcome, count in s.handled.items():
                handled.add_metric([s.program, s.queue, outcome.value], count)
            end_to_end.add_metric([s.program, s.queue], *histogram_buckets(s.end_to_end))
            handler.add_metric([s.program, s.queue], *histogram_buckets(s.handler))
        yield from (handled, end_to_end, handler)
        in_flight = GaugeMetricFamily("rabbitipc_messages_in_flight", "published and not yet confirmed (publishers); "
                                      "delivered and not yet acked (consumers)", labels=["program", "queue"])
        connected = GaugeMetricFamily("rabbitipc_connected", "1 while connected to the broker (consumers: and "
                                      "consuming)", labels=["program", "queue", "node"])
        reconnects = CounterMetricFamily("rabbitipc_reconnects", "links lost and opened again, by reason",
                                         labels=["program", "queue", "reason"])
        for s in stats:
            in_flight.add_metric([s.program, s.queue], s.in_flight)
            connected.add_metric([s.program, s.queue, s.node], 1 if s.connected else 0)
            for reason, count in s.reconnects.items():
                reconnects.add_metric([s.program, s.queue, reason.value], count)
        yield from (in_flight, connected, reconnects)


COLLECTOR = RabbitipcCollector()
_registered = False
_served: dict[int, object] = {}


def register() -> None:
    """Add the collector to prometheus-client's default REGISTRY (once)."""
    global _registered
    if not _registered:
        _registered = True
        REGISTRY.register(COLLECTOR)  # it calls collect() to learn the names: not under _LOCK


def serve(port: int, address: str = "") -> None:
    """Serve /metrics (the default REGISTRY, ours in it) on port, from a daemon thread. OSError when taken."""
    register()
    if port not in _served:
        _served[port] = start_http_server(port, addr=address or "0.0.0.0")
        LOGGER.info("serving Prometheus metrics on port %d (/metrics)", port)


register()
