"""Streamed publisher confirms: many messages in flight, a bounded window, none forgotten.

The tutorials' publisher waits for each confirm, one round trip per message. As in pika's
asynchronous publisher example, this one keeps publishing while earlier confirms are on their
way, up to `window` unconfirmed messages (and 16 MiB), on a SelectConnection whose I/O loop it turns
itself (pika's poll/process_timeouts extension API), so callers keep a plain blocking API.

Every message stays in the window until the broker acks it. A nacked message, or one returned
as unroutable by the work queue, is published again (same id), after a pause that doubles with
each refusal: a broker that nacks is struggling (a queue restarting, a leader not yet elected),
and asking again at once only spends the refusals; after a lost connection the
whole unconfirmed window is published again, in order, once reconnected. The receiver drops
the duplicates this can make, by id. Confirms and returns are reported through callbacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions as px
from pika.adapters.utils import connection_workflow as workflow

from .. import defaults
from ..connection import Retry, blocked_timeout, connect, describe, watch_alarms
from ..errors import AuthError, Stopped, UndeliverableError
from ..health import Health
from ..shutdown import StopFlag
from ..topology import Declarer, Route
from ..wire.pika_adapter import WireConnection

LOGGER = logging.getLogger(__name__)

#: Publishes (or bytes) between two turns of the I/O loop, which send the buffer and read confirms.
PUBLISHES_PER_TURN = 256
BYTES_PER_TURN = 1 << 20
#: Unconfirmed bytes at most, whatever the window: 1000 messages of 64 KiB would be 64 MiB held.
WINDOW_BYTES = 16 << 20
#: The longest one turn of the loop waits, so stop requests and deadlines are seen.
TURN = 0.2
#: The pause before publishing a refused message again, doubled for each further refusal
#: (0.2 + 0.4 + 0.8 + 1.6 s before the fifth refusal gives up).
REFUSAL_PAUSE = 0.2
#: How long a channel operation (open, confirm.select, declare) may take before we reconnect.
OPERATION_TIMEOUT = 30.0


@dataclass
class Outgoing:
    """One message until the broker confirms it: what to send, and the caller's handle."""

    body: bytes
    properties: pika.BasicProperties
    item: Any
    refusals: int = 0

    @property
    def key(self) -> object:
        return self.properties.message_id or self.body


class LinkLost(Exception):
    """The connection or channel went away while we waited on it."""


def _nothing() -> None:
    """A timer callback whose only job is to end a poll."""


def _unwrap(error: BaseException) -> BaseException:
    """The error pika.BlockingConnection would raise for a failed open (it unwraps the same way)."""
    if isinstance(error, workflow.AMQPConnectionWorkflowFailed):
        error = error.exceptions[-1]
        if isinstance(error, workflow.AMQPConnectorSocketConnectError):
            return px.AMQPConnectionError(error)
        if isinstance(error, workflow.AMQPConnectorPhaseErrorBase):
            error = error.exception
    if isinstance(error, (px.AMQPError, OSError)):
        return error
    return px.AMQPConnectionError(error)


