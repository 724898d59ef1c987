"""A receiver handler to start from: `receiver/receive.py --handler examples.handlers:shout`.

A handler takes one rabbitipc.Delivery; returning means handled (the message is acked), an
exception means "try again later" (up to --max-attempts in all, then `<queue>.dead`), raising
rabbitipc.Reject sends it to `<queue>.dead` at once; a pipeline stage forwards the return value.
"""

import logging

LOGGER = logging.getLogger(__name__)


def shout(delivery):
    """Log the payload in capitals and return it so (a stage would forward that)."""
    text = delivery.message.payload if delivery.message else delivery.body.decode("utf-8", "replace")
    LOGGER.info("shout: %s", text.upper())
    return text.upper()
