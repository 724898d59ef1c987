"""What the I/O thread does to carry out an outcome: batched acks, and parking in <queue>.dead.

Both need the channel, so they run on pika's I/O thread only. A dead-lettered message is
published (confirmed) to the dead-letter queue with the reason in a header before it is acked;
when it cannot be parked it is requeued, never dropped.
"""

from __future__ import annotations

import logging

import pika
import pika.exceptions as px

from ..message import describe_body, printable
from ..topology import DEAD_EXCHANGE

LOGGER = logging.getLogger(__name__)

REASON_HEADER = "x-rabbitipc-reason"
QUEUE_HEADER = "x-rabbitipc-queue"


class AckBatch:
    """Acks handled messages in batches: the highest handled tag with multiple=True.

    Deliveries are finished in order on one channel, so one ack covers all before it. The
    batch goes out every `size` messages and whenever the consumer's loop comes up for air.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.reset(None)

    def reset(self, channel) -> None:
        """A new channel: nothing pending on it."""
        self._channel, self._tag, self._pending = channel, 0, 0

    def ack(self, channel, delivery_tag: int) -> None:
        self._channel, self._tag = channel, delivery_tag
        self._pending += 1
        if self._pending >= self.size:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._pending = 0
            if self._channel is not None and self._channel.is_open:
                self._channel.basic_ack(self._tag, multiple=True)


def dead_letter(confirm_channel, channel, method, properties, body: bytes, queue: str, dead_letter_queue: str,
                reason: str) -> None:
    """Move a message to <queue>.dead with the reason in a header, confirmed, then ack it."""
    headers = dict(properties.headers or {})
    headers[REASON_HEADER] = reason
    headers[QUEUE_HEADER] = queue
    dead_properties = pika.BasicProperties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        app_id=properties.app_id,
    )
    try:
        confirm_channel.basic_publish(DEAD_EXCHANGE, dead_letter_queue, body, dead_properties, mandatory=True)
    except (px.UnroutableError, px.NackError) as exc:
        # Never drop it: back to the queue, to be tried again (and logged again).
        channel.basic_nack(method.delivery_tag, requeue=True)
        LOGGER.error("could not park id=%s in %s (%s); requeued: %s", properties.message_id or "-",
                     dead_letter_queue, exc.__class__.__name__, printable(reason, 200))
        return
    channel.basic_ack(method.delivery_tag)
    LOGGER.warning("dead-lettered id=%s to %s: %s body=%s", properties.message_id or "-",
                   dead_letter_queue, printable(reason, 200), describe_body(body, 60))
