"""The sender's loop: where payloads come from, how fast they go, one log line each."""

from __future__ import annotations

import itertools
import logging
import random
import socket
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import Stopped
from .message import Message, printable
from .publisher import Publisher

LOGGER = logging.getLogger(__name__)


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


def payloads(message: str | None, size: int | None, stdin=None) -> Iterator[str]:
    """Payload texts: a fixed --message, one per line of stdin ('-'), or generated.

    A generated payload is 'hello N', padded or cut to `size` characters when given.
    """
    if message == "-":
        stream = stdin or sys.stdin
        return (line.rstrip("\n") for line in stream)
    if message is not None:
        return itertools.repeat(message)

    def generated() -> Iterator[str]:
        for n in itertools.count(1):
            text = f"hello {n}"
            if size is not None:
                text = (text + " " + "x" * size)[:size]
            yield text

    return generated()


def run_sender(
    publisher: Publisher,
    texts: Iterable[str],
    intervals: Iterator[float],
    count: int | None = None,
    host: str | None = None,
) -> int:
    """Publish until count (accepted or unrouted), end of input or a stop; return how many were accepted."""
    host = host or socket.gethostname()
    stop = publisher.stop
    sent = unrouted = 0
    first = True
    for seq, text in enumerate(texts, start=1):
        if count is not None and sent + unrouted >= count:
            break
        if not first:
            publisher.idle(next(intervals))
        first = False
        if stop.is_set():
            break
        message = Message.new(seq, host, text)
        try:
            routed = publisher.publish(message.body(), message.properties())
        except Stopped:
            LOGGER.info("stopped before seq=%d id=%s was accepted; it was not sent", seq, message.id)
            break
        if not routed:
            LOGGER.warning("unrouted seq=%d id=%s: no queue is bound to %s", seq, message.id,
                           publisher.route.describe)
            unrouted += 1
            continue
        sent += 1
        LOGGER.info("sent seq=%d id=%s bytes=%d payload=%s", seq, message.id, len(text), printable(text, 60))
    LOGGER.info("sender done: %d messages accepted by the broker%s%s", sent,
                f", {unrouted} unrouted" if unrouted else "",
                f" (stopped by {stop.reason})" if stop.is_set() else "")
    return sent
