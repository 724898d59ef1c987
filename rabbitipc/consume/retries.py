"""Bounded retries: how many attempts a message gets, how long it waits between them, and what it carries.

A handler that fails (any exception but Reject) gets the message again later: the I/O thread
publishes a copy to a delay queue on the broker (topology.RetrySpec), whose TTL sends it back to
the work queue, then acks the original (effects.schedule_retry). The wait holds no prefetch slot
and no thread, and survives a receiver restart. The copy counts its attempts (ATTEMPTS_HEADER:
the attempts made so far) and keeps one line per failure (FAILURES_HEADER); when the last attempt
fails, the message is parked in <queue>.dead with both.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .. import defaults
from ..message import printable
from ..names import ATTEMPTS_HEADER, FAILURES_HEADER

#: A failure line's longest length, and the most lines kept (the oldest are dropped beyond it).
FAILURE_LENGTH = 200
MAX_FAILURES = 100
#: Each copy waits a random time in [JITTER * delay, delay], so copies failed together do not all come back together.
JITTER = 0.8


@dataclass(frozen=True)
class RetrySettings:
    """Attempts in all (1: dead-letter at once, no retry) and the backoff between them, in seconds.

    The delay after attempt n fails is min_backoff * 2**(n-1), capped at max_backoff.
    """

    max_attempts: int = defaults.MAX_ATTEMPTS
    min_backoff: float = defaults.MIN_BACKOFF
    max_backoff: float = defaults.MAX_BACKOFF

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number of at least 1, not {self.max_attempts!r}")
        if not 0 <= self.min_backoff <= self.max_backoff < float("inf"):
            raise ValueError(f"backoff must be 0 <= min_backoff <= max_backoff, not {self.min_backoff!r} and "
                             f"{self.max_backoff!r}")

    @property
    def retries(self) -> bool:
        return self.max_attempts > 1

    def delay_ms(self, attempt: int) -> int:
        """The wait after attempt `attempt` (1-based) failed, in ms: the delay queue's TTL."""
        seconds = min(self.min_backoff * 2 ** min(attempt - 1, 64), self.max_backoff)
        return round(seconds * 1000)

    @property
    def delays_ms(self) -> tuple[int, ...]:
        """Every delay a message may wait, shortest first: one delay queue each."""
        return tuple(sorted({self.delay_ms(attempt) for attempt in range(1, self.max_attempts)}))


def jittered(delay_ms: int) -> str:
    """A copy's per-message expiration (AMQP: milliseconds as text), in [JITTER * delay, delay]."""
    return str(round(random.uniform(JITTER * delay_ms, delay_ms)))


def attempts_made(properties) -> int:
    """The attempts a delivered message had before this one (0: its first)."""
    value = (properties.headers or {}).get(ATTEMPTS_HEADER)
    return value if type(value) is int and value > 0 else 0


def failures(properties) -> list[str]:
    """The failure lines a message carries (another client's header that is not a list of text: none)."""
    value = (properties.headers or {}).get(FAILURES_HEADER)
    if not isinstance(value, list):
        return []
    return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in value]


def failed_headers(properties, reason: str) -> dict:
    """The message's headers with this attempt counted and its failure line added."""
    headers = dict(properties.headers or {})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = failures(properties) + [printable(f"{stamp} {reason}", FAILURE_LENGTH - 20)[:FAILURE_LENGTH]]
    headers[ATTEMPTS_HEADER] = attempts_made(properties) + 1
    headers[FAILURES_HEADER] = lines[-MAX_FAILURES:]
    return headers
