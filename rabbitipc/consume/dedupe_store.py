"""--dedupe-store: the ids handled, kept on the broker in the stream <queue>.handled, shared by every replica.

Without it the dedupe window (dedupe.RecentIds) lives in memory: a receiver killed after handling
and before its batched ack leaves the next receiver to handle that batch again. With it:

- each handled id (with its body digest) is published to the stream, confirmed, before its ack
  can go out; the handler thread waits for that before it takes the next message, so after a
  SIGKILL at most the message in hand (handled, its id not yet confirmed) is handled again;
- at each connect the receiver reads the stream into its window, up to a marker it published
  first (so up to now), before it consumes work; then it keeps reading, so the ids the other
  replicas add arrive as they are written;
- a redelivered message first waits for a new marker to come back (catch_up), so an id another
  replica stored just before it died is known even when it is still on its way to this one.

The stream is bound to the receivers' exchange rabbitipc.dead with its own name as the key (a
receiver may publish there, not through the default exchange); its retention is sized for the
dedupe window when a receiver first declares it (RabbitMQ drops whole segments, oldest first).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable

import pika
import pika.exceptions as px

from ..connection import RECONNECT
from ..errors import EXIT_USAGE, AuthError, FatalError, ReplyCode, TopologyError
from ..names import BODY_DIGEST_HEADER, DEAD_EXCHANGE, HANDLED_SUFFIX
from ..shutdown import StopFlag
from ..topology import Declarer, bind, declare_exchange
from ..wire import pika_adapter
from .dedupe import RecentIds, body_digest
from .handlers import Delivery

LOGGER = logging.getLogger(__name__)

#: The `type` of the markers a receiver publishes to learn it has read the stream up to now.
MARKER_TYPE = "rabbitipc.marker"
#: Records the broker may send ahead of our acks while the stream is read.
READ_PREFETCH = 1000
#: Bytes a record takes in the stream, about (id, digest header, AMQP 1.0 encoding), to size its retention.
RECORD_BYTES = 256
#: The longest a read of the stream up to a marker may go without a record before the receiver gives up
#: the link (a long stream takes as long as it takes, while records keep coming).
CATCH_UP_TIMEOUT = 60.0
#: Bytes a queue name may take (AMQP short string).
NAME_LIMIT = 255


def store_name(queue: str) -> str:
    """The stream of a queue's handled ids."""
    return queue + HANDLED_SUFFIX


def check_queue(queue: str) -> None:
    """--dedupe-store's queue: named, and short enough that <queue>.handled is a queue name too."""
    if not queue:
        raise FatalError("--dedupe-store needs a named --queue (an exclusive queue and its ids go with its "
                         "connection)", EXIT_USAGE)
    size = len(store_name(queue).encode("utf-8"))
    if size > NAME_LIMIT:
        raise FatalError(f"--dedupe-store needs a --queue of at most {NAME_LIMIT - len(HANDLED_SUFFIX)} bytes: "
                         f"its stream {HANDLED_SUFFIX!r} would take {size} bytes, over the broker's {NAME_LIMIT}",
                         EXIT_USAGE)


