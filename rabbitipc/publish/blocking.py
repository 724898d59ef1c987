"""Publishing with confirms: publish() returns only once the broker has taken the message.

Every message is persistent, routed to a durable queue, `mandatory` (an unroutable message
comes back instead of vanishing) and confirmed. If the connection drops while a message is
in flight, we cannot know whether the broker got it, so it is published again with the same
id after reconnecting: at-least-once delivery, with the receiver dropping duplicates by id.
"""

from __future__ import annotations

import logging
import time

import pika
import pika.exceptions as px

from ..connection import RECONNECT, Retry, blocked_timeout, connect, watch_alarms
from ..errors import AuthError, UndeliverableError
from ..health import Health
from ..shutdown import StopFlag
from ..topology import Route

LOGGER = logging.getLogger(__name__)



class Publisher:
    """A confirmed publisher to one queue through the default exchange."""

    def __init__(
        self,
        url: str,
        route: Route,
        retry: Retry | None = None,
        stop: StopFlag | None = None,
        connection_name: str = "rabbitipc-sender",
        max_refusals: int = 5,
        health: Health | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.url = url
        self.route = route
        self.retry = retry or Retry()
        self.stop = stop or StopFlag()
        self.connection_name = connection_name
        self.max_refusals = max_refusals
        self.health = health or Health(None)
        self.ca_file = ca_file
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _ensure_channel(self):
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._connection is None or not self._connection.is_open:
            self._connection = connect(self.url, self.connection_name, self.retry, self.stop, self.health,
                                       self.ca_file)
            watch_alarms(self._connection)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self.route.declare(self._channel)
        return self._channel


    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
                LOGGER.debug("ignoring error while closing a broken connection", exc_info=True)

    def publish(self, body: bytes, properties: pika.BasicProperties) -> bool:
        """Publish and wait for the broker's confirm; reconnect and retry on connection loss.

        Returns True once the broker has the message. In the exchange patterns a message no
        queue is bound for comes back; that is reported (False), not retried: nobody subscribes.
        In the work pattern the queue is re-declared and the message sent again.
        Raises UndeliverableError when the broker returns or nacks it max_refusals times,
        AuthError when publishing is not permitted, Stopped on a stop while reconnecting.
        """
        exchange, key = self.route.exchange_name, self.route.key
        refusals = 0
        while True:
            channel = self._ensure_channel()
            try:
                channel.basic_publish(exchange, key, body, properties, mandatory=True)
                self.health.beat(connected=True)
                return True
            except px.UnroutableError:
                if self.route.pattern != "work":
                    return False
                reason = f"returned as unroutable (queue {key!r} missing?)"
                self._channel = None  # re-declares the queue on the next try
            except px.NackError:
                reason = "nacked by the broker"
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code == 403:
                    raise AuthError(f"not allowed to publish to {self.route.describe}: {exc.reply_text}") from None
                reason = f"channel closed by the broker: {exc.reply_text}"
                self._channel = None
            except px.ConnectionBlockedTimeout:
                # pika runs the blocked callback only between calls, not during this wait.
                LOGGER.warning("broker blocked publishing (memory or disk alarm) for %.0fs; reconnecting to wait",
                               blocked_timeout(self.url))
                self._drop_connection()
                continue
            except RECONNECT as exc:
                LOGGER.warning("connection lost while publishing (%s); reconnecting", exc.__class__.__name__)
                self._drop_connection()
                continue
            refusals += 1
            if refusals >= self.max_refusals:
                raise UndeliverableError(f"message {reason} {refusals} times; giving up")
            LOGGER.warning("message %s; retrying (%d/%d)", reason, refusals, self.max_refusals)
            self.stop.wait(min(refusals, 5))

    def idle(self, seconds: float) -> None:
        """Wait up to `seconds`, servicing heartbeats; returns early on a stop request."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(remaining, 0.2)
            connected = self._connection is not None and self._connection.is_open
            self.health.beat(connected)
            if connected:
                try:
                    self._connection.process_data_events(time_limit=step)
                except RECONNECT as exc:
                    LOGGER.warning("connection lost while idle (%s); will reconnect", exc.__class__.__name__)
                    self._drop_connection()
            else:
                self.stop.wait(step)

    def close(self) -> None:
        """Close the connection; every publish() that returned was already confirmed."""
        self._drop_connection()