class StreamPublisher:
    """A confirmed publisher to one route with up to `window` messages awaiting confirms."""

    def __init__(
        self,
        url: str,
        route: Route,
        retry: Retry | None = None,
        stop: StopFlag | None = None,
        connection_name: str = "rabbitipc-sender",
        *,
        window: int = defaults.WINDOW,
        max_refusals: int = defaults.MAX_REFUSALS,
        health: Health | None = None,
        ca_file: str | None = None,
        on_confirmed: Callable[[Any], None] | None = None,
        on_unrouted: Callable[[Any], None] | None = None,
    ) -> None:
        self.url = url
        self.route = route
        self.retry = retry or Retry()
        self.stop = stop or StopFlag()
        self.connection_name = connection_name
        self.window = window
        self.max_refusals = max_refusals
        self.health = health or Health(None)
        self.ca_file = ca_file
        self.on_confirmed = on_confirmed or (lambda item: None)
        self.on_unrouted = on_unrouted or (lambda item: None)
        self._connection: WireConnection | None = None
        self._channel = None
        self._lost: BaseException | None = None  # why the link went away, set by pika's callbacks
        self._fatal: Exception | None = None  # an error found inside a callback, raised after the turn
        self._unconfirmed: OrderedDict[int, Outgoing] = OrderedDict()  # by delivery tag
        self._next_tag = 0
        self._again: deque[Outgoing] = deque()  # to publish (again) before anything new
        self._again_at = 0.0  # not before this time.monotonic(): the pause after a refusal
        self._woken = threading.Event()  # set by wake(), from any thread: idle() returns early
        self._returned: set[object] = set()
        self._redeclare = False
        self._since_turn = self._bytes_since_turn = 0
        self._unconfirmed_bytes = 0
        self._exchange, self._key = route.exchange_name, route.key  # looked up once, used per message

    @property
    def in_flight(self) -> int:
        """Messages handed over and not yet confirmed (or given up)."""
        return len(self._unconfirmed) + len(self._again)

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing on this link (memory or disk alarm, connection.blocked)."""
        connection = self._connection
        return connection is not None and self._lost is None and connection.blocked

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
        while True:
            self._ensure_link()
            if not self._again and len(self._unconfirmed) < self.window and (self._unconfirmed_bytes < WINDOW_BYTES
                                                         or not self._unconfirmed):
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
            if self._unconfirmed or self._again:
                self._turn(TURN)
        return True

    def wake(self) -> None:
        """From any thread: end the current (or the next) idle() at once, as there is work for its caller.

        The only method that may be called from another thread than the one using the publisher.
        """
        self._woken.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(_nothing)  # interrupts the poll's wait
            except Exception:  # noqa: BLE001 - the loop is closing: idle() sees the flag at its next turn
                LOGGER.debug("wake: the I/O loop is closed")

    def idle(self, seconds: float) -> None:
        """Wait up to `seconds`, reading confirms and keeping the connection alive; ends early on a stop
        or a wake()."""
        deadline = time.monotonic() + seconds
        if self._since_turn and self._connection is not None:
            self._turn(0)  # what was published goes out now, even when the pause is already over
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._woken.is_set():
                self._woken.clear()
                return
            if self.in_flight and (self._connection is None or self._lost is not None or self._again):
                self._ensure_link()  # publish the unconfirmed tail again as soon as we can
            if self._connection is not None:
                self._turn(min(remaining, TURN))
            else:
                self.health.beat(connected=False)
                self.stop.wait(min(remaining, TURN))

    def unconfirmed(self) -> list[Any]:
        """The items of messages handed over and not confirmed yet."""
        return [outgoing.item for outgoing in (*self._unconfirmed.values(), *self._again)]

    def close(self) -> None:
        """Close the connection (call flush() first to wait for outstanding confirms)."""
        self._drop_link()

    # -- the link: connection, confirm channel, topology ------------------------------
    def _ensure_link(self) -> None:
        """Connect (again) if needed, then publish what waits to go again."""
        while self._connection is None or self._lost is not None or self._redeclare:
            if self._connection is None or self._lost is not None:
                if self._lost is not None:
                    self._reset_link()
                self._connection = connect(self.url, self.connection_name, self.retry, self.stop, self.health,
                                           self.ca_file, opener=self._open)
            try:
                if self._channel is None:
                    self._open_channel()
                # Declared on every new link, and again when the work queue returned a message, on a
                # channel of its own: a refused declare closes it, not the publishing channel.
                declarer = Declarer(lambda: _DeclareChannel(self))
                self.route.declare(declarer)
                declarer.channel.close()
                self._redeclare = False
            except (LinkLost, px.ChannelClosedByBroker) as exc:
                self._lost = self._lost or exc
                self.stop.wait(1)  # the broker took the connection but not our setup: do not spin
        if self._again and time.monotonic() >= self._again_at:
            again, self._again = self._again, deque()
            for outgoing in again:
                self._send(outgoing)

    def _open(self, params: pika.URLParameters) -> WireConnection:
        """One connection attempt for connect(): raises what pika.BlockingConnection would."""
        state: dict[str, Any] = {}
        connection = WireConnection(
            params, hold_output=True,
            on_open_callback=lambda _c: state.setdefault("open", True),
            on_open_error_callback=lambda _c, error: state.setdefault("error", error),
            on_close_callback=self._on_connection_closed,
        )
        connection.ioloop.activate_poller()
        while not state:
            self._poll(connection, TURN)  # pika's own socket and stack timeouts bound this
        if "error" in state:
            connection.ioloop.close()
            raise _unwrap(state["error"])
        watch_alarms(connection)
        return connection

    def _open_channel(self) -> None:
        opened: list = []
        channel = self._connection.channel(on_open_callback=opened.append)
        channel.add_on_close_callback(self._on_channel_closed)
        self._channel = channel
        self._wait(lambda: opened, "channel.open")
        channel.add_on_return_callback(self._on_return)
        selected: list = []
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=selected.append)
        self._wait(lambda: selected, "confirm.select")
        self._next_tag = 0

    def _reset_link(self) -> None:
        """After a loss: everything unconfirmed goes again, first, on the next link."""
        reason, self._lost = self._lost, None
        if isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == 403:
            self._drop_link()
            raise AuthError(f"not allowed to publish to {self.route.describe}: {reason.reply_text}")
        if isinstance(reason, px.ChannelClosedByBroker) and reason.reply_code == 406 \
                and "max size" in reason.reply_text:
            # A refusal, not a lost link: sending it again would be refused again, for ever.
            self._drop_link()
            raise UndeliverableError(f"the broker refuses a message over its max_message_size: {reason.reply_text}")
        unconfirmed = list(self._unconfirmed.values())
        self._unconfirmed.clear()
        self._unconfirmed_bytes = 0
        self._returned.clear()
        self._again = deque([*unconfirmed, *self._again])
        if isinstance(reason, px.ConnectionBlockedTimeout):
            LOGGER.warning("broker blocked publishing (memory or disk alarm) for %.0fs; reconnecting to wait",
                           blocked_timeout(self.url))
        else:
            LOGGER.warning("connection lost while publishing (%s); reconnecting, %d unconfirmed messages "
                           "will be published again", describe(reason), len(self._again))
        self._drop_link()

    def _drop_link(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        if connection.is_open:
            connection.close()
        deadline = time.monotonic() + 5
        while not connection.is_closed and time.monotonic() < deadline:
            self._poll(connection, TURN)
        connection.ioloop.close()

    # -- turning the loop --------------------------------------------------------------
    @staticmethod
    def _poll(connection: WireConnection, timeout: float) -> None:
        """One turn of pika's I/O loop: write what is held, dispatch what arrived, wait at most timeout."""
        connection.release()
        ioloop = connection.ioloop
        timer = ioloop.call_later(timeout, _nothing)
        try:
            ioloop.poll()
            ioloop.process_timeouts()
        finally:
            ioloop.remove_timeout(timer)

    def _turn(self, timeout: float) -> None:
        self._since_turn = self._bytes_since_turn = 0
        if self._connection is not None:
            self._poll(self._connection, timeout)
        self.health.beat(connected=self._lost is None)
        if self._fatal is not None:
            error, self._fatal = self._fatal, None
            raise error

    def _wait(self, done: Callable[[], object], what: str) -> None:
        """Turn the loop until done(); raise the broker's refusal, or LinkLost."""
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while not done():
            if isinstance(self._lost, px.ChannelClosedByBroker):
                raise self._lost
            if self._lost is not None:
                raise LinkLost(f"{describe(self._lost)} during {what}")
            if time.monotonic() > deadline:
                self._lost = LinkLost(f"no answer to {what} in {OPERATION_TIMEOUT:.0f}s")
                raise self._lost
            self._turn(TURN)

    def _send(self, outgoing: Outgoing) -> None:
        if self._channel is None or self._lost is not None:
            self._again.append(outgoing)  # the link is gone: it goes on the next one
            return
        try:
            self._connection.publish(self._channel, self._exchange, self._key, outgoing.body, outgoing.properties,
                                     mandatory=True)
        except (px.ChannelWrongStateError, px.ConnectionWrongStateError) as exc:
            self._lost = self._lost or exc
            self._again.append(outgoing)
            return
        self._next_tag += 1
        self._unconfirmed[self._next_tag] = outgoing
        self._unconfirmed_bytes += len(outgoing.body)

    # -- pika's callbacks (run inside _turn) ------------------------------------------
    def _on_confirm(self, frame) -> None:
        try:
            self._settle_confirmed(frame.method)
        except Exception as exc:  # noqa: BLE001 - pika would swallow it: raise it after the turn instead
            self._fatal = self._fatal or exc

    def _settle_confirmed(self, method) -> None:
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            while self._unconfirmed:
                tag = next(iter(self._unconfirmed))
                if tag > method.delivery_tag:
                    break
                self._settle(self._unconfirmed.pop(tag), acked)
        else:
            outgoing = self._unconfirmed.pop(method.delivery_tag, None)
            if outgoing is not None:
                self._settle(outgoing, acked)

    def _settle(self, outgoing: Outgoing, acked: bool) -> None:
        self._unconfirmed_bytes -= len(outgoing.body)
        returned = bool(self._returned) and outgoing.key in self._returned
        if returned:
            self._returned.discard(outgoing.key)
        if acked and not returned:
            self.on_confirmed(outgoing.item)
            return
        if returned and self.route.pattern != "work":
            self.on_unrouted(outgoing.item)  # nobody subscribes: reported, not retried
            return
        outgoing.refusals += 1
        reason = f"returned as unroutable (queue {self.route.key!r} missing?)" if returned else "nacked by the broker"
        if outgoing.refusals >= self.max_refusals:
            self._fatal = self._fatal or UndeliverableError(f"message {reason} {outgoing.refusals} times; giving up")
            return
        LOGGER.warning("message id=%s %s; publishing it again (%d/%d)", outgoing.properties.message_id or "-",
                       reason, outgoing.refusals, self.max_refusals)
        self._redeclare = self._redeclare or returned
        if not returned:
            pause = REFUSAL_PAUSE * 2 ** (outgoing.refusals - 1)
            self._again_at = max(self._again_at, time.monotonic() + pause)
        self._again.append(outgoing)

    def _on_return(self, _channel, _method, properties, body: bytes) -> None:
        self._returned.add(properties.message_id or body)

    def _on_connection_closed(self, connection, reason: BaseException) -> None:
        if connection is self._connection:
            self._lost = self._lost or reason

    def _on_channel_closed(self, channel, reason: BaseException) -> None:
        if channel is self._channel:
            self._lost = self._lost or reason


class _DeclareChannel:
    """An asynchronous channel of its own whose methods block, so topology.py declares on both kinds.

    A broker refusal closes this channel only; it is raised as pika's ChannelClosedByBroker.
    """

    def __init__(self, publisher: StreamPublisher) -> None:
        self._publisher = publisher
        self._closed: BaseException | None = None
        opened: list = []
        self._channel = publisher._connection.channel(on_open_callback=opened.append)
        self._channel.add_on_close_callback(self._on_close)
        publisher._wait(lambda: opened or self._closed, "channel.open")
        self._raise_if_closed()

    def _on_close(self, _channel, reason: BaseException) -> None:
        self._closed = reason

    def _raise_if_closed(self) -> None:
        if self._closed is not None:
            if isinstance(self._closed, px.ChannelClosedByBroker):
                raise self._closed
            raise LinkLost(f"declaring channel closed: {describe(self._closed)}")

    def close(self) -> None:
        if self._channel.is_open:
            self._channel.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._channel, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            answers: list = []
            method(*args, callback=answers.append, **kwargs)
            self._publisher._wait(lambda: answers or self._closed, name)
            if not answers:
                self._raise_if_closed()
            return answers[0]

        return call
