"""Handlers that fail, for the retry tests (loaded with --handler flaky:NAME; tests/ is on PYTHONPATH)."""

import logging

from rabbitipc import Reject

LOG = logging.getLogger(__name__)


def fail_until_attempt_3(delivery):
    """Fail the first two attempts of every message, handle the third (a line per attempt)."""
    LOG.info("attempt %d of id=%s", delivery.attempt, delivery.id)
    if delivery.attempt < 3:
        raise ConnectionError(f"database away at attempt {delivery.attempt}")


def always_fails(delivery):
    """Fail every attempt (a line per attempt)."""
    LOG.info("attempt %d of id=%s", delivery.attempt, delivery.id)
    raise RuntimeError(f"broken at attempt {delivery.attempt}")


def rejects(delivery):
    """Refuse every message for good."""
    LOG.info("attempt %d of id=%s", delivery.attempt, delivery.id)
    raise Reject("unknown customer")


def fails_boom_once(delivery):
    """Fail the first attempt of payload 'boom', handle every other message at once."""
    LOG.info("attempt %d of id=%s", delivery.attempt, delivery.id)
    if delivery.message is not None and delivery.message.payload == "boom" and delivery.attempt == 1:
        raise RuntimeError("boom needs a second try")


def upper_until_attempt_2(delivery):
    """A stage handler: fail the first attempt, then upper-case the payload."""
    LOG.info("attempt %d of id=%s", delivery.attempt, delivery.id)
    if delivery.attempt < 2:
        raise ConnectionError("downstream service away")
    return delivery.message.payload.upper()


def slow_then_fail(delivery):
    """Work past the limited broker's 3 s consumer timeout, then fail (a line per attempt)."""
    import time

    LOG.info("attempt %d of id=%s", delivery.attempt, delivery.id)
    time.sleep(4.5)
    raise RuntimeError("cannot handle this, slowly")
