"""The queues, exchanges and bindings of each pattern, and how they are declared.

Sender and receiver declare the same topology (as the RabbitMQ tutorials do), so whichever
starts first creates it. What exists already is used as it is: a queue or exchange someone
else declared with other settings (a tutorial's quorum `hello`, its non-durable `logs`) is
adopted, with one warning line naming the difference and what it costs, instead of failing.
When ours creates them, the defaults are the current tutorials': durable quorum queues,
durable exchanges. A user without the right to declare (a publish-only sender) uses what
exists, checked passively. Anything rejected from the work queue lands in `<queue>.dead`,
declared only once the work queue was, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pika.exceptions as px

from . import defaults
from .errors import AuthError, TopologyError
from .names import CONTROL_EXCHANGE, DEAD_EXCHANGE, DEAD_SUFFIX, WORK_EXCHANGE  # noqa: F401 - re-exported

LOGGER = logging.getLogger(__name__)

QUEUE_TYPES = ("classic", "quorum")
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A difference is said once per process, not again at each reconnect's declare."""
    if message not in _warned:
        _warned.add(message)
        LOGGER.warning("%s", message)


class Declarer:
    """A channel for declaring that is reopened after each refusal (the broker closes it then).

    open_channel returns a blocking channel (pika's BlockingChannel, or the publishing engine's
    waiting wrapper); `channel` is always the open one to go on with.
    """

    def __init__(self, open_channel: Callable[[], object]) -> None:
        self._open = open_channel
        self.channel = open_channel()

    def __call__(self, operation: Callable[[object], object]) -> object:
        """operation(channel); on a broker refusal a fresh channel replaces the closed one, then it raises."""
        try:
            return operation(self.channel)
        except px.ChannelClosedByBroker:
            self.channel = self._open()
            raise


# -- what a difference costs -------------------------------------------------------------------
_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for (queue|exchange) '[^']*' in vhost '[^']*': "
                           r"received (.+) but current is (.+)$")


def _value(text: str) -> str | None:
    """'true', the value 'quorum' of type 'longstr', none -> true, quorum, None."""
    match = re.match(r"the value '(.*)' of type", text) or re.match(r"'(.*)'$", text)
    return match.group(1) if match else None


def _difference(reply_text: str) -> tuple[str, str | None, str | None] | None:
    """(argument, what we asked, what exists) from a 406 PRECONDITION_FAILED, if it says."""
    match = _INEQUIVALENT.search(reply_text)
    if not match:
        return None
    return match.group(1), _value(match.group(3)), _value(match.group(4))


QUEUE_COSTS = {
    "quorum": "each message is written to disk and replicated before it is confirmed (slower than classic; "
              "no exclusive or priority queues)",
    "classic": "it is not replicated: on a cluster it is only as available as the node that holds it",
    "not durable": "it and every message in it are lost when the broker restarts",
}


@dataclass(frozen=True)
class QueueSettings:
    """What a queue is: its type and durability (ours: the current tutorials', a durable quorum queue)."""

    queue_type: str = defaults.QUEUE_TYPE
    durable: bool = True

    def __post_init__(self) -> None:
        if not self.durable and self.queue_type != "classic":
            object.__setattr__(self, "queue_type", "classic")  # only classic queues can be transient

    def arguments(self) -> dict:
        return {"x-queue-type": self.queue_type}


def declare_queue(declare: Declarer, name: str, wanted: QueueSettings, flag: str = "--queue") -> QueueSettings:
    """Declare a queue with our settings, or adopt the existing one's; return the settings in force.

    A 406 names one differing argument: it is adopted and the declare tried again, until the
    broker agrees (so every difference is known), then one warning line says them all.
    """
    settings, differences = wanted, []
    for _ in range(4):
        try:
            declare(lambda ch, s=settings: ch.queue_declare(queue=name, durable=s.durable, arguments=s.arguments()))
            break
        except px.ChannelClosedByBroker as exc:
            adopted = _adopt_queue(exc, name, settings, flag)
            if adopted is None:  # not allowed to declare: use it as it is, if it exists
                _passive(declare, "queue", name, lambda ch: ch.queue_declare(queue=name, passive=True), exc)
                return settings
            settings, what = adopted
            differences.append(what)
    else:  # pragma: no cover - the broker keeps disagreeing: use it as it is
        _passive(declare, "queue", name, lambda ch: ch.queue_declare(queue=name, passive=True), None)
    if differences:
        _warn_once(f"queue {name} already exists and is used as it is: {'; '.join(differences)}")
    return settings


