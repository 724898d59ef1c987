"""The dead-letter queue <queue>.dead, for an operator: list, replay and purge what handlers refused.

Reading never loses a message: every message is taken with a manual ack on one channel and is
acked only when it is to leave the queue (replayed after its confirm, or purged); closing the
channel returns every other one to the queue. A quorum queue counts each such return as a delivery
(its `x-delivery-count` header grows); RabbitMQ 3.10 sets no delivery-limit by default, so listing
never drops a message, but a dead-letter queue given a delivery-limit by policy would.

Replay publishes each selected message to the work queue with the same body, message id and
properties (the dead-letter headers removed: the reason, the origin queue, the attempts), waits for
its confirm, and only then acks it on the dead-letter queue. Killed midway, it leaves at worst one
message in both queues: replayed again, it is a duplicate the receivers' dedupe window drops by id.
Each run reads only as many messages as the dead-letter queue held when it started, so a message
that fails again and is parked anew meanwhile is not replayed in a loop.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import pika
import pika.exceptions as px

from .connection import Broker, connect
from .consume.retries import failures
from .consume.stage import HOPS_HEADER
from .errors import AuthError, FatalError, NotFoundError, ReplyCode, UndeliverableError
from .message import Message, NotOurMessage, printable
from .names import ATTEMPTS_HEADER, DEAD_SUFFIX, FAILURES_HEADER, QUEUE_HEADER, REASON_HEADER

LOGGER = logging.getLogger(__name__)

#: Headers that describe the stay in the dead-letter queue and the retries before it (the receiver's
#: attempts and failure lines, the broker's x-death record of each wait in a delay queue), and the
#: stage hop count that parked it after --max-hops; a replayed message goes back without them, so it
#: starts again at attempt 1 with the whole --max-attempts budget.
DEAD_LETTER_HEADERS = (REASON_HEADER, QUEUE_HEADER, ATTEMPTS_HEADER, FAILURES_HEADER, HOPS_HEADER,
                       "x-delivery-count", "x-death", "x-first-death-exchange", "x-first-death-queue",
                       "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                       "x-last-death-reason")


class Action(enum.Enum):
    LIST = "list"
    REPLAY = "replay"
    PURGE = "purge"


@dataclass(frozen=True)
class Selection:
    """Which dead letters a replay takes: all filters must match (none given: every message)."""

    reason: str | None = None  # a substring of the reason
    older_than: float | None = None  # seconds since the message was sent
    ids: frozenset[str] = frozenset()

    def matches(self, letter: DeadLetter) -> bool:
        if self.reason is not None and self.reason not in letter.reason:
            return False
        if self.older_than is not None and (letter.age is None or letter.age <= self.older_than):
            return False
        return not self.ids or letter.id in self.ids


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, as an operator sees it."""

    delivery_tag: int
    properties: pika.BasicProperties
    body: bytes

    @property
    def headers(self) -> dict:
        return self.properties.headers or {}

    @property
    def id(self) -> str:
        return self.properties.message_id or "-"

    @property
    def reason(self) -> str:
        value = self.headers.get(REASON_HEADER, "")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    @property
    def attempts(self) -> int:
        """Handler attempts before it was parked (1 unless the receiver recorded more)."""
        value = self.headers.get(ATTEMPTS_HEADER)
        return value if isinstance(value, int) and value > 0 else 1

    @property
    def failures(self) -> list[str]:
        """One line per failed attempt ("<UTC time> <reason>"), oldest first; empty when none was recorded."""
        return failures(self.properties)

    def _message(self) -> Message | None:
        try:
            return Message.parse(self.body)
        except NotOurMessage:
            return None

    @property
    def seq(self) -> int | None:
        message = self._message()
        return message.seq if message is not None else None

    @property
    def age(self) -> float | None:
        """Seconds since it was sent: our schema's sent_at, else the timestamp property, else unknown."""
        message = self._message()
        sent = message.sent_at if message is not None else self.properties.timestamp
        return None if sent is None else max(0.0, time.time() - sent)

    def line(self) -> str:
        """One line for `list`, every field printable (a message cannot drive the terminal)."""
        seq = "-" if self.seq is None else str(self.seq)
        age = "-" if self.age is None else f"{self.age:.0f}s"
        line = (f"id={printable(self.id, 80)} seq={seq} attempts={self.attempts} age={age} "
                f"reason={printable(self.reason, 200)}")
        if len(self.failures) > 1:  # the earlier attempts' reasons, one indented line each
            line += "".join(f"\n  attempt {n}: {printable(failure, 200)}" for n, failure in enumerate(self.failures, 1))
        return line

    def replay_properties(self) -> pika.BasicProperties:
        """The same properties, without the dead-letter headers, persistent."""
        properties = self.properties
        headers = {k: v for k, v in self.headers.items() if k not in DEAD_LETTER_HEADERS}
        return pika.BasicProperties(
            content_type=properties.content_type, content_encoding=properties.content_encoding,
            headers=headers or None, delivery_mode=pika.DeliveryMode.Persistent, priority=properties.priority,
            correlation_id=properties.correlation_id, reply_to=properties.reply_to,
            expiration=properties.expiration, message_id=properties.message_id, timestamp=properties.timestamp,
            type=properties.type, user_id=None, app_id=properties.app_id)


