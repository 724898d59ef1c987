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

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pika.exceptions as px

from . import defaults
from .errors import AuthError, CreateRefused, ReplyCode, TopologyError
from .names import (  # noqa: F401 - re-exported
    CHAT_ROOM,
    CHAT_STREAM_ARGUMENTS,
    CONTROL_EXCHANGE,
    DEAD_EXCHANGE,
    DEAD_SUFFIX,
    RETRY_EXCHANGE,
    RETRY_INFIX,
    WORK_EXCHANGE,
    history_stream,
)

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


#: x-max-priority's range; RabbitMQ recommends at most 10 (each level costs the queue memory and CPU).
MAX_PRIORITIES = 255


@dataclass(frozen=True)
class QueueSettings:
    """What a queue is: its type and durability (ours: the current tutorials', a durable quorum queue),
    whether one consumer at a time gets its messages, and its priority levels (classic queues only)."""

    queue_type: str = defaults.QUEUE_TYPE
    durable: bool = True
    #: Replicas of a quorum queue ours creates (x-quorum-initial-group-size): the broker takes the
    #: cluster size when smaller, so one node gets one. None: an existing queue that sets none.
    replicas: int | None = defaults.QUORUM_REPLICAS
    #: x-single-active-consumer: the broker delivers to one consumer; the others stand by and the
    #: next one takes over when it goes (its unacked messages first).
    single_active_consumer: bool = False
    #: x-max-priority (1-255): a message's priority property orders it, capped at this. RabbitMQ 3.10
    #: has priorities on classic queues only.
    max_priority: int | None = None
    #: Arguments an existing queue has that mean what their absence means (x-single-active-consumer false,
    #: x-max-priority 0), declared as they are so the broker agrees: (name, value) pairs.
    as_it_is: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if not self.durable and self.queue_type != "classic":
            object.__setattr__(self, "queue_type", "classic")  # only classic queues can be transient
        if self.max_priority is not None:
            if not 1 <= self.max_priority <= MAX_PRIORITIES:
                raise ValueError(f"max_priority {self.max_priority} is not from 1 to {MAX_PRIORITIES}")
            if self.queue_type != "classic":
                raise ValueError(f"max_priority needs a classic queue: a {self.queue_type} queue has no priorities "
                                 "on RabbitMQ 3.10")

    def arguments(self) -> dict:
        arguments: dict = {"x-queue-type": self.queue_type}
        if self.queue_type == "quorum" and self.replicas is not None:
            arguments["x-quorum-initial-group-size"] = self.replicas
        if self.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        if self.max_priority is not None:
            arguments["x-max-priority"] = self.max_priority
        arguments.update(self.as_it_is)
        return arguments


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
            if what:
                differences.append(what)
    else:  # pragma: no cover - the broker keeps disagreeing: use it as it is
        _passive(declare, "queue", name, lambda ch: ch.queue_declare(queue=name, passive=True), None)
    if differences:
        _warn_once(f"queue {name} already exists and is used as it is: {'; '.join(differences)}")
    return settings


def _adopt_queue(exc: px.ChannelClosedByBroker, name: str, settings: QueueSettings,
                 flag: str) -> tuple[QueueSettings, str] | None:
    """The settings that match the existing queue, and the warning's words; None: 403 (check passively)."""
    if exc.reply_code == ReplyCode.ACCESS_REFUSED:
        return None
    if exc.reply_code == ReplyCode.RESOURCE_LOCKED:
        raise TopologyError(
            f"queue {name!r} is exclusive to another connection (RESOURCE_LOCKED): it belongs to the client "
            f"that declared it, until that client disconnects; choose another {flag}") from None
    difference = _difference(exc.reply_text) if exc.reply_code == ReplyCode.PRECONDITION_FAILED else None
    if difference is None:
        if exc.reply_code == ReplyCode.PRECONDITION_FAILED:
            raise TopologyError(f"queue {name!r} already exists with settings we cannot use ({exc.reply_text}); "
                                f"choose another {flag}") from None
        raise exc
    argument, _ours, current = difference
    if argument == "x-queue-type":
        queue_type = current or "classic"
        if queue_type not in QUEUE_TYPES:
            raise TopologyError(f"queue {name!r} is a {queue_type} queue, which we do not consume; "
                                f"choose another {flag}") from None
        if settings.max_priority is not None and queue_type != "classic":
            raise TopologyError(f"queue {name!r} already exists as a {queue_type} queue, which has no priorities "
                                f"(--max-priority); {_NOT_CHANGED.format(name=name, flag=flag)}") from None
        return (replace(settings, queue_type=queue_type),
                f"it is a {queue_type} queue, not {settings.queue_type} ({QUEUE_COSTS[queue_type]}; "
                f"--queue-type {queue_type} says so and silences this)")
    if argument == "x-quorum-initial-group-size":
        # Only counts when a queue is created: the existing queue's count (or none) is used quietly.
        return replace(settings, replicas=int(current) if current else None), ""
    if argument == "durable":
        durable = current == "true"
        if durable:
            return replace(settings, durable=True), "it is durable"
        return (replace(settings, durable=False, queue_type="classic"),
                f"it is not durable: {QUEUE_COSTS['not durable']}")
    if argument in _ORDERING:
        return _adopt_ordering(argument, current, name, settings, flag)
    raise TopologyError(f"queue {name!r} already exists with {argument} = {current!r}, which we do not set; "
                        f"choose another {flag} or delete it (rabbitmqctl delete_queue {name}) if its "
                        "messages can go") from None