def stream_arguments(window: int) -> dict:
    """A stream keeping about 4 windows of records (at least 1 MB), in 8 segments."""
    size = max(1_000_000, 4 * window * RECORD_BYTES)
    return {"x-queue-type": "stream", "x-max-length-bytes": size, "x-stream-max-segment-size-bytes": size // 8}


class StoreUnreadable(px.AMQPConnectionError):
    """The stream could not be read up to now: the link is given up and made again (as a lost one);
    the consumer logs it (one line)."""


class DedupeStore:
    """The durable side of a consumer's RecentIds: records what was handled, reads what every replica handled."""

    def __init__(self, recent: RecentIds, window: int) -> None:
        if window <= 0:
            raise FatalError("--dedupe-store needs a --dedupe-window above 0: the window is what it fills",
                             EXIT_USAGE)
        self.recent = recent
        self.window = window
        self.name = ""
        self.read = 0  # records read on this link
        self._connection = None
        self._publisher = None
        self._declarer: Declarer | None = None
        self._markers: dict[str, threading.Event] = {}  # marker id -> set when it came back
        self._lock = threading.Lock()
        self._unacked = 0
        self._reader = None  # the channel reading the stream
        self._following = False  # False once the broker cancelled the reading
        self._last_record = 0.0  # time.monotonic() of the last record read

    # -- I/O thread ------------------------------------------------------------------------
    def attach(self, connection, queue: str, stop: StopFlag, alive: Callable[[], None] = lambda: None) -> None:
        """At each connect, before consuming work: declare the stream, read it up to now, keep reading it.
        alive() is called while it reads (a long stream takes seconds: the liveness probe must not fail)."""
        self._connection, self.name, self.read = connection, store_name(queue), 0
        self._declarer = Declarer(connection.channel)
        self._declare()
        self._publisher = connection.channel()
        self._publisher.confirm_delivery()
        self._reader = None
        self._follow()
        started = self._last_record = time.monotonic()
        marker = self._expect()
        why = self._mark(marker)
        if why:
            raise StoreUnreadable(f"could not publish a marker to {self.name}: {why}")
        while not self._markers[marker].is_set():
            if stop.is_set():
                return  # the caller sees the stop and consumes nothing
            if time.monotonic() - self._last_record > CATCH_UP_TIMEOUT:
                raise StoreUnreadable(f"{self.name}: no record read for {CATCH_UP_TIMEOUT:g}s before its end "
                                      f"({self.read} read)")
            connection.process_data_events(time_limit=0.2)
            alive()
        with self._lock:
            self._markers.pop(marker, None)
        LOGGER.info("read %d handled ids from %s in %.1fs (window %d)", self.read, self.name,
                    time.monotonic() - started, self.window)

    def _follow(self) -> None:
        """Read the stream from its first record on, and on: at attach, and again once the broker cancelled
        the reading (the stream deleted), after it was declared again."""
        if self._reader is not None and self._reader.is_open:
            self._reader.close()  # its consumer, if the broker has not cancelled it yet, goes with it
        reader = self._connection.channel()
        reader.basic_qos(prefetch_count=READ_PREFETCH)
        reader.add_on_cancel_callback(self._on_reader_cancelled)
        try:
            tag = reader.basic_consume(self.name, self._on_record, arguments={"x-stream-offset": "first"})
        except px.ChannelClosedByBroker as exc:
            # "invalid arg 'x-stream-offset' for queue ... of queue type rabbit_classic_queue": not a stream
            # (its declare said only which argument differs first); retrying cannot change that.
            kind = re.search(r"of queue type rabbit_(\w+)_queue", exc.reply_text)
            if exc.reply_code != ReplyCode.PRECONDITION_FAILED or kind is None:
                raise
            raise TopologyError(f"--dedupe-store: {self.name!r} exists as a {kind.group(1)} queue, not a stream; "
                                f"delete it (rabbitmqctl delete_queue {self.name}) or choose another --queue") \
                from None
        pika_adapter.never_reject(reader, tag)  # the link may close with records in pika's hands
        self._reader, self._following, self._unacked = reader, True, 0

    def _on_reader_cancelled(self, _method) -> None:
        """pika calls this (I/O thread) when the broker cancels the reading: the stream was deleted."""
        self._following = False
        LOGGER.warning("%s stopped being read (deleted?): declared and read again at the next record; the ids "
                       "it held are kept in memory only", self.name)

    def _refollow(self) -> None:
        """I/O thread: a stream no longer read (cancelled, its channel closed) is declared and read again."""
        if not self._following or self._reader is None or not self._reader.is_open:
            self._declare()
            self._follow()

    def record(self, delivery: Delivery) -> None:
        """The message is handled: its id goes to the stream, confirmed, before its ack may be sent.

        A lost link raises (the message comes back, handled again: the one in hand); a stream that
        is missing is declared and read again; a refusal leaves a warning, and the ack goes out without it."""
        if delivery.message is None or self._publisher is None:
            return
        digest = body_digest(delivery.properties)
        properties = pika.BasicProperties(message_id=delivery.message.id, delivery_mode=pika.DeliveryMode.Persistent,
                                          headers={BODY_DIGEST_HEADER: digest} if digest is not None else None)
        try:
            why = self._publish(properties)
        except RECONNECT:
            LOGGER.warning("could not record id=%s in %s: the link to the broker is lost; not acked, so it comes "
                           "back and is handled again (the one message in hand)", delivery.message.id, self.name)
            raise
        if why:
            LOGGER.warning("could not record id=%s in %s (%s): acked without it, so a crash before the ack "
                           "reaches the broker would have it handled again", delivery.message.id, self.name, why)

    def _publish(self, properties: pika.BasicProperties, again: bool = True) -> str:
        """Publish one record, confirmed, to the stream being read; '' when stored, else why not. A stream
        deleted meanwhile is declared and read again, as at start, and the record published again."""
        self._refollow()
        if not self._publisher.is_open:
            self._publisher = self._connection.channel()
            self._publisher.confirm_delivery()
        try:
            self._publisher.basic_publish(DEAD_EXCHANGE, self.name, b"", properties, mandatory=True)
        except px.UnroutableError:
            if not again:
                return "unroutable"
            LOGGER.warning("%s is missing; declaring it again", self.name)
            self._following = False
            return self._publish(properties, again=False)
        except px.NackError:
            return "refused by the broker (nack)"
        except px.ChannelClosedByBroker as exc:
            return exc.reply_text
        return ""

    def _declare(self) -> None:
        """The stream and its binding to rabbitipc.dead; one that exists with other retention is used as it is."""
        declare, name = self._declarer, self.name
        try:
            declare(lambda ch: ch.queue_declare(queue=name, durable=True, arguments=stream_arguments(self.window)))
        except px.ChannelClosedByBroker as exc:
            if exc.reply_code == ReplyCode.ACCESS_REFUSED:
                raise AuthError(f"--dedupe-store: not allowed to declare the stream {name!r}: {exc.reply_text}") \
                    from None
            if exc.reply_code != ReplyCode.PRECONDITION_FAILED:
                raise
            declare(lambda ch: ch.queue_declare(queue=name, passive=True))
            LOGGER.warning("stream %s already exists and is used as it is (%s)", name, exc.reply_text)
        declare_exchange(declare, DEAD_EXCHANGE, "direct")
        bind(declare, name, DEAD_EXCHANGE, name)

    def _mark(self, marker: str) -> str:
        """Publish a marker (confirmed): once it is read back, every record written before it was read.
        '' when published, else why not."""
        return self._publish(pika.BasicProperties(message_id=marker, type=MARKER_TYPE))

    def _on_record(self, channel, method, properties, body: bytes) -> None:
        """pika calls this (I/O thread) for each record of the stream, ours and the other replicas'."""
        self._last_record = time.monotonic()
        if properties.type == MARKER_TYPE:
            with self._lock:
                event = self._markers.get(properties.message_id)
            if event is not None:
                event.set()
        elif properties.message_id:
            self.recent.add(properties.message_id, body_digest(properties))
            self.read += 1
        self._unacked += 1
        if self._unacked >= READ_PREFETCH // 4 or properties.type == MARKER_TYPE:
            channel.basic_ack(method.delivery_tag, multiple=True)
            self._unacked = 0

    def _expect(self) -> str:
        marker = uuid.uuid4().hex
        with self._lock:
            self._markers[marker] = threading.Event()
        return marker

    # -- worker thread ---------------------------------------------------------------------
    def catch_up(self, timeout: float = CATCH_UP_TIMEOUT) -> bool:
        """Wait until every record written before now was read (a marker's round trip); False if the link
        went or the time ran out (the message is then judged on the ids known so far)."""
        connection = self._connection
        if connection is None or not connection.is_open:
            return False
        marker = self._expect()
        event = self._markers[marker]
        unmarked: list[str] = []

        def mark() -> None:  # I/O thread
            why = self._mark(marker)
            if why:
                unmarked.append(why)
                event.set()

        try:
            connection.add_callback_threadsafe(mark)
            deadline = time.monotonic() + timeout
            while not event.wait(0.2):
                if not connection.is_open or time.monotonic() > deadline:
                    LOGGER.warning("could not read %s up to now; judging the redelivered message on the ids "
                                   "read so far", self.name)
                    return False
            if unmarked:
                LOGGER.warning("could not publish a marker to %s (%s); judging the redelivered message on the "
                               "ids read so far", self.name, unmarked[0])
                return False
            return True
        except Exception:  # noqa: BLE001 - the connection closed meanwhile: the message comes back
            return False
        finally:
            with self._lock:
                self._markers.pop(marker, None)
