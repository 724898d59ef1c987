"""The sender's loop: where payloads come from, how fast they go, a log line per confirmed message."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .. import tracing
from ..errors import EXIT_USAGE, FatalError, Stopped
from ..loglines import SENT_LINE, LineBudget
from ..message import Message, Stamper, printable
from ..publish.engine import StreamPublisher

LOGGER = logging.getLogger(__name__)

#: Seconds the sender idles at most while it waits for the next line of stdin (a new line ends it at once).
IDLE = 1.0
#: Lines of stdin read ahead of the sender.
AHEAD = 10000


@dataclass(frozen=True)
class Pacing:
    """Time between messages: a fixed rate (0 = as fast as confirms allow) or random sleeps."""

    rate: float | None = None
    min_interval: float = 0.5
    max_interval: float = 2.0
    seed: int | None = None

    def intervals(self) -> Iterator[float]:
        if self.rate is not None:
            interval = 0.0 if self.rate == 0 else 1.0 / self.rate
            return itertools.repeat(interval)
        rng = random.Random(self.seed)
        return (rng.uniform(self.min_interval, self.max_interval) for _ in itertools.count())


def payloads(message: str | None, size: int | None, stdin=None) -> Iterator[str | None]:
    """Payload texts: a fixed --message, one per line of stdin ('-', a LineFeed), or generated.

    A generated payload is 'hello N', padded or cut to `size` characters when given.
    """
    if message == "-":
        return LineFeed(stdin if stdin is not None else _read_fd(sys.stdin.fileno()))
    if message is not None:
        return itertools.repeat(message)

    def generated() -> Iterator[str]:
        padding = ""  # " xxx...": built again only when the number gains a digit (a 64 KiB one costs)
        for n in itertools.count(1):
            text = f"hello {n}"
            if size is not None:
                if len(text) + len(padding) != size and len(text) < size:
                    padding = (" " + "x" * size)[:size - len(text)]
                text = text + padding if len(text) < size else text[:size]
            yield text

    return generated()


def _read_fd(fd: int) -> Iterator[bytes]:
    """The lines of a file descriptor as bytes, read with os.read: no buffered stream's lock is held by the
    reading thread, so the program exits cleanly while that thread still waits for input."""
    pending = b""
    while chunk := os.read(fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        yield from lines
    if pending:
        yield pending


class LineFeed:
    """The lines of stdin, read on a thread of their own: each line goes out as it comes, while the sender
    keeps reading confirms, sending heartbeats and seeing a Ctrl-C between lines.

    Iterating yields each line, or None while no new line has come yet (the sender then idles until
    `wake` is called or a short while passes). A line that is not UTF-8 ends the run with a usage error
    (exit 2).
    """

    def __init__(self, lines: Iterable[str | bytes]) -> None:
        self.wake: Callable[[], None] = lambda: None  # set by the sender: ends its idle() at once
        self._waiting = False
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)  # a long file is read as it is sent, not at once
        threading.Thread(target=self._read, args=(lines,), name="stdin", daemon=True).start()

    def _read(self, lines: Iterable[str | bytes]) -> None:
        done = 0
        try:
            for line in lines:
                text = line.decode("utf-8") if isinstance(line, bytes) else line.rstrip("\n")
                text.encode("utf-8")  # a text stream may hold bad bytes as surrogates, which no message can carry
                done += 1
                self._put(text)
        except UnicodeError:
            self._put(FatalError(f"stdin line {done + 1} is not UTF-8", EXIT_USAGE))
        except OSError as exc:
            self._put(FatalError(f"stdin: {exc}", EXIT_USAGE))
        self._put(_END)

    def _put(self, item: object) -> None:
        self._queue.put(item)
        if self._waiting:  # only a sender that waits for a line is woken: a piped file costs no wake-ups
            self.wake()

    def _next(self) -> object:
        """The next item, or None when there is none yet (then a _put wakes the sender)."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            self._waiting = True
        try:  # again: a line put before the flag was set has woken no one
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[str | None]:
        while True:
            item = self._next()
            if item is None:
                yield None  # the sender idles; _waiting stays set until a line comes
                continue
            self._waiting = False
            if item is _END:
                return
            if isinstance(item, FatalError):
                raise item
            yield item


