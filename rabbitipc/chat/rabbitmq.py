"""The chat on RabbitMQ: a durable fanout exchange `chat`, as in the seed, with a stream bound to it.

Everyone publishes to the exchange (persistent, confirmed). The stream `chat.history` keeps
what was said, bounded in bytes, and every listener reads it at its own offset:

- a late joiner starts a few messages back: it attaches at "last" to learn the newest
  offset, then re-attaches that many messages earlier (a stream keeps no per-reader state);
- after a broker restart a listener resumes right after the last offset it showed, so
  nothing said while the broker was away and back is skipped, and nothing is shown twice;
- the exchange stays a plain fanout: the seed's own subscriber (an exclusive queue bound to
  `chat`) still gets every message.

The room's exchange, stream and binding are declared by rabbitipc.topology.ChatTopology.
docs/chat.md compares this with a bounded durable queue, with measurements.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import pika
import pika.exceptions as px

from rabbitipc import Publisher, StopFlag
from rabbitipc.connection import RECONNECT, Broker, connect, redact
from rabbitipc.errors import AuthError, CreateRefused, FatalError, ReplyCode, Stopped
from rabbitipc.topology import ChatTopology

from .backend import OnEvent
from .events import ChatMessage, Link, Status

LOGGER = logging.getLogger(__name__)

PREFETCH = 200  # a stream consumer needs a prefetch; acks only return credit


def broker_user(url: str) -> str:
    """The user a URL logs in as ("" with EXTERNAL, certificate, authentication: no user_id is set then)."""
    credentials = pika.URLParameters(url).credentials
    return credentials.username if isinstance(credentials, pika.PlainCredentials) else ""


class _Beat:
    """Stands in for Health in connect(): each failed try becomes a RECONNECTING status."""

    def __init__(self, on_event: OnEvent) -> None:
        self.on_event = on_event
        self.tries = 0

    def beat(self, connected: bool) -> None:
        if not connected:
            self.tries += 1
            self.on_event(Status(Link.RECONNECTING, detail=f"try {self.tries} failed, retrying"))


class _Shown:
    """The stream offset of the last message a listener showed (-1: none yet)."""

    offset = -1


class RabbitBackend:
    """The ChatBackend on a RabbitMQ broker."""

    keeps_history = True

    def __init__(self, broker: Broker | str | None, room: str = "chat", name: str = "rabbitipc-chat") -> None:
        """`broker`: a Broker, or a URL (None: AMQP_URL, else localhost)."""
        self.broker = Broker.of(broker)
        self.url = self.broker.url
        self.room = room
        self.topology = ChatTopology(room)  # declared by rabbitipc.topology, on connections of ours
        self.retry = self.broker.retry  # frozen: sending and listening each count their own outages
        self.name = name
        self.where = redact(self.url)
        self.user = broker_user(self.url)
        self._stop = StopFlag()
        self._publisher: Publisher | None = None
        self._room_ready = False

    # -- sending ------------------------------------------------------------------------
    def send(self, message: ChatMessage) -> None:
        """Publish, confirmed; a room still being created or restarted is retried within the budget."""
        # user_id: the broker refuses a message whose user_id is not the connection's user, so readers
        # can tell which names the server vouches for (ChatMessage.who()).
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent,
                                          message_id=message.id, timestamp=int(message.sent_at),
                                          user_id=self.user or None)
        outage = self.retry.outage()
        while True:
            try:
                if not self._room_ready:
                    self._declare_room()
                if self._publisher is None:
                    self._publisher = Publisher(self.broker, self.topology.route, self._stop,
                                                connection_name=f"{self.name}-send")
                if self._publisher.publish(message.body(), properties):
                    return
                self._room_ready = False  # returned: declare the room again, binding included
                reason = f"returned as unroutable (stream {self.topology.stream!r} missing or not bound yet)"
            except AuthError as exc:
                raise AuthError(f"may not send to the chat {self.room!r}: {exc}") from None
            except (px.ChannelClosedByBroker, *RECONNECT) as exc:  # e.g. the stream right after a broker restart
                reason = getattr(exc, "reply_text", None) or exc.__class__.__name__
            delay = outage.next_delay()
            if delay is None:
                raise FatalError(f"cannot send to the chat {self.room!r}: {reason}")
            LOGGER.warning("message to the chat %r %s; retrying in %.1fs", self.room, reason, delay)
            time.sleep(delay)

    def _declare_room(self) -> None:
        """Create the room unless it exists, on a short connection of its own."""
        connection = connect(self.broker, f"{self.name}-setup", self._stop)
        try:
            self.topology.declare(connection.channel())
            self._room_ready = True
        finally:
            if connection.is_open:
                connection.close()

    # -- listening ----------------------------------------------------------------------
    def listen(self, stop: StopFlag, history: int, on_event: OnEvent) -> None:
        """Read the history stream from `history` messages back, resuming after outages."""
        stream = self.topology.stream
        shown = _Shown()
        beat = _Beat(on_event)
        while not stop.is_set():
            try:
                connection = connect(self.broker, f"{self.name}-listen", stop, beat)
            except Stopped:
                return
            try:
                self._open_room(connection, stop, on_event, beat)
                beat.tries = 0
                self._read(connection, stream, stop, history, shown, on_event)
            except RECONNECT + (px.ChannelClosedByBroker, px.ConsumerCancelled) as exc:
                if isinstance(exc, px.ChannelClosedByBroker) and exc.reply_code == ReplyCode.ACCESS_REFUSED:
                    raise AuthError(f"not allowed to read the chat {stream!r}: {exc.reply_text}") from None
                LOGGER.warning("connection to the chat lost (%s); reconnecting", exc.__class__.__name__)
                on_event(Status(Link.RECONNECTING, detail="connection lost"))
                if isinstance(exc, px.ChannelClosedByBroker | px.ConsumerCancelled):
                    stop.wait(1)  # the broker is up but the stream is not yet: do not hammer it
            finally:
                if connection.is_open:
                    try:
                        connection.close()
                    except Exception:  # noqa: BLE001 - a broken connection may fail to close any way
                        LOGGER.debug("ignoring error while closing", exc_info=True)

    def _open_room(self, connection, stop: StopFlag, on_event: OnEvent, beat: _Beat) -> None:
        """Make sure the room exists; a user who may not create it waits until someone does."""
        outage = self.retry.outage()
        while True:
            try:
                self.topology.declare(connection.channel())
                return
            except CreateRefused as exc:
                reason = str(exc)
            delay = outage.next_delay()
            if delay is None:
                raise AuthError(f"the chat {self.room!r} does not exist and this user may not create it ({reason}); "
                                "the server's definitions create it, or a user who may") from None
            beat.tries += 1
            on_event(Status(Link.RECONNECTING, detail=f"the chat {self.room!r} does not exist yet; waiting"))
            if stop.wait(delay):
                return
            connection.process_data_events(0)

    def _read(self, connection, stream: str, stop: StopFlag, history: int, shown: _Shown, on_event: OnEvent) -> None:
        """Consume the stream until stop, resuming after shown.offset, which it keeps up to date."""
        inbox: deque = deque()

        def attach(offset, prefetch=PREFETCH):
            channel = connection.channel()
            channel.basic_qos(prefetch_count=prefetch)
            channel.basic_consume(stream, lambda ch, method, props, body: inbox.append((ch, method, props, body)),
                                  arguments={"x-stream-offset": offset})
            return channel

        probing = shown.offset < 0 and history > 0
        # Resume after the last message shown; else probe the newest offset, or start with what comes next.
        # The probe takes one message and never acks it, so nothing more arrives on its channel: closing a
        # channel makes pika reject the deliveries it still holds, and a stream answers a reject by
        # closing the whole connection (540 NOT_IMPLEMENTED).
        channel = attach(shown.offset + 1 if shown.offset >= 0 else "last" if probing else "next",
                         1 if probing else PREFETCH)
        on_event(Status(Link.CONNECTED, self.where))  # from here on, nothing said is missed
        while not stop.is_set():
            connection.process_data_events(time_limit=0.2)
            while inbox:
                delivery_channel, method, props, body = inbox.popleft()
                if delivery_channel is not channel:
                    continue  # left over from the probe
                offset = int((props.headers or {}).get("x-stream-offset", shown.offset + 1))
                if probing:
                    probing = False
                    channel.close()
                    inbox.clear()
                    channel = attach(max(0, offset - history + 1))
                    break
                channel.basic_ack(method.delivery_tag)
                if offset <= shown.offset:
                    continue  # already shown before a reconnect
                shown.offset = offset
                when = float(props.timestamp) if props.timestamp else None
                on_event(ChatMessage.parse(body, when, props.user_id or ""))

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