_ORDERING = ("x-single-active-consumer", "x-max-priority")
_NOT_CHANGED = ("a queue's arguments cannot change: delete it (rabbitmqctl delete_queue {name}) if its messages "
                "can go, or choose another {flag}")


def _adopt_ordering(argument: str, current: str | None, name: str, settings: QueueSettings,
                    flag: str) -> tuple[QueueSettings, str]:
    """An existing queue's single active consumer or priorities: adopted when we asked for none (one warning
    says what it means), else a TopologyError, since the one asked for cannot be added to it."""
    asked = settings.single_active_consumer if argument == "x-single-active-consumer" else settings.max_priority
    if current in ("false", "0") and not asked:  # set, to what having none means: declared as it is, quietly
        value = False if current == "false" else 0
        return replace(settings, as_it_is=(*settings.as_it_is, (argument, value))), ""
    if argument == "x-single-active-consumer":
        if not settings.single_active_consumer:
            return (replace(settings, single_active_consumer=True),
                    "it has a single active consumer: the broker delivers to one consumer at a time, the others "
                    "stand by (--single-active-consumer says so and silences this)")
        raise TopologyError(f"queue {name!r} already exists without a single active consumer "
                            f"(--single-active-consumer); {_NOT_CHANGED.format(name=name, flag=flag)}") from None
    if settings.max_priority is None and current is not None:
        classic = settings.queue_type == "classic"
        kind = "a priority queue" if classic else "a classic priority queue"
        flags = f"--max-priority {current}" if classic else f"--queue-type classic --max-priority {current}"
        return (replace(settings, queue_type="classic", max_priority=int(current)),
                f"it is {kind} (x-max-priority {current}): a message without --priority has the lowest, 0 "
                f"({flags} says so and silences this)")
    having = f"with x-max-priority {current}" if current is not None else "without priorities"
    raise TopologyError(f"queue {name!r} already exists {having}, not --max-priority {settings.max_priority}; "
                        f"{_NOT_CHANGED.format(name=name, flag=flag)}") from None


def _passive(declare: Declarer, kind: str, name: str, operation, refusal: BaseException | None) -> None:
    """Check that it exists, without any right; 404: the refused declare was the real error."""
    try:
        declare(operation)
    except px.ChannelClosedByBroker as exc:
        if exc.reply_code == ReplyCode.NOT_FOUND:
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
        if exc.reply_code == ReplyCode.ACCESS_REFUSED:
            _passive(declare, "exchange", name, lambda ch: ch.exchange_declare(exchange=name, passive=True), exc)
            return durable
        difference = _difference(exc.reply_text) if exc.reply_code == ReplyCode.PRECONDITION_FAILED else None
        if difference is None or difference[0] != "durable":
            if exc.reply_code == ReplyCode.PRECONDITION_FAILED:
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
        if exc.reply_code != ReplyCode.ACCESS_REFUSED:
            raise
        if required:
            raise AuthError(f"not allowed to bind {queue!r} to {exchange!r}: {exc.reply_text}") from None
        LOGGER.debug("not allowed to bind %s to %s: the definitions' binding is used", queue, exchange)


