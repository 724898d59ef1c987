"""Handlers the tests load with --handler (the tests directory is on PYTHONPATH)."""

import time


def handle(delivery):
    """Take a little time per message, so a test can stop the receiver mid-stream."""
    time.sleep(0.05)


def fail_on_boom(delivery):
    """Raise for payload 'boom', handle everything else."""
    if delivery.message is not None and delivery.message.payload == "boom":
        raise RuntimeError("cannot handle boom")