@dataclass(frozen=True)
class DeadLetterReport:
    """What a command did: the letters it looked at, and how many left the dead-letter queue."""

    letters: tuple[DeadLetter, ...]
    moved: int = 0


class DeadLetters:
    """One operator's session on the dead-letter queue of `queue` (a context manager)."""

    def __init__(self, broker: Broker, queue: str, connection_name: str = "rabbitipc-ctl dead") -> None:
        self.queue = queue
        self.dead_letter_queue = queue + DEAD_SUFFIX
        self._broker = broker
        self._connection = connect(broker, connection_name)

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(self, *_exc) -> None:
        if self._connection.is_open:
            self._connection.close()  # unacked messages go back to the dead-letter queue

    def _depth(self, channel, queue: str) -> int:
        """Messages ready in `queue` (passive declare); NotFoundError when it does not exist."""
        try:
            return channel.queue_declare(queue, passive=True).method.message_count
        except px.ChannelClosedByBroker as exc:
            raise _refusal(exc, queue) from None

    def _read(self, channel, count: int) -> Iterator[DeadLetter]:
        """Take up to `count` messages without acking them."""
        for _ in range(count):
            method, properties, body = channel.basic_get(self.dead_letter_queue, auto_ack=False)
            if method is None:
                return
            yield DeadLetter(method.delivery_tag, properties, body)

    def list(self, limit: int | None = None) -> DeadLetterReport:
        """The first `limit` messages, left in the queue in their order (the channel closes unacked).

        Every message is read, not just the first `limit`: a quorum queue puts returned messages
        behind the others, so returning only the first few would move them to the end."""
        channel = self._connection.channel()
        try:
            count = self._depth(channel, self.dead_letter_queue)
            letters = self._read(channel, count)
            shown = tuple(islice(letters, limit))
            for _ in letters:  # the rest, read and returned with the rest, so the order stays
                pass
            return DeadLetterReport(shown)
        finally:
            if channel.is_open:
                channel.close()

    def replay(self, selection: Selection, dry_run: bool = False) -> DeadLetterReport:
        """Move the selected messages back to the work queue, each acked here only after its confirm."""
        channel = self._connection.channel()
        try:
            count = self._depth(channel, self.dead_letter_queue)  # no more: not what is parked anew meanwhile
            self._depth(channel, self.queue)
            channel.confirm_delivery()
            selected, moved = [], 0
            for letter in self._read(channel, count):
                if not selection.matches(letter):
                    continue  # left unacked: back to the dead-letter queue when the channel closes
                selected.append(letter)
                if dry_run:
                    continue
                try:
                    channel.basic_publish("", self.queue, letter.body, letter.replay_properties(), mandatory=True)
                except (px.UnroutableError, px.NackError) as exc:
                    raise UndeliverableError(f"the broker refused id={printable(letter.id, 80)} for {self.queue} "
                                             f"({exc.__class__.__name__}); it stays in {self.dead_letter_queue}, "
                                             f"{moved} replayed before it") from None
                channel.basic_ack(letter.delivery_tag)
                moved += 1
                LOGGER.info("replayed id=%s to %s", letter.id, self.queue)
            return DeadLetterReport(tuple(selected), moved)
        except px.ChannelClosedByBroker as exc:
            raise _refusal(exc, self.queue) from None
        finally:
            if channel.is_open:
                channel.close()

    def purge(self) -> DeadLetterReport:
        """Delete every message of the dead-letter queue."""
        channel = self._connection.channel()
        try:
            self._depth(channel, self.dead_letter_queue)
            try:
                purged = channel.queue_purge(self.dead_letter_queue).method.message_count
            except px.ChannelClosedByBroker as exc:
                raise _refusal(exc, self.dead_letter_queue) from None
            return DeadLetterReport((), purged)
        finally:
            if channel.is_open:
                channel.close()


def _refusal(exc: px.ChannelClosedByBroker, queue: str) -> FatalError:
    """The broker's channel close, as the error an operator can act on."""
    if exc.reply_code == ReplyCode.NOT_FOUND:
        return NotFoundError(f"queue {queue!r} does not exist")
    if exc.reply_code == ReplyCode.ACCESS_REFUSED:
        return AuthError(f"the broker refused access to {queue!r}: {exc.reply_text}")
    return FatalError(f"the broker closed the channel on {queue!r}: {exc.reply_code} {exc.reply_text}")