# -- patterns ----------------------------------------------------------------------------------
class Pattern(enum.StrEnum):
    """How messages find their queues (--pattern), with its exchange type and queue rules.

    work:      one named queue, receivers share its messages; published through the direct
               exchange rabbitipc.work with the queue's name as the key
    broadcast: a fanout exchange, every bound queue gets every message
    direct:    a direct exchange, queues bound with the exact routing key get it
    topic:     a topic exchange, binding keys with * (one word) and # (any words)
    rpc:       a request queue like work's, each request answered (receivers only: consume/reply.py)
    """

    WORK = "work"
    BROADCAST = "broadcast"
    DIRECT = "direct"
    TOPIC = "topic"
    RPC = "rpc"

    @property
    def to_queue(self) -> bool:
        """Whether each message goes to one named queue (work, rpc) rather than to an exchange's bound queues."""
        return self in _TO_QUEUE

    @property
    def exchange_type(self) -> str:
        return _EXCHANGE_TYPES[self]

    @property
    def default_exchange(self) -> str:
        return WORK_EXCHANGE if self.to_queue else f"rabbitipc.{self.value}"

    @property
    def default_queue(self) -> str | None:
        """The queue without --queue: work's and rpc's own; none in the exchange patterns (exclusive queues)."""
        return _DEFAULT_QUEUES.get(self)

    @property
    def answers(self) -> bool:
        """Whether a request with reply_to gets the handler's result as its reply."""
        return self is Pattern.RPC

    def binding_keys(self, given: tuple[str, ...]) -> tuple[str, ...]:
        """The keys a receiver's queue is bound with: broadcast's fanout ignores keys; else the given
        ones, by default every key (topic) or the work queue's name (direct)."""
        if self is Pattern.BROADCAST:
            return ("",)
        return given or (("#",) if self is Pattern.TOPIC else (defaults.QUEUE,))


_TO_QUEUE = frozenset({Pattern.WORK, Pattern.RPC})
_EXCHANGE_TYPES = {Pattern.WORK: "direct", Pattern.RPC: "direct", Pattern.BROADCAST: "fanout",
                   Pattern.DIRECT: "direct", Pattern.TOPIC: "topic"}
_DEFAULT_QUEUES = {Pattern.WORK: defaults.QUEUE, Pattern.RPC: defaults.RPC_QUEUE}
#: The --pattern values, as typed.
PATTERNS = tuple(pattern.value for pattern in Pattern)


@dataclass(frozen=True)
class DeadLetterSpec:
    """Where a receiver parks what it cannot handle: a durable queue bound to rabbitipc.dead with its
    own name as the key, declared at start and again by a consumer that finds it deleted.

    Beside a named queue it is `<queue>.dead`, of the type the work queue has (ours or adopted);
    beside exclusive queues, `<exchange>.dead`, shared by their receivers. The work queue gets no
    x-dead-letter-exchange: declaring a queue with one needs read permission on it, which a
    publish-only sender must not have. Receivers park messages themselves (consume/effects.py).
    """

    name: str
    #: Durable whatever the work queue is: what is parked there waits for a person.
    settings: QueueSettings = QueueSettings()
    flag: str = "--queue"  # the flag that names another queue, in the error of an unusable one

    @classmethod
    def beside(cls, queue: str, settings: QueueSettings) -> DeadLetterSpec:
        """<queue>.dead, of the type of the work queue's settings in force."""
        return cls(queue + DEAD_SUFFIX, QueueSettings(settings.queue_type))

    def declare(self, declare: Declarer) -> None:
        """The queue (ours or adopted), the exchange and the binding (the definitions' when ours is refused)."""
        declare_queue(declare, self.name, self.settings, self.flag)
        declare_exchange(declare, DEAD_EXCHANGE, "direct")
        bind(declare, self.name, DEAD_EXCHANGE, self.name, required=False)


@dataclass(frozen=True)
class RetrySpec:
    """Where a receiver's failed messages wait for their next attempt: one durable quorum queue per
    delay, `<queue>.retry.<ms>ms`, whose message TTL dead-letters them back to the work queue.

    Copies are published to the direct exchange rabbitipc.retry with the delay queue's name as the
    key; the delay queue dead-letters through the same exchange with the work queue's name as the
    key, so the receiver needs no right on the default exchange. Named by the delay, a queue never
    clashes with one of another delay (arguments cannot change). The at-least-once dead-letter
    strategy (it needs reject-publish) keeps a message in the delay queue until the work queue has
    it: a broker restart or a node lost while messages wait loses none.
    """

    queue: str
    delays_ms: tuple[int, ...]

    def name(self, delay_ms: int) -> str:
        return f"{self.queue}{RETRY_INFIX}{delay_ms}ms"

    def arguments(self, delay_ms: int) -> dict:
        return {"x-queue-type": "quorum", "x-message-ttl": delay_ms, "x-dead-letter-exchange": RETRY_EXCHANGE,
                "x-dead-letter-routing-key": self.queue, "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish"}

    def declare(self, declare: Declarer) -> None:
        """The exchange, the delay queues and their bindings, and the work queue's binding (without it,
        every copy would expire into nothing): a refusal is a one-line fatal error."""
        declare_exchange(declare, RETRY_EXCHANGE, "direct")
        for delay_ms in self.delays_ms:
            self.declare_delay_queue(declare, delay_ms)
        bind(declare, self.queue, RETRY_EXCHANGE, self.queue)

    def declare_delay_queue(self, declare: Declarer, delay_ms: int) -> None:
        name = self.name(delay_ms)
        try:
            declare(lambda ch: ch.queue_declare(queue=name, durable=True, arguments=self.arguments(delay_ms)))
        except px.ChannelClosedByBroker as exc:
            if exc.reply_code == ReplyCode.ACCESS_REFUSED:
                _passive(declare, "queue", name, lambda ch: ch.queue_declare(queue=name, passive=True), exc)
            elif exc.reply_code == ReplyCode.PRECONDITION_FAILED:
                raise TopologyError(f"delay queue {name!r} exists with other arguments ({exc.reply_text}); delete "
                                    f"it (rabbitmqctl delete_queue {name}) once empty") from None
            else:
                raise
        bind(declare, name, RETRY_EXCHANGE, name)


