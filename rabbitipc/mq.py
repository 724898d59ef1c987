"""MessageQueue: the small API of the seed's `rabbit.py`, with the reliability built in.

    mq = MessageQueue("jobs")                 # work queue (or pattern="broadcast", ...)
    mq.publish("resize 42")                   # returns the id once the broker confirmed it
    mq.register(handle)                       # handle(delivery); raise to dead-letter
    mq.start()                                # blocks, consuming, until mq.stop() or SIGTERM
    mq.close()

Publishing uses confirms and persistent messages, consuming uses manual acks after the
handler, both reconnect after a broker restart; stop() may be called from any thread.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from . import defaults
from .connection import Broker, Retry
from .consume.consumer import Consumer
from .consume.handlers import Handler
from .message import Stamper
from .publish.blocking import Publisher
from .shutdown import StopFlag
from .topology import Route, Subscription


class MessageQueue:
    """Publish to and consume from one queue (or exchange pattern) without touching pika."""

    def __init__(
        self,
        name: str | None = defaults.QUEUE,
        url: str | None = None,
        *,
        pattern: str = "work",
        exchange: str | None = None,
        routing_key: str = defaults.QUEUE,
        bindings: tuple[str, ...] = (),
        queue_type: str = defaults.QUEUE_TYPE,
        prefetch: int = defaults.PREFETCH,
        retry: Retry | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.broker = Broker.from_env(url, ca_file, retry)  # url, else AMQP_URL, else localhost
        self.url = self.broker.url
        self.route = Route(pattern, name or defaults.QUEUE, queue_type, exchange, routing_key)
        self.subscription = Subscription(pattern, name, queue_type, exchange, bindings)
        self.prefetch = prefetch
        self._stop = StopFlag()
        self._handler: Handler | None = None
        self._publisher: Publisher | None = None
        self._host = socket.gethostname()
        self._stamp = Stamper(self._host)

    def publish(self, payload: Any) -> str:
        """Send one message (text, or anything JSON can encode); return its id once confirmed.

        Raises UndeliverableError if the broker refuses it, or (exchange patterns) if no queue
        is bound to receive it.
        """
        from .errors import UndeliverableError

        if self._publisher is None:
            self._publisher = Publisher(self.url, self.route, self.broker.retry, StopFlag(),
                                        connection_name=f"rabbitipc-mq-publisher@{self._host}",
                                        ca_file=self.broker.ca_file)
        text = payload if isinstance(payload, str) else json.dumps(payload)
        message = self._stamp(text)
        if not self._publisher.publish(message.body(), message.properties()):
            raise UndeliverableError(f"no queue is bound to {self.route.describe}")
        return message.id

    def register(self, handler: Handler) -> None:
        """Set the function called with each Delivery; an exception dead-letters that message."""
        self._handler = handler

    def start(self) -> int:
        """Consume until stop() (from any thread); return how many messages were handled."""
        consumer = Consumer(self.url, self.subscription, self._handler, prefetch=self.prefetch,
                            retry=self.broker.retry, stop=self._stop, ca_file=self.broker.ca_file,
                            connection_name=f"rabbitipc-mq-consumer@{self._host}")
        return consumer.run()

    def stop(self) -> None:
        """Ask start() to finish the message in hand and return."""
        self._stop.set("MessageQueue.stop()")

    def close(self) -> None:
        """Close the publishing connection (every publish() that returned was confirmed)."""
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
