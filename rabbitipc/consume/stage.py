"""A pipeline stage's step: forward the handler's result to the next queue before the input is acked.

The output id is derived from the input id, so a stage that dies after publishing and before
acking produces the same id again, and the next stage drops the duplicate.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid

import pika
import pika.exceptions as px

from ..message import PERSISTENT, Message
from ..topology import Route
from .handlers import Delivery

LOGGER = logging.getLogger(__name__)


def output_message(delivery: Delivery, result: object, queue: str) -> Message:
    """The message a stage sends for `result` (text as is, anything else as JSON), keeping seq and sent_at."""
    source = delivery.message
    return Message(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"rabbitipc:{delivery.id or uuid.uuid4().hex}:{queue}").hex,
        seq=source.seq if source else 0,
        sent_at=source.sent_at if source else time.time(),
        host=socket.gethostname(),
        payload=result if isinstance(result, str) else json.dumps(result),
    )


def forward(confirm_channel, route: Route, delivery: Delivery, result: object, queue: str) -> str | None:
    """Publish the result, confirmed; return None when the broker has it, else why not (to dead-letter)."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        # Bytes are forwarded as they are (not in our JSON), with the derived id and persistent.
        out = output_message(delivery, "", queue)
        body, properties = bytes(result), pika.BasicProperties(delivery_mode=PERSISTENT, message_id=out.id,
                                                               timestamp=out.properties().timestamp)
    else:
        try:
            out = output_message(delivery, result, queue)
        except (TypeError, ValueError) as exc:  # json.dumps of something that is not JSON
            return f"handler result not forwardable: {exc.__class__.__name__}: {exc}"
        body, properties = out.body(), out.properties()
    try:
        confirm_channel.basic_publish(route.exchange_name, route.key, body, properties, mandatory=True)
    except (px.UnroutableError, px.NackError) as exc:
        return f"could not forward to {route.describe}: {exc.__class__.__name__}"
    LOGGER.debug("forwarded id=%s as id=%s to %s", delivery.id, out.id, route.describe)
    return None
