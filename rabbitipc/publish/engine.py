"""Streamed publisher confirms: many messages in flight, a bounded window, none forgotten.

The tutorials' publisher waits for each confirm, one round trip per message. As in pika's
asynchronous publisher example, this one keeps publishing while earlier confirms are on their
way, up to `window` unconfirmed messages (and 16 MiB), on a SelectConnection whose I/O loop it turns
itself (link.PublishLink, through wire.pika_adapter), so callers keep a plain blocking API.

Every message stays in the window (window.Window) until the broker acks it. A nacked message, or
one returned as unroutable by the work queue, is published again (same id), after a pause that
doubles with each refusal: a broker that nacks is struggling (a queue restarting, a leader not yet
elected), and asking again at once only spends the refusals; after a lost connection the
whole unconfirmed window is published again, in order, once reconnected. The receiver drops
the duplicates this can make, by id. Confirms and returns are reported through callbacks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions as px

from .. import metrics
from ..connection import Broker, blocked_timeout, connect, describe
from ..errors import AuthError, ReplyCode, Stopped, UndeliverableError
from ..health import Health
from ..shutdown import StopFlag
from ..topology import Declarer, Route
from ..wire import pika_adapter
from .link import TURN, DeclareChannel, LinkLost, PublishLink
from .settings import PublisherSettings
from .window import Outgoing, Window

LOGGER = logging.getLogger(__name__)

#: Publishes (or bytes) between two turns of the I/O loop, which send the buffer and read confirms.
PUBLISHES_PER_TURN = 256
BYTES_PER_TURN = 1 << 20
#: Unconfirmed bytes at most, whatever the window: 1000 messages of 64 KiB would be 64 MiB held.
WINDOW_BYTES = 16 << 20


class StreamPublisher:
    """A confirmed publisher to one route with up to `window` messages awaiting confirms."""

    def __init__(self, broker: Broker | str | None, route: Route, settings: PublisherSettings | None = None, *,
                 stop: StopFlag | None = None, health: Health | None = None, **options: Any) -> None:
        """`broker`: a Broker, or a URL (None: AMQP_URL, else localhost). `options` override single
        fields of `settings` (PublisherSettings), e.g. window=1000, on_confirmed=..., program="billing"."""
        settings = dataclasses.replace(settings or PublisherSettings(), **options)
        self.broker = Broker.of(broker)
        self.url = self.broker.url
        self.route = route
        self.stop = stop or StopFlag()
        self.health = health or Health(None)
        self.settings = settings
        self.connection_name = settings.connection_name
        self.window = settings.window
        self.max_refusals = settings.max_refusals
        self._woken = threading.Event()  # set by wake(), from any thread: idle() returns early
        self._since_turn = self._bytes_since_turn = 0
        self._exchange, self._key = route.exchange_name, route.key  # looked up once, used per message
        #: Called with a message's item once the broker has it / when no queue is bound for it (exchange
        #: patterns), from inside publish/flush/idle; callers may set them after construction.
        self.on_confirmed: Callable[[Any], None] = settings.on_confirmed
        self.on_unrouted: Callable[[Any], None] = settings.on_unrouted
        self._link = PublishLink(after_turn=self._after_turn)
        self._window = Window(route, self.max_refusals, listener=self)
        # Last: the metrics' collector may read this publisher's gauges from now on.
        self.stats = metrics.stats_for(settings.program, route.destination, "publisher", owner=self)

    @property
    def connected(self) -> bool:
        """True while the link is up (for the metrics' rabbitipc_connected)."""
        return self._link.up

    @property
    def in_flight(self) -> int:
        """Messages handed over and not yet confirmed (or given up)."""
        return len(self._window)

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing on this link (memory or disk alarm, connection.blocked)."""
        return self._link.blocked

    # -- the blocking API -------------------------------------------------------------
    def connect(self) -> None:
        """Open the link now (or again, when it was lost) instead of at the next publish.

        Raises what publish() raises for the link: Stopped, AuthError, TlsError, UnreachableError.
        """
        self._ensure_link()

    def publish(self, body: bytes, properties: pika.BasicProperties, item: Any = None) -> None:
        """Hand one message over; returns at once unless the window is full.

        Its fate is reported later, from inside publish/flush/idle: on_confirmed(item) once
        the broker has it, on_unrouted(item) when no queue is bound for it (exchange
        patterns). Raises Stopped (stop requested while waiting for room or reconnecting),
        AuthError, UnreachableError or UndeliverableError.
        """
        window = self._window
        while True:
            self._ensure_link()
            unconfirmed = window.unconfirmed
            if not window.again and len(unconfirmed) < self.window and (window.bytes < WINDOW_BYTES
                                                                        or not unconfirmed):
                break
            if self.stop.is_set():
                raise Stopped()
            self._turn(TURN)
        self._send(Outgoing(body, properties, item))
        self._since_turn += 1
        self._bytes_since_turn += len(body)
        if self._since_turn >= PUBLISHES_PER_TURN or self._bytes_since_turn >= BYTES_PER_TURN:
            self._turn(0)

    def flush(self, grace: float = 10.0) -> bool:
        """Wait until every message handed over is confirmed; after a stop request, `grace` seconds more at most.

        Returns False when messages are left. Raises Stopped when a stop comes while reconnecting.
        """
        deadline = None
        while self.in_flight:
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + grace
                if time.monotonic() >= deadline:
                    return False
            self._ensure_link()
            if self._window:
                self._turn(TURN)
        return True

    def wake(self) -> None:
        """From any thread: end the current (or the next) idle() at once, as there is work for its caller.

        The only method that may be called from another thread than the one using the publisher.
        """
        self._woken.set()
        self._link.wake()  # interrupts the poll's wait

    def idle(self, seconds: float) -> None:
        """Wait up to `seconds`, reading confirms and keeping the connection alive; ends early on a stop
        or a wake()."""
        deadline = time.monotonic() + seconds
        link = self._link
        if self._since_turn and link.connection is not None:
            self._turn(0)  # what was published goes out now, even when the pause is already over
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._woken.is_set():
                self._woken.clear()
                return
            if self.in_flight and (link.down or self._window.again):
                self._ensure_link()  # publish the unconfirmed tail again as soon as we can
            if link.connection is not None:
                self._turn(min(remaining, TURN))
            else:
                self.health.beat(connected=False)
                self.stop.wait(min(remaining, TURN))

    def unconfirmed(self) -> list[Any]:
        """The items of messages handed over and not confirmed yet."""
        return self._window.items()

    def close(self) -> None:
        """Close the connection (call flush() first to wait for outstanding confirms)."""
        self._link.drop()

    # -- the link: connection, confirm channel, topology ------------------------------
    def _ensure_link(self) -> None:
        """Connect (again) if needed, then publish what waits to go again."""
        link, window = self._link, self._window
        while link.down or window.redeclare:
            if link.down:
                if link.lost is not None:
                    self._reset_link()
                link.attach(connect(self.broker, self.connection_name, self.stop, self.health, opener=link.open))
                self.stats.node = pika_adapter.node(link.connection)
            try:
                if link.channel is None:
                    link.open_confirm_channel(window.on_confirm, window.on_return)
                    window.new_channel()
                # Declared on every new link, and again when the work queue returned a message, on a
                # channel of its own: a refused declare closes it, not the publishing channel.
                declarer = Declarer(lambda: DeclareChannel(link))
                self.route.declare(declarer)
                declarer.channel.close()
                window.redeclare = False
            except (LinkLost, px.ChannelClosedByBroker) as exc:
                link.lost = link.lost or exc
                self.stop.wait(1)  # the broker took the connection but not our setup: do not spin
        if window.due:
            if window.renew_channel:
                self._renew()
                if link.channel is None:
                    return  # the link went meanwhile: the next call reconnects first
            for outgoing in window.take_again():
                self._send(outgoing)

    def _renew(self) -> None:
        """Replace the publishing channel after a nack, before publishing again.

        A channel's quorum queue client keeps the leader it knew: on RabbitMQ 3.10, a channel whose
        first publishes met a leader just killed nacked every later publish too, long after the other
        members had elected a new one (the sender gave up, exit 6); a new channel finds the new leader.
        What is unconfirmed on the old channel goes again first, as after a lost link (the receiver
        drops the duplicates by id)."""
        window = self._window
        window.renew_channel = False
        self._link.close_channel()
        window.lost()
        try:
            self._link.open_confirm_channel(window.on_confirm, window.on_return)
            window.new_channel()
        except (LinkLost, px.ChannelClosedByBroker) as exc:
            self._link.lost = self._link.lost or exc  # reconnect at the next _ensure_link

    def _reset_link(self) -> None:
        """After a loss: everything unconfirmed goes again, first, on the next link."""
        reason = self._link.take_lost()
        if isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == ReplyCode.ACCESS_REFUSED:
            self._link.drop()
            raise AuthError(f"not allowed to publish to {self.route.describe}: {reason.reply_text}")
        if isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == ReplyCode.PRECONDITION_FAILED \
                and "max size" in reason.reply_text:
            # A refusal, not a lost link: sending it again would be refused again, for ever.
            self._link.drop()
            raise UndeliverableError(f"the broker refuses a message over its max_message_size: {reason.reply_text}")
        self._window.lost()
        self.stats.reconnected(metrics.Reconnect.BLOCKED if isinstance(reason, px.ConnectionBlockedTimeout)
                               else metrics.Reconnect.CHANNEL_CLOSED if isinstance(reason, px.ChannelClosedByBroker)
                               else metrics.Reconnect.CONNECTION_LOST)
        if isinstance(reason, px.ConnectionBlockedTimeout):
            LOGGER.warning("broker blocked publishing (memory or disk alarm) for %.0fs; reconnecting to wait",
                           blocked_timeout(self.url))
        else:
            LOGGER.warning("connection lost while publishing (%s); reconnecting, %d unconfirmed messages "
                           "will be published again", describe(reason), len(self._window.again))
        self._link.drop()

    # -- turning the loop --------------------------------------------------------------
    def _turn(self, timeout: float) -> None:
        self._since_turn = self._bytes_since_turn = 0
        self._link.turn(timeout)

    def _after_turn(self) -> None:
        """After every turn of the link's loop (ours, and those of its waits)."""
        window = self._window
        self.health.beat(connected=self._link.lost is None)
        window.check_overdue()
        if window.fatal is not None:
            error, window.fatal = window.fatal, None
            raise error

    def _send(self, outgoing: Outgoing) -> None:
        link = self._link
        if link.channel is None or link.lost is not None:
            self._window.again.append(outgoing)  # the link is gone: it goes on the next one
            return
        try:
            link.publish(self._exchange, self._key, outgoing.body, outgoing.properties)
        except (px.ChannelWrongStateError, px.ConnectionWrongStateError) as exc:
            link.lost = link.lost or exc
            self._window.again.append(outgoing)
            return
        self._window.sent(outgoing)
