"""Handlers for the bench's retries scenario: the same work, once always succeeding, once failing 10% of first attempts.

    --handler bench.handlers:succeed        returns the payload
    --handler bench.handlers:fail_one_in_ten  raises on the first attempt of every tenth message (seq % 10 == 0)
"""

from __future__ import annotations


def succeed(delivery):
    """The baseline: a handler that never fails (so both rows pay for the handler thread alike)."""
    return delivery.message.payload if delivery.message is not None else None


def fail_one_in_ten(delivery):
    """A transient failure of 10% of messages: their first attempt raises, their retry succeeds."""
    message = delivery.message
    if message is not None and message.seq % 10 == 0 and delivery.attempt == 1:
        raise RuntimeError("a transient failure (bench: one message in ten, first attempt)")
    return succeed(delivery)