def _adopt_queue(exc: px.ChannelClosedByBroker, name: str, settings: QueueSettings,
                 flag: str) -> tuple[QueueSettings, str] | None:
    """The settings that match the existing queue, and the warning's words; None: 403 (check passively)."""
    if exc.reply_code == 403:
        return None
    if exc.reply_code == 405:
        raise TopologyError(
            f"queue {name!r} is exclusive to another connection (RESOURCE_LOCKED): it belongs to the client "
            f"that declared it, until that client disconnects; choose another {flag}") from None
    difference = _difference(exc.reply_text) if exc.reply_code == 406 else None
    if difference is None:
        if exc.reply_code == 406:
            raise TopologyError(f"queue {name!r} already exists with settings we cannot use ({exc.reply_text}); "
                                f"choose another {flag}") from None
        raise exc
    argument, _ours, current = difference
    if argument == "x-queue-type":
        queue_type = current or "classic"
        if queue_type not in QUEUE_TYPES:
            raise TopologyError(f"queue {name!r} is a {queue_type} queue, which we do not consume; "
                                f"choose another {flag}") from None
        return (replace(settings, queue_type=queue_type),
                f"it is a {queue_type} queue, not {settings.queue_type} ({QUEUE_COSTS[queue_type]}; "
                f"--queue-type {queue_type} says so and silences this)")
    if argument == "durable":
        durable = current == "true"
        if durable:
            return replace(settings, durable=True), "it is durable"
        return (replace(settings, durable=False, queue_type="classic"),
                f"it is not durable: {QUEUE_COSTS['not durable']}")
    raise TopologyError(f"queue {name!r} already exists with {argument} = {current!r}, which we do not set; "
                        f"choose another {flag} or delete it (rabbitmqctl delete_queue {name}) if its "
                        "messages can go") from None


def _passive(declare: Declarer, kind: str, name: str, operation, refusal: BaseException | None) -> None:
    """Check that it exists, without any right; 404: the refused declare was the real error."""
    try:
        declare(operation)
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise AuthError(f"not allowed to declare {kind} {name!r}, and it does not exist: declare it from the "
                            f"definitions or start the receiver first ({getattr(refusal, 'reply_text', '')})"
                            ) from None
        raise
    LOGGER.debug("%s %s exists; not ours to declare, used as it is", kind, name)


def declare_exchange(declare: Declarer, name: str, kind: str, durable: bool = True) -> bool:
    """Declare an exchange, or adopt the existing one's durability; return its durability.

    An exchange of another type cannot be adopted (the pattern's routing would change): a
    one-line fatal error naming --exchange.
    """
    try:
        declare(lambda ch: ch.exchange_declare(exchange=name, exchange_type=kind, durable=durable))
        return durable
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == 403:
            _passive(declare, "exchange", name, lambda ch: ch.exchange_declare(exchange=name, passive=True), exc)
            return durable
        difference = _difference(exc.reply_text) if exc.reply_code == 406 else None
        if difference is None or difference[0] != "durable":
            if exc.reply_code == 406:
                raise TopologyError(f"exchange {name!r} already exists with other settings ({exc.reply_text}); "
                                    "choose another --exchange") from None
            raise
    declare(lambda ch: ch.exchange_declare(exchange=name, exchange_type=kind, durable=not durable))
    if durable:
        _warn_once(f"exchange {name} already exists and is used as it is: it is not durable, so it disappears "
                   "with its bindings when the broker restarts (--exchange-durable false says so and silences this)")
    else:
        _warn_once(f"exchange {name} already exists and is used as it is: it is durable")
    return not durable


def bind(declare: Declarer, queue: str, exchange: str, key: str, required: bool = True) -> None:
    """queue_bind; a refused permission is a one-line fatal error, unless the binding is the admin's job."""
    try:
        declare(lambda ch: ch.queue_bind(queue, exchange, routing_key=key))
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code != 403:
            raise
        if required:
            raise AuthError(f"not allowed to bind {queue!r} to {exchange!r}: {exc.reply_text}") from None
        LOGGER.debug("not allowed to bind %s to %s: the definitions' binding is used", queue, exchange)


