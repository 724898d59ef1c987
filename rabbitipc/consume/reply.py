"""The rpc pattern's step: answer a request with the handler's return value before acking it.

The reply goes to the request's `reply_to` (direct reply-to, or the tutorial client's own queue)
through the default exchange, with the request's `correlation_id`, and is confirmed by the
broker before the request is acked: a responder killed at any point leaves the request in its
queue for the next one, so a caller never waits for an answer that was lost.
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions as px

from ..rpc import ERROR_HEADER, encode

LOGGER = logging.getLogger(__name__)


def body_of(result: object) -> tuple[bytes, str]:
    """The reply body: text as UTF-8 (the tutorials' numbers), bytes as they are, None empty, else JSON."""
    if result is None:
        return b"", "text/plain"
    return encode(result)


def send(confirm_channel, properties, result: object = None, error: str | None = None) -> str | None:
    """Publish the reply, confirmed; None when the broker has it (or the caller is gone), else why not."""
    body, content_type = body_of(None if error is not None else result)
    reply_properties = pika.BasicProperties(
        correlation_id=properties.correlation_id, content_type=content_type,
        headers={ERROR_HEADER: error} if error is not None else None,
    )
    try:
        confirm_channel.basic_publish("", properties.reply_to, body, reply_properties, mandatory=True)
    except px.UnroutableError:
        # The caller's reply queue is gone: it stopped waiting. Nobody can use the answer.
        LOGGER.warning("reply to %s (correlation_id %s) unroutable: the caller is gone; request acked",
                       properties.reply_to, properties.correlation_id)
        return None
    except px.NackError:
        return f"the broker refused the reply to {properties.reply_to}"
    LOGGER.debug("replied to %s correlation_id=%s bytes=%d", properties.reply_to, properties.correlation_id,
                 len(body))
    return None
