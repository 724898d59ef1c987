"""The per-message decision, in order: size, parse, strict, poison pill, duplicate, hop limit, handler, sink.

A handler's exception (but Reject) or a sink's OSError is worth another attempt while the message
has attempts left (settings.retry; an rpc request with reply_to is answered with the error at
once instead); everything else that fails is final and dead-letters the message at once.

Runs on the worker thread (or inline when there is no handler or sink) and never touches a
channel: it returns an Outcome, and the consumer's I/O thread carries it out (effects.py).
An id counts as handled (a later copy is a duplicate) once its handler is done when the ack is
all that follows; with a forward or a reply, only once the I/O thread has confirmed them and
calls confirmed(): until then a copy that comes back after a lost link or a refused publish is
handled again.
"""

from __future__ import annotations

import time

from .. import tracing
from ..message import Message, NotOurMessage, printable
from .dedupe import RecentIds, body_digest
from .dedupe_store import DedupeStore
from .handlers import Delivery, Handler, Reject
from .latency import Latencies
from .outcome import Outcome
from .retries import attempts_made
from .settings import ConsumerSettings
from .sinks import Stored
from .stage import hops


class Pipeline:
    """Decides what happens to each delivered message."""

    def __init__(self, settings: ConsumerSettings, handler: Handler | None, replies: bool = False,
                 handler_latency: Latencies | None = None, queue: str = "") -> None:
        """replies: the rpc pattern, where a request with reply_to is answered with the handler's result.
        handler_latency: where the handler's time goes (the metrics'); queue: the trace spans' name."""
        self.settings = settings
        self.queue = queue  # for the trace spans' names
        self.traced = tracing.tracer() is not None  # off (and free) without the otel extra and its settings
        self.handler = handler
        self.handler_latency = handler_latency or Latencies()  # ms per handler call
        self.sink = settings.sink
        self.replies = replies
        self.recent = RecentIds(settings.dedupe_window)
        #: --dedupe-store: the window's ids kept on the broker, shared by the replicas; None without it.
        self.store = DedupeStore(self.recent, settings.dedupe_window) if settings.dedupe_store else None

    def confirmed(self, delivery: Delivery) -> None:
        """I/O thread: every effect of this message is confirmed; a copy delivered from now on is a duplicate."""
        if delivery.message is not None:
            self.recent.add(delivery.message.id, body_digest(delivery.properties))
            if self.store is not None:  # stored (confirmed) before the ack may go out
                self.store.record(delivery)

    def decide(self, method, properties, body: bytes) -> Outcome:
        """The outcome for one message; any error while deciding dead-letters it with the reason."""
        if self.traced:  # a span per handling, continuing the sender's trace; the handler's spans nest in it
            with tracing.process_span(self.queue, properties):
                return self._decide_safely(method, properties, body)
        return self._decide_safely(method, properties, body)

    def _decide_safely(self, method, properties, body: bytes) -> Outcome:
        try:
            return self._decide(method, properties, body)
        except Exception as exc:  # noqa: BLE001 - one message must never stop or stall the receiver
            return Outcome.dead(f"could not be decided: {exc.__class__.__name__}: {printable(str(exc), 200)}")

    def _decide(self, method, properties, body: bytes) -> Outcome:
        settings = self.settings
        if len(body) > settings.max_size:
            return Outcome.dead(f"body of {len(body)} bytes exceeds the {settings.max_size}-byte limit")
        try:
            message, error = Message.parse(body), None
        except NotOurMessage as exc:
            message, error = None, str(exc)
        delivery = Delivery(body, properties, method.redelivered, message, error, attempts_made(properties) + 1)
        if error and settings.strict:
            return Outcome.dead(f"not a rabbitipc message: {error}")
        if settings.poison_pill is not None and _text(delivery) == settings.poison_pill:
            return Outcome.poison()
        # Duplicates are judged only among our messages: their ids are unique by construction,
        # while another client's message_id may be a counter that starts again ("1", "2", ...).
        message_id = message.id if message is not None else None
        seq = message.seq if message else "-"
        digest = body_digest(properties) if message_id is not None else None
        if message_id is not None:
            if method.redelivered and self.store is not None:
                self.store.catch_up()  # another replica may have handled it just before it died
            conflict = self.key_conflict(message_id, digest)
            if conflict is not None:  # the same key for another message: parked where a person sees it
                return Outcome.dead(conflict)
            if message_id in self.recent:
                return Outcome.duplicate(f"duplicate seq={seq} id={message_id} already handled; acked again")
        if settings.forward_to is not None and hops(properties) >= settings.max_hops:
            return Outcome.dead(f"forwarded {hops(properties)} times already (--max-hops {settings.max_hops}): "
                                "a cycle of stages?")
        result = None
        if self.handler is not None:
            started = time.perf_counter()
            try:
                result = self.handler(delivery)
            except Reject as exc:
                return Outcome.dead(f"rejected: {exc}")
            except Exception as exc:  # noqa: BLE001 - any other handler failure: retried, then dead-lettered
                return self.failed(delivery, f"handler failed: {exc.__class__.__name__}: {exc}")
            finally:
                self.handler_latency.add((time.perf_counter() - started) * 1000)
        if self.sink is not None:
            try:
                stored = self.sink.write(delivery)
            except OSError as exc:
                return self.failed(delivery, f"sink failed: {exc}")
            if stored is Stored.CONFLICT:  # (checked before the handler too; kept should the order change)
                return Outcome.dead(self.key_conflict(message_id, digest))
            # Already in the file: a duplicate, unless a forward or reply must follow (it may be
            # what was lost; redone, it has the same id and the next stage or caller drops it).
            if stored is Stored.COPY and not self.answers(properties) and settings.forward_to is None:
                return Outcome.duplicate(f"duplicate seq={seq} id={message_id} already in {self.sink.path}; "
                                         "acked again")
        if message_id is not None and not self.answers(properties) and settings.forward_to is None:
            # Nothing but the ack follows: handled now. A copy the broker sends again (the ack lost
            # with the link, or a handler slower than the broker's consumer_timeout) is a duplicate,
            # not a reason to run the handler again, and again at every timeout.
            self.recent.add(message_id, digest)
        return Outcome.handled(delivery, result)

    def failed(self, delivery: Delivery, reason: str) -> Outcome:
        """A failure worth another attempt: RETRY while attempts are left, else DEAD (with every reason)."""
        if delivery.attempt < self.settings.retry.max_attempts and not self.answers(delivery.properties):
            return Outcome.retry(reason)
        return Outcome.dead(reason)

    def key_conflict(self, message_id: str, digest: object) -> str | None:
        """Why this id's message is another body than the one handled (in memory, or in the sink's file), or None."""
        conflict = self.recent.conflict(message_id, digest)
        if conflict is None and self.sink is not None:
            conflict = self.sink.conflict(message_id, digest)
        return conflict

    def answers(self, properties) -> bool:
        """Whether the message is a request to answer (rpc pattern, with reply_to)."""
        return self.replies and bool(properties.reply_to)


def _text(delivery: Delivery) -> str:
    if delivery.message is not None:
        return delivery.message.payload
    return delivery.body.decode("utf-8", errors="replace")