# -- patterns ----------------------------------------------------------------------------------
PATTERNS = ("work", "broadcast", "direct", "topic", "rpc")
EXCHANGE_TYPES = {"work": "direct", "broadcast": "fanout", "direct": "direct", "topic": "topic"}


def default_exchange(pattern: str) -> str:
    return WORK_EXCHANGE if pattern in ("work", "rpc") else f"rabbitipc.{pattern}"


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue with a dead-letter queue beside it (of the same type, declared after it)."""

    name: str = defaults.QUEUE
    queue_type: str = defaults.QUEUE_TYPE
    durable: bool = True

    @property
    def dead_letter_queue(self) -> str:
        return self.name + DEAD_SUFFIX

    def arguments(self) -> dict:
        # No x-dead-letter-exchange: declaring a queue with one needs read permission on it,
        # which a publish-only sender must not have. Receivers park messages themselves.
        return {"x-queue-type": self.queue_type}

    def declare(self, declare: Declarer) -> QueueSettings:
        """The work queue (ours or adopted), then its dead-letter queue of the same type."""
        settings = declare_queue(declare, self.name, QueueSettings(self.queue_type, self.durable))
        # Durable whatever the work queue is: what is parked there waits for a person.
        declare_queue(declare, self.dead_letter_queue, QueueSettings(settings.queue_type))
        return settings


@dataclass(frozen=True)
class Route:
    """Where a sender publishes: a work queue, or an exchange of the pattern's type.

    work:      the direct exchange rabbitipc.work, bound to the queue with its name as the key
               (a sender's write right then reaches only the queues bound to it, not every queue
               as the default exchange would)
    broadcast: a fanout exchange, every bound queue gets every message
    direct:    a direct exchange, queues bound with the exact routing key get it
    topic:     a topic exchange, binding keys with * (one word) and # (any words)
    """

    pattern: str = "work"
    queue: str = defaults.QUEUE
    queue_type: str = defaults.QUEUE_TYPE
    exchange: str | None = None
    routing_key: str = ""
    exchange_durable: bool = True
    queue_durable: bool = True

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

    def declare(self, declare: Declarer) -> None:
        if self.pattern == "work":
            declare_queue(declare, self.queue, QueueSettings(self.queue_type, self.queue_durable))
            declare_exchange(declare, self.exchange_name, "direct")
            bind(declare, self.queue, self.exchange_name, self.queue, required=False)
        else:
            declare_exchange(declare, self.exchange_name, EXCHANGE_TYPES[self.pattern], self.exchange_durable)


@dataclass(frozen=True)
class Subscription:
    """What a receiver consumes: its queue and, for exchange patterns, the bindings.

    With a queue name the queue is durable (it keeps messages while its receivers are down,
    and receivers sharing the name share its work). Without one, in the exchange patterns,
    each receiver gets an exclusive server-named queue that lives as long as it runs, as in
    a chat room: every running receiver sees every message. The rpc pattern consumes its
    queue like the work pattern and answers each request (consume/reply.py).
    """

    pattern: str = "work"
    queue: str | None = defaults.QUEUE
    queue_type: str = defaults.QUEUE_TYPE
    exchange: str | None = None
    bindings: tuple[str, ...] = ()
    exchange_durable: bool = True
    queue_durable: bool = True

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

    def declare(self, declare: Declarer) -> tuple[str, str]:
        """Declare queue, exchange and bindings; return (queue to consume, dead-letter queue)."""
        if self.queue:
            spec = QueueSpec(self.queue, self.queue_type, self.queue_durable)
            spec.declare(declare)
            name, dead = spec.name, spec.dead_letter_queue
        else:
            result = declare(lambda ch: ch.queue_declare(queue="", exclusive=True, auto_delete=True))
            name = result.method.queue
            dead = self.exchange_name + DEAD_SUFFIX
            declare_queue(declare, dead, QueueSettings(), flag="--exchange")
        if self.pattern not in ("work", "rpc"):
            declare_exchange(declare, self.exchange_name, EXCHANGE_TYPES[self.pattern], self.exchange_durable)
            for key in self.binding_keys:
                bind(declare, name, self.exchange_name, key)
        declare_exchange(declare, DEAD_EXCHANGE, "direct")
        bind(declare, dead, DEAD_EXCHANGE, dead, required=False)
        return name, dead
