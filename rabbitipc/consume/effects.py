"""What the I/O thread does to carry out an outcome: batched acks, parking in <queue>.dead, retries.

All need the channel, so they run on pika's I/O thread only. A dead-lettered message is
published (confirmed) to the dead-letter queue with the reason in a header before it is acked;
a message to retry is published (confirmed) to a delay queue before it is acked. When the copy
cannot be published, its queue is declared again; failing that, the message is requeued after
a growing delay, never dropped.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass

import pika
import pika.exceptions as px

from ..backoff import RetryPolicy
from ..errors import FatalError
from ..message import printable
from ..names import QUEUE_HEADER, REASON_HEADER  # noqa: F401 - re-exported
from ..topology import DEAD_EXCHANGE, RETRY_EXCHANGE, DeadLetterSpec, Declarer, RetrySpec
from .retries import failed_headers, jittered

LOGGER = logging.getLogger(__name__)


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
        """A new channel: nothing pending on it (what the last one left unacked comes back on this one)."""
        self._channel, self._tag, self._pending = channel, 0, 0
        #: Handled messages of this channel whose ack could not be sent: the broker delivers them again.
        self.unsent = 0
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

    @property
    def pending(self) -> int:
        """Handled messages whose ack is not sent yet."""
        return self._pending

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
            pending, self._pending = self._pending, 0
            if self._channel is None or not self._channel.is_open:
                self.unsent += pending
                return
            try:
                self._channel.basic_ack(self._tag, multiple=True)
            except Exception:
                self.unsent += pending
                raise

    def lost(self, channel) -> None:
        """A message of `channel` was handled but its outcome never reached the channel (it closed first)."""
        if channel is self._channel:
            self.unsent += 1


class Refusal(enum.Enum):
    """How the broker refused a copy to park (the names of pika's exceptions, as the log line shows them)."""

    UNROUTABLE = "UnroutableError"  # returned: no queue is bound, <queue>.dead was deleted
    NACKED = "NackError"
    CHANNEL_CLOSED = "ChannelClosedByBroker"  # the caller opens a new confirm channel


@dataclass(frozen=True)
class NotParked:
    """Why a message could not be parked: the refusal, and the broker's words for a closed channel."""

    refusal: Refusal
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.refusal.value}: {self.detail}" if self.detail else self.refusal.value


def copy_properties(properties, headers: dict, expiration: str | None = None) -> pika.BasicProperties:
    """A parked or retried copy's properties: the original's, with these headers, persistent."""
    return pika.BasicProperties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        expiration=expiration,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        type=properties.type,
        app_id=properties.app_id,
    )


def _publish(confirm_channel, exchange: str, key: str, body: bytes,
             properties: pika.BasicProperties) -> NotParked | None:
    """Publish confirmed and mandatory; None when the broker has it, else how it refused."""
    try:
        confirm_channel.basic_publish(exchange, key, body, properties, mandatory=True)
    except px.UnroutableError:
        return NotParked(Refusal.UNROUTABLE)
    except px.NackError:
        return NotParked(Refusal.NACKED)
    except px.ChannelClosedByBroker as exc:
        return NotParked(Refusal.CHANNEL_CLOSED, exc.reply_text)
    return None


def park(confirm_channel, properties, body: bytes, queue: str, dead_letter_queue: str,
         reason: str) -> NotParked | None:
    """Publish a copy to <queue>.dead with the reason in a header, confirmed; None when parked, else why not.

    It carries its attempts and every attempt's failure line (retries.failed_headers) too."""
    headers = failed_headers(properties, reason)
    headers[REASON_HEADER] = reason
    headers[QUEUE_HEADER] = queue
    return _publish(confirm_channel, DEAD_EXCHANGE, dead_letter_queue, body, copy_properties(properties, headers))


def schedule_retry(confirm_channel, properties, body: bytes, retry: RetrySpec, delay_ms: int,
                   reason: str) -> NotParked | None:
    """Publish a copy, its attempt counted and its failure line added, to the delay queue of delay_ms,
    confirmed; it expires after a jittered delay (at most delay_ms, the queue's TTL) back into the work
    queue. None when the broker has it, else why not."""
    properties = copy_properties(properties, failed_headers(properties, reason), jittered(delay_ms))
    return _publish(confirm_channel, RETRY_EXCHANGE, retry.name(delay_ms), body, properties)


def declare_again(declare: Declarer, spec: DeadLetterSpec | RetrySpec, name: str) -> None:
    """Declare <queue>.dead or a delay queue, and its binding, again (an operator may have deleted it), as
    at start. A refusal leaves the message to be requeued later (ParkRetry), never dropped."""
    try:
        spec.declare(declare)
    except (px.ChannelClosedByBroker, FatalError) as exc:
        LOGGER.warning("could not declare %s again: %s", name, getattr(exc, "reply_text", exc))
    finally:
        if declare.channel.is_open:
            declare.channel.close()


class ParkRetry:
    """When a message cannot be parked: requeue it after a growing delay, and log a bounded number of lines.

    The nack is delayed (a timer on the connection, the I/O thread stays free), so the message does
    not come straight back in a busy loop; the delay grows by a second per failure up to 30 s
    and resets after a successful park.
    """

    POLICY = RetryPolicy(timeout=0, min_delay=1.0, max_delay=30.0)
    LOG_EVERY = 100  # after the first 5 failures, one line per 100

    def __init__(self) -> None:
        self._backoff = self.POLICY.backoff()

    @property
    def failures(self) -> int:
        return self._backoff.failures

    def succeeded(self) -> None:
        self._backoff.reset()

    def requeue_later(self, connection, channel, acks: AckBatch, method, properties, dead_letter_queue: str,
                      why: NotParked, reason: str) -> None:
        delay = self._backoff.next_delay()
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
