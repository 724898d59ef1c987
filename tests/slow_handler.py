"""Handlers the tests load with --handler (the tests directory is on PYTHONPATH)."""

import time


def handle(delivery):
    """Take a little time per message, so a test can stop the receiver mid-stream."""
    time.sleep(0.05)


def fail_on_boom(delivery):
    """Raise for payload 'boom', handle everything else."""
    if delivery.message is not None and delivery.message.payload == "boom":
        raise RuntimeError("cannot handle boom")


def upper(delivery):
    """Pipeline stage 1: upper-case the payload."""
    return delivery.message.payload.upper()


def reverse(delivery):
    """Pipeline stage 2: reverse the payload."""
    return delivery.message.payload[::-1]


def longer_than_heartbeats(delivery):
    """Work for 7 s: more than two 2-second heartbeat intervals."""
    time.sleep(7)


def slower_than_consumer_timeout(delivery):
    """Work for 4.5 s: longer than the limited broker's 3 s consumer timeout (see conftest)."""
    time.sleep(4.5)


def slow_then_fail(delivery):
    """Work past the consumer timeout, then fail: the message is to be dead-lettered, once."""
    time.sleep(4.5)
    raise RuntimeError("cannot handle this, slowly")


def as_bytes(delivery):
    """A stage handler returning bytes (the payload, UTF-8 encoded)."""
    return delivery.message.payload.encode()


def uses_every_field(delivery):
    """Touch every field of our schema as a user's handler would: arithmetic on seq and sent_at, text of the rest."""
    message = delivery.message
    if message is None:
        return delivery.body.decode("utf-8", errors="replace").upper()
    age = time.time() - message.sent_at
    return f"{message.seq + 1} {age:.3f} {message.host} {message.payload.upper()}"
