"""Retrying: a frozen RetryPolicy (shared freely) and the per-outage state it starts.

Capped linear backoff, as in pika's reconnect examples: one step more per failure, up to a cap.
The policy only says how; each outage counts its own failures (Backoff, Outage), so two
threads connecting with one policy never reset each other's count.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from . import defaults


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying during one outage, and the delays between tries.

    With max_delay=0 every delay is zero, which tests use to reconnect without waiting.
    """

    timeout: float = defaults.RETRY_TIMEOUT  # seconds per outage; 0 means forever, below 0 one try per node
    min_delay: float = 1.0  # the first delay, and what each further failure adds
    max_delay: float = defaults.MAX_RETRY_DELAY  # the cap
    jitter: float = 0.0  # each delay shortened at random by up to this fraction (0: none)

    def backoff(self) -> Backoff:
        """A fresh failure count with this policy's delays."""
        return Backoff(self.min_delay, self.max_delay, self.jitter)

    def outage(self) -> Outage:
        """The state of one outage starting now: its own failure count and its own clock."""
        return Outage(self)


class Backoff:
    """Delays for successive attempts; reset() after a success. One per outage or per owner, never shared."""

    def __init__(self, step: float = 1.0, cap: float = defaults.MAX_RETRY_DELAY, jitter: float = 0.0) -> None:
        self.step = step
        self.cap = cap
        self.jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.failures * self.step, self.cap)
        return delay * (1 - random.uniform(0, self.jitter)) if self.jitter else delay

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """One outage: when it started and how often it failed, within a policy's time budget."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = time.monotonic()
        self._backoff = policy.backoff()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def next_delay(self) -> float | None:
        """The delay before the next try, or None when it would overrun the budget."""
        if self.policy.timeout < 0:
            return None
        delay = self._backoff.next_delay()
        if self.policy.timeout > 0 and time.monotonic() + delay > self.started + self.policy.timeout:
            return None
        return delay
