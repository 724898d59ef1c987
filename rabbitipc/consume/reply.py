"""The rpc pattern's step: answer a request with the handler's return value before acking it.

The reply goes to the request's `reply_to` through the default exchange, with the request's
`correlation_id`, and is confirmed by the broker before the request is acked: a responder killed
at any point leaves the request in its queue for the next one, so a caller never waits for an
answer that was lost.

Whoever may publish a request names the reply's destination, and the responder publishes with
its own rights: it answers only a caller's own destination (ReplyGuard). Direct reply-to
(`amq.rabbitmq.reply-to.*`, what RpcClient uses) reaches only the channel that sent the request
and is answered without any check. Any other name must be a queue exclusive to another
connection (the tutorial client's server-named queue): one passive declare on a channel of its
own tells (405 RESOURCE_LOCKED: exclusive elsewhere; OK: a queue others may read, refused;
404: no such queue), cached for CHECK_TTL seconds per name. A refused request is dead-lettered
with the reason, before its handler runs.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

import pika
import pika.exceptions as px

from ..bounded import BoundedMap
from ..errors import ReplyCode
from ..message import printable
from ..rpc import ERROR_HEADER, REPLY_TO, encode

LOGGER = logging.getLogger(__name__)

#: The names the broker gives direct reply-to destinations (the caller's channel, encoded).
DIRECT_PREFIX = REPLY_TO + "."
#: How long the verdict on a reply queue's name is reused: a name's owner can change (the queue
#: deleted, another declared under its name), so not for long; server-named queues never change.
CHECK_TTL = 10.0
#: How long a direct reply-to caller found present counts as present. RabbitMQ 3.10 returns every
#: mandatory direct reply, delivered or not, and a probe per reply was a second round trip for every
#: request (a fifth of a busy responder's time); within this window a caller that leaves right after
#: an answer goes without the "caller is gone" line (its request is acked either way).
ALIVE_TTL = 1.0


class Destination(enum.Enum):
    """What a request's reply_to names, as far as the responder can tell."""

    DIRECT = "direct reply-to"  # answered, no check
    EXCLUSIVE = "a queue exclusive to another connection"  # the caller's own queue: answered
    SHARED = "a queue other connections may read"  # refused: a work queue, someone else's queue
    MISSING = "no such queue"  # refused: the caller is gone, or never had one
    UNCHECKED = "a queue the responder may not check"  # refused: the broker denied the passive declare

    @property
    def answered(self) -> bool:
        return self in (Destination.DIRECT, Destination.EXCLUSIVE)


def is_direct(reply_to: str) -> bool:
    return reply_to.startswith(DIRECT_PREFIX)


class ReplyGuard:
    """Which reply_to names get an answer; see the module docstring. I/O thread only."""

    def __init__(self, ttl: float = CHECK_TTL) -> None:
        self._open: Callable[[], object] | None = None
        self._channel = None
        self.ttl = ttl
        self._verdicts: BoundedMap[tuple[Destination, float]] = BoundedMap(1000)
        self._present: BoundedMap[float] = BoundedMap(1000)  # direct reply-to name -> present until (monotonic)

    def reset(self, open_channel: Callable[[], object]) -> None:
        """A new connection: probe on a channel of its own (verdicts stay: they are about the broker's queues)."""
        self._open, self._channel = open_channel, None

    def refusal(self, reply_to: str) -> str | None:
        """None when the request may be answered at reply_to, else why not (the dead-letter reason)."""
        if is_direct(reply_to):
            return None
        destination = self.destination(reply_to)
        if destination.answered:
            return None
        return (f"reply_to {printable(reply_to, 100)!r} is {destination.value}: replies go only to direct "
                "reply-to or to a queue exclusive to the caller; not answered")

    def destination(self, name: str) -> Destination:
        """What `name` is; a cached verdict while it is fresh, else one passive declare."""
        if is_direct(name):
            return Destination.DIRECT
        cached = self._verdicts.get(name)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        destination = self._probe(name)
        if destination is not Destination.MISSING:  # a queue may yet be declared under that name
            self._verdicts.add(name, (destination, time.monotonic() + self.ttl))
        return destination

    def caller_gone(self, name: str) -> bool:
        """After a reply came back unroutable: is the caller really gone? Direct reply-to replies come
        back on some brokers (3.10 returns every mandatory one, delivered or not): ask the broker, at most
        once per ALIVE_TTL while the caller is there."""
        if not is_direct(name):
            return True
        until = self._present.get(name)
        if until is not None and until > time.monotonic():
            return False
        if self._probe(name) is Destination.MISSING:
            self._present.discard(name)
            return True
        self._present.add(name, time.monotonic() + ALIVE_TTL)
        return False

    def _probe(self, name: str) -> Destination:
        if self._channel is None or not self._channel.is_open:
            self._channel = self._open()
        try:
            self._channel.queue_declare(name, passive=True)
        except px.ChannelClosedByBroker as exc:  # the broker closed the probe channel: the next probe opens one
            self._channel = None
            return {ReplyCode.RESOURCE_LOCKED: Destination.EXCLUSIVE,
                    ReplyCode.NOT_FOUND: Destination.MISSING}.get(exc.reply_code, Destination.UNCHECKED)
        return Destination.DIRECT if is_direct(name) else Destination.SHARED


def body_of(result: object) -> tuple[bytes, str]:
    """The reply body: text as UTF-8 (the tutorials' numbers), bytes as they are, None empty, else JSON."""
    if result is None:
        return b"", "text/plain"
    return encode(result)


def send(confirm_channel, guard: ReplyGuard, properties, result: object = None,
         error: str | None = None) -> str | None:
    """Publish the reply, confirmed; None when the broker has it (or the caller is gone), else why not.

    A lost connection raises: the request comes back, unacked, and is answered again."""
    body, content_type = body_of(None if error is not None else result)
    reply_properties = pika.BasicProperties(
        correlation_id=properties.correlation_id, content_type=content_type,
        headers={ERROR_HEADER: error} if error is not None else None,
    )
    try:
        confirm_channel.basic_publish("", properties.reply_to, body, reply_properties, mandatory=True)
    except px.UnroutableError:
        if guard.caller_gone(properties.reply_to):
            # The caller's reply queue is gone: it stopped waiting, or (direct reply-to on a broker that
            # returns every mandatory reply) it took the answer and closed before the probe. Either way
            # nobody is left to use it; the request is acked.
            LOGGER.warning("reply to %s (correlation_id %s) unroutable: the caller is gone%s; request acked",
                           properties.reply_to, properties.correlation_id,
                           " (or closed right after taking the answer)" if is_direct(properties.reply_to) else "")
            return None
    except px.NackError:
        return f"the broker refused the reply to {properties.reply_to}"
    except px.ChannelClosedByBroker as exc:  # e.g. a reply over max_message_size; the caller opens a new channel
        return f"the broker refused the reply to {properties.reply_to}: {exc.reply_text}"
    LOGGER.debug("replied to %s correlation_id=%s bytes=%d", properties.reply_to, properties.correlation_id,
                 len(body))
    return None
