"""The publisher's link: one asynchronous connection and its confirm channel, opened, watched, dropped.

The thread that publishes owns the link and turns its I/O loop (wire.pika_adapter's functions:
no pika internals here). pika's callbacks record why the link went away (`lost`); the engine
reads that between turns and decides what to do (engine.StreamPublisher._reset_link).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions as px

from ..connection import describe, watch_alarms
from ..wire import pika_adapter
from ..wire.pika_adapter import WireConnection

#: The longest one turn of the loop waits, so stop requests and deadlines are seen.
TURN = 0.2
#: How long a channel operation (open, confirm.select, declare) may take before we reconnect.
OPERATION_TIMEOUT = 30.0


class LinkLost(Exception):
    """The connection or channel went away while we waited on it."""


class PublishLink:
    """One WireConnection and its confirm channel; `after_turn()` runs after every turn of its loop."""

    def __init__(self, after_turn: Callable[[], None]) -> None:
        self.connection: WireConnection | None = None
        self.channel: Any = None  # the confirm channel (pika.channel.Channel) once open
        self.lost: BaseException | None = None  # why the link went away, set by pika's callbacks
        self._after_turn = after_turn

    @property
    def up(self) -> bool:
        """True while the connection and its confirm channel are open."""
        return self.connection is not None and self.lost is None and self.channel is not None

    @property
    def down(self) -> bool:
        """True when there is no connection, or it was lost: connect (again) before publishing."""
        return self.connection is None or self.lost is not None

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishing on this link (memory or disk alarm)."""
        connection = self.connection
        return connection is not None and self.lost is None and connection.blocked

    # -- opening ------------------------------------------------------------------------
    def open(self, params: pika.URLParameters) -> WireConnection:
        """One connection attempt, for connection.connect()'s `opener`: raises what pika.BlockingConnection would."""
        connection = pika_adapter.open_connection(params, self._on_connection_closed, TURN)
        watch_alarms(connection)
        return connection

    def attach(self, connection: WireConnection) -> None:
        """Use this (just opened) connection; its confirm channel is opened by open_confirm_channel()."""
        self.connection, self.channel = connection, None

    def new_channel(self, on_open: Callable[[Any], None], on_close: Callable[[Any, BaseException], None]) -> Any:
        """Ask for a channel on the connection (wait() for on_open); on_close tells why it closed."""
        channel = self.connection.channel(on_open_callback=on_open)
        channel.add_on_close_callback(on_close)
        return channel

    def open_confirm_channel(self, on_confirm: Callable[[Any], None],
                             on_return: Callable[[Any, Any, Any, bytes], None]) -> None:
        """Open the publishing channel in confirm mode."""
        opened: list = []
        self.channel = channel = self.new_channel(opened.append, self._on_channel_closed)
        self.wait(lambda: opened, "channel.open")
        channel.add_on_return_callback(on_return)
        selected: list = []
        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=selected.append)
        self.wait(lambda: selected, "confirm.select")

    def close_channel(self) -> None:
        """Close the publishing channel (a new one is opened by open_confirm_channel())."""
        old, self.channel = self.channel, None
        if old is not None and old.is_open:
            old.close()

    # -- turning the loop --------------------------------------------------------------
    def turn(self, timeout: float) -> None:
        """One turn of the loop (when connected), then after_turn()."""
        if self.connection is not None:
            pika_adapter.turn(self.connection, timeout)
        self._after_turn()

    def wait(self, done: Callable[[], object], what: str) -> None:
        """Turn the loop until done(); raise the broker's refusal, or LinkLost."""
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while not done():
            if isinstance(self.lost, px.ChannelClosedByBroker):
                raise self.lost
            if self.lost is not None:
                raise LinkLost(f"{describe(self.lost)} during {what}")
            if time.monotonic() > deadline:
                self.lost = LinkLost(f"no answer to {what} in {OPERATION_TIMEOUT:.0f}s")
                raise self.lost
            self.turn(TURN)

    def wake(self) -> None:
        """From any thread: end the current (or the next) turn's wait at once."""
        connection = self.connection
        if connection is not None:
            pika_adapter.wake(connection)

    def publish(self, exchange: str, key: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Publish (mandatory) on the confirm channel; raises pika's wrong-state errors when it is gone."""
        self.connection.publish(self.channel, exchange, key, body, properties, mandatory=True)

    # -- closing -------------------------------------------------------------------------
    def take_lost(self) -> BaseException | None:
        """Why the link was lost (and forget it: the next link starts clean)."""
        reason, self.lost = self.lost, None
        return reason

    def drop(self) -> None:
        """Close the connection (if any) and forget it."""
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            pika_adapter.close_connection(connection, 5, TURN)

    # -- pika's callbacks ----------------------------------------------------------------
    def _on_connection_closed(self, connection: Any, reason: BaseException) -> None:
        if connection is self.connection:
            self.lost = self.lost or reason

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self.channel:
            self.lost = self.lost or reason


class DeclareChannel:
    """An asynchronous channel of its own whose methods block, so topology.py declares on both kinds.

    A broker refusal closes this channel only; it is raised as pika's ChannelClosedByBroker.
    """

    def __init__(self, link: PublishLink) -> None:
        self._link = link
        self._closed: BaseException | None = None
        opened: list = []
        self._channel = link.new_channel(opened.append, self._on_close)
        link.wait(lambda: opened or self._closed, "channel.open")
        self._raise_if_closed()

    def _on_close(self, _channel: Any, reason: BaseException) -> None:
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
            self._link.wait(lambda: answers or self._closed, name)
            if not answers:
                self._raise_if_closed()
            return answers[0]

        return call