_END = object()


class _Tally:
    """Counts and logs what the broker confirmed or could not route, as the confirms come in."""

    def __init__(self, route: str, log_rate: float) -> None:
        self.route = route
        self.lines = LineBudget(LOGGER, "sent", log_rate, detail=self.detail)
        self.sent = self.unrouted_count = 0
        self.last: Message | None = None

    def confirmed(self, message: Message) -> None:
        self.sent += 1
        self.last = message
        if self.lines.allow():
            LOGGER.info(SENT_LINE, message.seq, message.id, len(message.payload),
                        printable(message.payload, 60))

    def unrouted(self, message: Message) -> None:
        self.unrouted_count += 1
        LOGGER.warning("unrouted seq=%d id=%s: no queue is bound to %s", message.seq, message.id, self.route)

    def detail(self) -> str:
        last = self.last
        return f"; {self.sent} in all, last seq={last.seq} id={last.id}" if last else ""


def run_sender(
    publisher: StreamPublisher,
    texts: Iterable[str | None],
    intervals: Iterator[float],
    count: int | None = None,
    host: str | None = None,
    *,
    log_rate: float = 100,
    persistent: bool = True,
    priority: int | None = None,
    stop_timeout: float = 10.0,
) -> int:
    """Publish until count (confirmed or unrouted), end of input or a stop; return how many were confirmed.

    Messages stream: each is logged ("sent ...") when its confirm arrives, up to log_rate
    lines a second (then a summary line per second). Pacing keeps to a schedule, so the rate
    holds whatever publishing costs; after a long pause (an outage) it does not burst to catch up.
    On a stop, what is in flight gets stop_timeout seconds to be confirmed; what is not is listed.
    priority: each message's priority property (a priority queue delivers higher ones first).
    """
    host = host or socket.gethostname()
    stop = publisher.stop
    tally = _Tally(publisher.route.describe, log_rate)
    publisher.on_confirmed, publisher.on_unrouted = tally.confirmed, tally.unrouted
    handed = 0
    traced = tracing.tracer() is not None  # off (and free) without the otel extra and its settings
    due = time.monotonic()
    if isinstance(texts, LineFeed):
        texts.wake = publisher.wake
    try:
        stamp = Stamper(host)
        for text in texts:
            if count is not None and handed >= count:
                break
            if text is None:  # stdin has no new line yet: confirms and heartbeats meanwhile
                publisher.idle(IDLE)
                if stop.is_set():
                    break
                continue
            if handed:
                interval = next(intervals)
                if interval:  # --rate 0: no pause, and no clock reading either
                    due = max(due + interval, time.monotonic() - 1.0)
                    publisher.idle(due - time.monotonic())
            if stop.is_set():
                break
            message = stamp(text)
            properties = message.properties(persistent)
            if priority is not None:  # pika encodes such a message (wire/pika_adapter.py: _UNTEMPLATED)
                properties.priority = priority
            if traced:  # a span per publish; its context travels in the headers
                properties.headers = {}
                tracing.publish_span(publisher.stats.queue, message.id, properties.headers)
            publisher.publish(message.body(), properties, message)
            handed += 1
        publisher.flush(grace=stop_timeout)
    except Stopped:
        pass  # while reconnecting: what is in flight cannot be confirmed any more
    if publisher.in_flight:
        seqs = sorted(message.seq for message in publisher.unconfirmed())
        LOGGER.warning("stopped with %d messages not confirmed by the broker (seq %s); they may not have "
                       "been delivered", len(seqs), _ranges(seqs))
    tally.lines.summarise()
    tracing.shutdown()
    LOGGER.info("sender done: %d messages accepted by the broker%s%s", tally.sent,
                f", {tally.unrouted_count} unrouted" if tally.unrouted_count else "",
                f" (stopped by {stop.reason})" if stop.is_set() else "")
    return tally.sent


def _ranges(numbers: list[int], limit: int = 5) -> str:
    """1,2,3,7,9,10 -> '1-3,7,9-10' (the first `limit` runs)."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    text = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (",..." if len(runs) > limit else "")
