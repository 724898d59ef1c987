"""The queues both programs declare: a durable work queue and its dead-letter queue.

Sender and receiver declare the same queue with the same arguments (as the RabbitMQ
tutorials do), so whichever starts first creates it and no message is published into a
queue that does not exist yet. Anything rejected from the work queue lands in
`<queue>.dead` through the queue's dead-letter arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pika.exceptions as px

from . import defaults
from .errors import AuthError, TopologyError
from .names import CONTROL_EXCHANGE, DEAD_EXCHANGE, DEAD_SUFFIX  # noqa: F401 - re-exported

QUEUE_TYPES = ("classic", "quorum")


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue of a given type with a dead-letter queue beside it."""

    name: str = defaults.QUEUE
    queue_type: str = "classic"

    @property
    def dead_letter_queue(self) -> str:
        return self.name + DEAD_SUFFIX

    def arguments(self) -> dict:
        # No x-dead-letter-exchange: declaring a queue with one needs read permission on it,
        # which a publish-only sender must not have. Receivers park messages themselves.
        return {"x-queue-type": self.queue_type}

    def declare(self, channel) -> None:
        """Declare the dead-letter queue and the work queue; explain a settings conflict."""
        declare_queue(channel, self.dead_letter_queue, {"x-queue-type": self.queue_type})
        declare_queue(channel, self.name, self.arguments())


_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for queue '([^']+)'.*received (.+) but current is (.+)")


def declare_queue(channel, name: str, arguments: dict) -> None:
    """queue_declare(durable) that turns broker refusals into one-line fatal errors."""
    try:
        channel.queue_declare(queue=name, durable=True, arguments=arguments)
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:
            match = _INEQUIVALENT.search(exc.reply_text)
            detail = (
                f"its {match.group(1)!r} is {match.group(4)}, we need {match.group(3)}"
                if match else exc.reply_text
            )
            raise TopologyError(
                f"queue {name!r} already exists with other settings ({detail}); "
                f"delete it (rabbitmqctl delete_queue {name}) or choose another --queue"
            ) from None
        if exc.reply_code == 403:
            raise AuthError(f"not allowed to declare queue {name!r}: {exc.reply_text}") from None
        raise


# -- exchange patterns -------------------------------------------------------------------------
PATTERNS = ("work", "broadcast", "direct", "topic")
EXCHANGE_TYPES = {"broadcast": "fanout", "direct": "direct", "topic": "topic"}



def default_exchange(pattern: str) -> str:
    return "" if pattern == "work" else f"rabbitipc.{pattern}"


@dataclass(frozen=True)
class Route:
    """Where a sender publishes: a work queue, or an exchange of the pattern's type.

    work:      the default exchange, routing key = the queue (declared by the sender too)
    broadcast: a fanout exchange, every bound queue gets every message
    direct:    a direct exchange, queues bound with the exact routing key get it
    topic:     a topic exchange, binding keys with * (one word) and # (any words)
    """

    pattern: str = "work"
    queue: str = defaults.QUEUE
    queue_type: str = "classic"
    exchange: str | None = None
    routing_key: str = ""

    @property
    def exchange_name(self) -> str:
        return default_exchange(self.pattern) if self.exchange is None else self.exchange

    @property
    def key(self) -> str:
        return self.queue if self.pattern == "work" else self.routing_key

    @property
    def describe(self) -> str:
        if self.pattern == "work":
            return f"queue {self.queue}"
        return f"{self.pattern} exchange {self.exchange_name} key {self.routing_key!r}"

    def declare(self, channel) -> None:
        if self.pattern == "work":
            QueueSpec(self.queue, self.queue_type).declare(channel)
        else:
            declare_exchange(channel, self.exchange_name, EXCHANGE_TYPES[self.pattern])


@dataclass(frozen=True)
class Subscription:
    """What a receiver consumes: its queue and, for exchange patterns, the bindings.

    With a queue name the queue is durable (it keeps messages while its receivers are down,
    and receivers sharing the name share its work). Without one, in the exchange patterns,
    each receiver gets an exclusive server-named queue that lives as long as it runs, as in
    a chat room: every running receiver sees every message.
    """

    pattern: str = "work"
    queue: str | None = defaults.QUEUE
    queue_type: str = "classic"
    exchange: str | None = None
    bindings: tuple[str, ...] = ()

    @property
    def exchange_name(self) -> str:
        return default_exchange(self.pattern) if self.exchange is None else self.exchange

    @property
    def group(self) -> str:
        """The name control commands address: the queue, else the exchange."""
        return self.queue or self.exchange_name

    @property
    def binding_keys(self) -> tuple[str, ...]:
        if self.pattern == "broadcast":
            return ("",)
        if self.bindings:
            return self.bindings
        return ("#",) if self.pattern == "topic" else (defaults.QUEUE,)

    def declare(self, channel) -> tuple[str, str]:
        """Declare queue, exchange and bindings; return (queue to consume, dead-letter queue)."""
        if self.queue:
            spec = QueueSpec(self.queue, self.queue_type)
            spec.declare(channel)
            name, dead = spec.name, spec.dead_letter_queue
        else:
            dead = self.exchange_name + DEAD_SUFFIX
            declare_queue(channel, dead, {"x-queue-type": "classic"})
            result = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
            name = result.method.queue
        if self.pattern != "work":
            declare_exchange(channel, self.exchange_name, EXCHANGE_TYPES[self.pattern])
            for key in self.binding_keys:
                bind(channel, name, self.exchange_name, key)
        declare_exchange(channel, DEAD_EXCHANGE, "direct")
        bind(channel, dead, DEAD_EXCHANGE, dead)
        return name, dead


def bind(channel, queue: str, exchange: str, key: str) -> None:
    """queue_bind with a refused permission as a one-line fatal error."""
    try:
        channel.queue_bind(queue, exchange, routing_key=key)
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == 403:
            raise AuthError(f"not allowed to bind {queue!r} to {exchange!r}: {exc.reply_text}") from None
        raise


def declare_exchange(channel, name: str, kind: str) -> None:
    """A durable exchange; a same-named exchange of another type is a one-line fatal error."""
    try:
        channel.exchange_declare(exchange=name, exchange_type=kind, durable=True)
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:
            raise TopologyError(
                f"exchange {name!r} already exists with other settings ({exc.reply_text}); "
                "delete it or choose another --exchange"
            ) from None
        if exc.reply_code == 403:
            raise AuthError(f"not allowed to declare exchange {name!r}: {exc.reply_text}") from None
        raise
