"""What the I/O thread does to carry out an outcome: batched acks, and parking in <queue>.dead.

Both need the channel, so they run on pika's I/O thread only. A dead-lettered message is
published (confirmed) to the dead-letter queue with the reason in a header before it is acked;
when it cannot be parked, the dead-letter queue is declared again; failing that, the message is
requeued after a growing delay, never dropped.
"""

from __future__ import annotations

import logging
import time

import pika
import pika.exceptions as px

from ..message import printable
from ..topology import DEAD_EXCHANGE, Declarer, QueueSettings, bind, declare_exchange, declare_queue

LOGGER = logging.getLogger(__name__)

REASON_HEADER = "x-rabbitipc-reason"
QUEUE_HEADER = "x-rabbitipc-queue"


#: The longest a handled message waits for its ack (AckBatch.max_delay).
ACK_DELAY = 0.01


class AckBatch:
    """Acks handled messages in batches: the highest handled tag with multiple=True.

    Deliveries are finished in order on one channel, so one ack covers all before it. The
    batch goes out every `size` messages, and at the latest `max_delay` seconds after the
    first message it covers was handled (the consumer's loop waits no longer than wait_limit()).
    Before, a slow stream (1,000 msgs/s) got an ack per message: a send, a loop turn and a
    broker ack each, for the receiver about 40% of its CPU at that rate (measured with py-spy).
    """

    def __init__(self, size: int, max_delay: float = ACK_DELAY) -> None:
        self.size = size
        self.max_delay = max_delay
        self.reset(None)

    def reset(self, channel) -> None:
        """A new channel: nothing pending on it."""
        self._channel, self._tag, self._pending = channel, 0, 0
        self._due = 0.0
        self.held: set[int] = set()  # tags awaiting a delayed nack: a multiple ack must not cover them

    def ack(self, channel, delivery_tag: int) -> None:
        if self.held:
            self.flush()
            channel.basic_ack(delivery_tag)  # one by one while a message waits for its requeue
            return
        self._channel, self._tag = channel, delivery_tag
        if not self._pending:
            self._due = time.monotonic() + self.max_delay
        self._pending += 1
        if self._pending >= self.size:
            self.flush()

    def wait_limit(self, longest: float) -> float:
        """How long the loop may wait for traffic before the pending acks are due (at most `longest`)."""
        if not self._pending:
            return longest
        return max(0.0, min(longest, self._due - time.monotonic()))

    def flush_due(self) -> None:
        """Send the pending acks when they are due."""
        if self._pending and time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._pending = 0
            if self._channel is not None and self._channel.is_open:
                self._channel.basic_ack(self._tag, multiple=True)


def park(confirm_channel, properties, body: bytes, queue: str, dead_letter_queue: str, reason: str) -> str | None:
    """Publish a copy to <queue>.dead with the reason in a header, confirmed; None when parked, else why not."""
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
        return exc.__class__.__name__
    return None


def declare_dead_letter_queue(declare: Declarer, dead_letter_queue: str, queue_type: str) -> None:
    """Declare <queue>.dead and its binding again (an operator may have deleted it). A user without
    the right to (least privilege: the definitions made them) is refused: the message is then
    requeued later (ParkRetry), never dropped."""
    try:
        declare_queue(declare, dead_letter_queue, QueueSettings(queue_type))
        declare_exchange(declare, DEAD_EXCHANGE, "direct")
        bind(declare, dead_letter_queue, DEAD_EXCHANGE, dead_letter_queue)
    except px.ChannelClosedByBroker as exc:
        LOGGER.warning("could not declare %s again: %s", dead_letter_queue, exc.reply_text)
    finally:
        if declare.channel.is_open:
            declare.channel.close()


class ParkRetry:
    """When a message cannot be parked: requeue it after a growing delay, and log a bounded number of lines.

    The nack is delayed (a timer on the connection, the I/O thread stays free), so the message does
    not come straight back in a busy loop; the delay grows by a second per failure up to 30 s
    and resets after a successful park.
    """

    MAX_DELAY = 30.0
    LOG_EVERY = 100  # after the first 5 failures, one line per 100

    def __init__(self) -> None:
        self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0

    def requeue_later(self, connection, channel, acks: AckBatch, method, properties, dead_letter_queue: str,
                      why: str, reason: str) -> None:
        self.failures += 1
        delay = min(float(self.failures), self.MAX_DELAY)
        if self.failures <= 5 or self.failures % self.LOG_EVERY == 0:
            LOGGER.error("could not park id=%s in %s (%s, failure %d); requeued in %.0fs: %s",
                         properties.message_id or "-", dead_letter_queue, why, self.failures, delay,
                         printable(reason, 200))

        acks.flush()
        acks.held.add(method.delivery_tag)

        def nack() -> None:
            acks.held.discard(method.delivery_tag)
            if channel.is_open:
                channel.basic_nack(method.delivery_tag, requeue=True)

        connection.call_later(delay, nack)
