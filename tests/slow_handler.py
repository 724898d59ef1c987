"""Handlers the tests load with --handler (the tests directory is on PYTHONPATH)."""

import logging
import os
import time
from pathlib import Path


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


def hang(delivery):
    """Say so in a line, then never finish in a test's lifetime (an hour): a handler stuck on a lock or a dead peer."""
    logging.getLogger(__name__).info("hanging on id=%s", delivery.id)
    time.sleep(3600)


def until_released(delivery):
    """Work until the test creates the file named by TEST_RELEASE_FILE (lines at the start and the end)."""
    log = logging.getLogger(__name__)
    release = Path(os.environ["TEST_RELEASE_FILE"])
    log.info("working on id=%s until %s exists", delivery.id, release)
    while not release.exists():
        time.sleep(0.05)
    log.info("done with id=%s", delivery.id)


def always_fail(delivery):
    """Refuse every message, naming its payload in the reason (so a replay can select by reason)."""
    raise RuntimeError(f"cannot handle {delivery.message.payload if delivery.message else 'text'}")


def same(delivery):
    """A stage handler forwarding the payload unchanged."""
    return delivery.message.payload


def oversized_every_100th(delivery):
    """The payload, except every 100th message: a result over the limited broker's max_message_size (see conftest)."""
    from support import MAX_MESSAGE_SIZE

    if delivery.message.seq % 100 == 0:
        return "x" * (MAX_MESSAGE_SIZE + 1000)
    return delivery.message.payload


def record_handled(delivery):
    """Append the message's id to the file TEST_HANDLED_FILE: what was handled, however often, crash or not.
    TEST_HANDLE_SECONDS: work taken per message (a pace, so a test can act while a backlog is in hand)."""
    time.sleep(float(os.environ.get("TEST_HANDLE_SECONDS", "0")))
    with open(os.environ["TEST_HANDLED_FILE"], "a", encoding="utf-8") as handle:
        handle.write(f"{delivery.id}\n")