class _OnExchange:
    """What Route and Subscription share: `pattern` given as a Pattern or its name, the exchange
    in use (the one named, else the pattern's default), and the settings of the queue ours declares."""

    pattern: Pattern
    exchange: str | None
    queue: str | None
    queue_type: str
    queue_durable: bool
    single_active_consumer: bool
    max_priority: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", Pattern(self.pattern))
        if not self.queue and (self.single_active_consumer or self.max_priority is not None):
            raise ValueError("single_active_consumer and max_priority need a named queue (an exclusive queue has "
                             "one consumer, and is declared as the broker names it)")
        self.queue_settings  # noqa: B018 - a max_priority the queue type cannot have is a ValueError now, not later

    @property
    def queue_settings(self) -> QueueSettings:
        """How ours declares the named queue."""
        return QueueSettings(self.queue_type, self.queue_durable, single_active_consumer=self.single_active_consumer,
                             max_priority=self.max_priority)

    @property
    def exchange_name(self) -> str:
        return self.pattern.default_exchange if self.exchange is None else self.exchange


@dataclass(frozen=True)
class Route(_OnExchange):
    """Where a sender publishes: a work queue, or an exchange of the pattern's type (Pattern).

    A work queue is reached through the direct exchange rabbitipc.work, bound to the queue with its
    name as the key: a sender's write right then reaches only the queues bound to it, not every
    queue as the default exchange would. `pattern` may be given as its name ("work").
    """

    pattern: Pattern = Pattern.WORK
    queue: str = defaults.QUEUE
    queue_type: str = defaults.QUEUE_TYPE
    exchange: str | None = None
    routing_key: str = ""
    exchange_durable: bool = True
    queue_durable: bool = True
    #: False: another part declares what it publishes to, before (the chat's room: ChatTopology).
    declares: bool = True
    single_active_consumer: bool = False  # the queue ours declares: QueueSettings
    max_priority: int | None = None

    @property
    def key(self) -> str:
        return self.queue if self.pattern.to_queue else self.routing_key

    @property
    def destination(self) -> str:
        """What the metrics name: the queue, else the exchange."""
        return self.queue if self.pattern.to_queue else self.exchange_name

    @property
    def describe(self) -> str:
        if self.pattern.to_queue:
            return f"queue {self.queue}"
        return f"{self.pattern} exchange {self.exchange_name} key {self.routing_key!r}"

    def declare(self, declare: Declarer) -> None:
        if not self.declares:
            return
        if self.pattern.to_queue:
            declare_queue(declare, self.queue, self.queue_settings)
            declare_exchange(declare, self.exchange_name, self.pattern.exchange_type)
            bind(declare, self.queue, self.exchange_name, self.queue, required=False)
        else:
            declare_exchange(declare, self.exchange_name, self.pattern.exchange_type, self.exchange_durable)


