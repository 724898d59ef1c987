"""A pipeline stage's step: forward the handler's result to the next queue before the input is acked.

The output id is derived from the input id, so a stage that dies after publishing and before
acking produces the same id again, and the next stage drops the duplicate. Each output carries
its hop count (HOPS_HEADER, the input's plus one): a stage refuses an input already forwarded
--max-hops times, so a cycle of stages (A->B->A) ends in a dead-letter queue, not forever. It also
carries its input's trace on (tracing.forward_context), so one trace spans the whole pipeline, and
its input's priority.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid

import pika
import pika.exceptions as px

from .. import tracing
from ..message import PERSISTENT, Message
from ..topology import Route
from .handlers import Delivery

LOGGER = logging.getLogger(__name__)

#: How many times a message was forwarded by a stage (absent: never, it comes from a sender).
HOPS_HEADER = "x-rabbitipc-hops"


def hops(properties) -> int:
    """The hop count a message carries; 0 when it has none (or another client's value that is not a count)."""
    value = (properties.headers or {}).get(HOPS_HEADER)
    return value if type(value) is int and value > 0 else 0


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
    """Publish the result, confirmed; return None when the broker has it, else why not (to dead-letter).

    A refusal that closes the channel (a result over the broker's max_message_size) is returned too:
    the caller opens a new confirm channel. A lost connection raises: the input comes back, unacked.
    """
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
    properties.headers = {HOPS_HEADER: hops(delivery.properties) + 1}
    properties.priority = delivery.properties.priority  # a priority goes down the pipeline with its message
    tracing.forward_context(route.describe, out.id, delivery.properties, properties.headers)
    try:
        confirm_channel.basic_publish(route.exchange_name, route.key, body, properties, mandatory=True)
    except (px.UnroutableError, px.NackError) as exc:
        return f"could not forward to {route.describe}: {exc.__class__.__name__}"
    except px.ChannelClosedByBroker as exc:
        return f"the broker refused the forward to {route.describe}: {exc.reply_text}"
    LOGGER.debug("forwarded id=%s as id=%s to %s", delivery.id, out.id, route.describe)
    return None
