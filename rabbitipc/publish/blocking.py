"""Publishing one message at a time: publish() returns only once the broker has taken the message.

MessageQueue and the log handler publish a message and wait for its confirm.
This is the publishing engine (`engine.StreamPublisher`) with a window of one: publish, then
flush. Every rule lives in the engine, once: persistent, `mandatory` and confirmed messages;
published again with the same id after a lost connection, a nack, or a return from the work
queue (at-least-once, the receiver drops duplicates by id), up to `max_refusals` times; a 403
is fatal; a broker alarm is logged and waited out.
"""

from __future__ import annotations

from typing import Any

import pika

from ..connection import Broker
from ..errors import Stopped
from ..shutdown import StopFlag
from ..topology import Route
from .engine import StreamPublisher

#: After a stop request, how long publish() still waits for the confirm of the message in hand.
STOP_GRACE = 10.0


class Publisher:
    """A confirmed publisher to one route, one message at a time."""

    def __init__(self, broker: Broker | str | None, route: Route, stop: StopFlag | None = None,
                 **options: Any) -> None:
        """`options`: the engine's health and PublisherSettings fields, e.g. connection_name (see StreamPublisher)."""
        self._engine = StreamPublisher(broker, route, stop=stop, window=1,
                                       on_confirmed=lambda _item: self._settle(True),
                                       on_unrouted=lambda _item: self._settle(False), **options)
        self._routed: bool | None = None  # how the message in hand was settled

    @property
    def route(self) -> Route:
        return self._engine.route

    @property
    def stop(self) -> StopFlag:
        return self._engine.stop

    def _settle(self, routed: bool) -> None:
        self._routed = routed

    def publish(self, body: bytes, properties: pika.BasicProperties) -> bool:
        """Publish and wait for the broker's confirm; reconnect and publish again on connection loss.

        Returns True once the broker has the message. In the exchange patterns a message no
        queue is bound for comes back; that is reported (False), not retried: nobody subscribes.
        Raises UndeliverableError when the broker returns or nacks it max_refusals times,
        AuthError when publishing is not permitted, Stopped on a stop while reconnecting or
        when the confirm has not come STOP_GRACE seconds after a stop request.
        """
        self._routed = None
        self._engine.publish(body, properties)
        if not self._engine.flush(grace=STOP_GRACE):
            raise Stopped()
        return bool(self._routed)

    def idle(self, seconds: float) -> None:
        """Wait up to `seconds`, servicing heartbeats; returns early on a stop request."""
        self._engine.idle(seconds)

    def close(self) -> None:
        """Close the connection; every publish() that returned was already confirmed."""
        self._engine.close()