@dataclass(frozen=True)
class Subscription(_OnExchange):
    """What a receiver consumes: its queue and, for exchange patterns, the bindings.

    With a queue name the queue is durable (it keeps messages while its receivers are down,
    and receivers sharing the name share its work). Without one, in the exchange patterns,
    each receiver gets an exclusive server-named queue that lives as long as it runs, as in
    a chat room: every running receiver sees every message. The rpc pattern consumes its
    queue like the work pattern and answers each request (consume/reply.py).
    """

    pattern: Pattern = Pattern.WORK
    queue: str | None = defaults.QUEUE
    queue_type: str = defaults.QUEUE_TYPE
    exchange: str | None = None
    bindings: tuple[str, ...] = ()
    exchange_durable: bool = True
    queue_durable: bool = True
    single_active_consumer: bool = False  # the named queue ours declares: QueueSettings
    max_priority: int | None = None

    @property
    def group(self) -> str:
        """The name control commands address: the queue, else the exchange."""
        return self.queue or self.exchange_name

    @property
    def binding_keys(self) -> tuple[str, ...]:
        return self.pattern.binding_keys(self.bindings)

    def declare(self, declare: Declarer) -> tuple[str, DeadLetterSpec]:
        """Declare queue, exchange and bindings, then the dead-letter queue (so a failed start leaves
        none); return the queue to consume and its dead-letter spec."""
        if self.queue:
            settings = declare_queue(declare, self.queue, self.queue_settings)
            name, dead = self.queue, DeadLetterSpec.beside(self.queue, settings)
        else:
            result = declare(lambda ch: ch.queue_declare(queue="", exclusive=True, auto_delete=True))
            name = result.method.queue
            dead = DeadLetterSpec(self.exchange_name + DEAD_SUFFIX, flag="--exchange")
        if not self.pattern.to_queue:
            declare_exchange(declare, self.exchange_name, self.pattern.exchange_type, self.exchange_durable)
            for key in self.binding_keys:
                bind(declare, name, self.exchange_name, key)
        dead.declare(declare)
        return name, dead


# -- the chat ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatTopology:
    """A chat room (rabbitipc-chat): a durable fanout exchange named after the room, as in the seed,
    and the stream `<room>.history` bound to it, which keeps what was said (docs/chat.md).

    Everyone publishes to the exchange; listeners read the stream. The exchange stays a plain
    fanout, so the seed's own subscriber (an exclusive queue bound to it) still gets every message.
    """

    room: str = CHAT_ROOM

    @property
    def stream(self) -> str:
        return history_stream(self.room)

    @property
    def route(self) -> Route:
        """Where the room's messages are published. Its publisher declares nothing: declare() runs on a
        connection of its own first, because checking that a room exists closes the channel when it does
        not, and that channel must not be the publisher's."""
        return Route(Pattern.BROADCAST, self.room, exchange=self.room, routing_key="", declares=False)

    def declare(self, channel) -> None:
        """The fanout exchange, the history stream and their binding, unless they all exist.

        Existence is checked first, on a channel of its own (a passive declare needs no
        permission), so the chat's users on a shared server need no right to create or delete
        the room: the server's definitions create it (rabbitipc/definitions.py). A user who may
        not create a missing room gets CreateRefused: someone who may can create it later.
        """
        room, stream = self.room, self.stream
        probe = channel.connection.channel()
        try:
            probe.exchange_declare(room, passive=True)
            probe.queue_declare(stream, passive=True)
        except px.ChannelClosedByBroker as exc:
            if exc.reply_code != ReplyCode.NOT_FOUND or "down or inaccessible" in exc.reply_text:
                raise _room_refusal(exc, f"use the chat {room!r}") from None
        else:
            # Both exist; the binding may not (its creator is a moment behind). Binding again is
            # harmless, and refused to the chat's users, for whom the definitions made it.
            try:
                probe.queue_bind(stream, room)
                probe.close()
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code != ReplyCode.ACCESS_REFUSED:
                    raise
            return
        steps = (
            (f"create exchange {room!r}", True,
             lambda: channel.exchange_declare(room, exchange_type="fanout", durable=True)),
            (f"create stream {stream!r}", True,
             lambda: channel.queue_declare(stream, durable=True, arguments=CHAT_STREAM_ARGUMENTS)),
            (f"bind stream {stream!r} to exchange {room!r}", False, lambda: channel.queue_bind(stream, room)),
        )
        for what, creates, step in steps:
            try:
                step()
            except px.ChannelClosedByBroker as exc:
                raise _room_refusal(exc, what, creates) from None


def _room_refusal(exc: px.ChannelClosedByBroker, what: str, creates: bool = False) -> Exception:
    """A refusal retrying cannot fix as a FatalError; anything else (a stream whose node is still
    starting answers 404 "down or inaccessible" for a moment) stays the transient pika error."""
    if exc.reply_code == ReplyCode.ACCESS_REFUSED:
        return (CreateRefused if creates else AuthError)(f"not allowed to {what}: {exc.reply_text}")
    if exc.reply_code == ReplyCode.PRECONDITION_FAILED:
        return TopologyError(f"cannot {what}: it exists with other settings ({exc.reply_text}); "
                             "delete it or choose another --room")
    return exc
