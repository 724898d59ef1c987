"""Capped linear backoff, as in pika's reconnect examples: 1 s more per failure, up to a cap."""

from __future__ import annotations

from . import defaults


class Backoff:
    """Delays for successive reconnect attempts; reset() after a successful connection.

    With cap=0 every delay is zero, which tests use to reconnect without waiting.
    """

    def __init__(self, step: float = 1.0, cap: float = defaults.MAX_RETRY_DELAY) -> None:
        self.step = step
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return min(self.failures * self.step, self.cap)

    def reset(self) -> None:
        self.failures = 0
