"""MessageQueue: the small API of the seed's `rabbit.py`, with the reliability built in.

    mq = MessageQueue("jobs")                 # work queue (or pattern="broadcast", ...)
    mq.publish("resize 42")                   # returns the id once the broker confirmed it
    mq.register(handle)                       # handle(delivery); raise to retry, Reject to dead-letter
    mq.start()                                # blocks, consuming, until mq.stop() or SIGTERM
    mq.close()

Publishing uses confirms and persistent messages, consuming uses manual acks after the
handler, both reconnect after a broker restart; stop() may be called from any thread.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from . import defaults
from .backoff import RetryPolicy
from .connection import Broker
from .consume.consumer import Consumer
from .consume.handlers import Handler
from .consume.retries import RetrySettings
from .message import Stamper
from .publish.blocking import Publisher
from .shutdown import StopFlag
from .topology import Route, Subscription


@dataclass(frozen=True)
class QueueTopology:
    """MessageQueue's less used keywords: the exchange of the exchange patterns, the routing key it
    publishes with, the binding keys it consumes with, and the type of the queues it creates, with
    a single active consumer or priority levels (topology.QueueSettings)."""

    exchange: str | None = None
    routing_key: str = defaults.QUEUE
    bindings: tuple[str, ...] = ()
    queue_type: str = defaults.QUEUE_TYPE
    single_active_consumer: bool = False
    max_priority: int | None = None


class MessageQueue:
    """Publish to and consume from one queue (or exchange pattern) without touching pika."""

    def __init__(
        self,
        name: str | None = defaults.QUEUE,
        url: Broker | str | None = None,
        *,
        pattern: str = "work",
        prefetch: int = defaults.PREFETCH,
        max_attempts: int = defaults.MAX_ATTEMPTS,
        min_backoff: float = defaults.MIN_BACKOFF,
        max_backoff: float = defaults.MAX_BACKOFF,
        retry: RetryPolicy | None = None,
        ca_file: str | None = None,
        **topology: Any,
    ) -> None:
        """`url`: a Broker, or a URL (None: AMQP_URL, else localhost); retry and ca_file, when given,
        replace the Broker's. max_attempts, min_backoff, max_backoff: a failing handler's retries (RetrySettings).
        `topology`: exchange, routing_key, bindings, queue_type, single_active_consumer, max_priority
        (QueueTopology)."""
        where = QueueTopology(**topology)  # an unknown keyword is a TypeError, as in any signature
        self.broker = Broker.of(url, ca_file, retry)
        self.url = self.broker.url
        ordering = {"single_active_consumer": where.single_active_consumer, "max_priority": where.max_priority}
        self.route = Route(pattern, name or defaults.QUEUE, where.queue_type, where.exchange, where.routing_key,
                           **ordering)
        self.subscription = Subscription(pattern, name, where.queue_type, where.exchange, where.bindings, **ordering)
        self.prefetch = prefetch
        self.retry = RetrySettings(max_attempts, min_backoff, max_backoff)
        self._stop = StopFlag()
        self._handler: Handler | None = None
        self._publisher: Publisher | None = None
        self._host = socket.gethostname()
        self._stamp = Stamper(self._host)

    def publish(self, payload: Any, priority: int | None = None) -> str:
        """Send one message (text, or anything JSON can encode); return its id once confirmed.

        `priority` (0-255): its place in a queue made with max_priority (capped at that by the broker).

        Raises ValueError for another priority, UndeliverableError if the broker refuses it, or (exchange
        patterns) if no queue is bound to receive it.
        """
        from .errors import UndeliverableError

        if priority is not None and (type(priority) is not int or not 0 <= priority <= 255):
            raise ValueError(f"priority must be a whole number from 0 to 255, not {priority!r}")
        if self._publisher is None:
            self._publisher = Publisher(self.broker, self.route, StopFlag(),
                                        connection_name=f"rabbitipc-mq-publisher@{self._host}")
        text = payload if isinstance(payload, str) else json.dumps(payload)
        message = self._stamp(text)
        properties = message.properties()
        properties.priority = priority
        if not self._publisher.publish(message.body(), properties):
            raise UndeliverableError(f"no queue is bound to {self.route.describe}")
        return message.id

    def register(self, handler: Handler) -> None:
        """Set the function called with each Delivery; an exception retries that message (up to max_attempts
        in all, then dead-letters it), raising rabbitipc.Reject dead-letters it at once."""
        self._handler = handler

    def start(self) -> int:
        """Consume until stop() (from any thread); return how many messages were handled."""
        consumer = Consumer(self.broker, self.subscription, self._handler, prefetch=self.prefetch, retry=self.retry,
                            stop=self._stop, connection_name=f"rabbitipc-mq-consumer@{self._host}")
        return consumer.run()

    def stop(self) -> None:
        """Ask start() to finish the message in hand and return."""
        self._stop.set("MessageQueue.stop()")

    def close(self) -> None:
        """Close the publishing connection (every publish() that returned was confirmed)."""
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
