"""The per-message decision, in order: size, parse, strict, poison pill, duplicate, handler, sink.

Runs on the worker thread (or inline when there is no handler or sink) and never touches a
channel: it returns an Outcome, and the consumer's I/O thread carries it out (effects.py).
"""

from __future__ import annotations

from ..message import Message, NotOurMessage, printable
from .dedupe import RecentIds
from .handlers import Delivery, Handler
from .outcome import Outcome
from .settings import ConsumerSettings


class Pipeline:
    """Decides what happens to each delivered message."""

    def __init__(self, settings: ConsumerSettings, handler: Handler | None) -> None:
        self.settings = settings
        self.handler = handler
        self.sink = settings.sink
        self.recent = RecentIds(settings.dedupe_window)

    def decide(self, method, properties, body: bytes) -> Outcome:
        """The outcome for one message; any error while deciding dead-letters it with the reason."""
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
        delivery = Delivery(body, properties, method.redelivered, message, error)
        if error and settings.strict:
            return Outcome.dead(f"not a rabbitipc message: {error}")
        if settings.poison_pill is not None and _text(delivery) == settings.poison_pill:
            return Outcome.poison()
        # Duplicates are judged only among our messages: their ids are unique by construction,
        # while another client's message_id may be a counter that starts again ("1", "2", ...).
        message_id = message.id if message is not None else None
        seq = message.seq if message else "-"
        if message_id is not None and message_id in self.recent:
            return Outcome.duplicate(f"duplicate seq={seq} id={message_id} already handled; acked again")
        try:
            result = self.handler(delivery) if self.handler is not None else None
        except Exception as exc:  # noqa: BLE001 - any handler failure dead-letters the message
            return Outcome.dead(f"handler failed: {exc.__class__.__name__}: {exc}")
        if self.sink is not None:
            try:
                written = self.sink.write(delivery)
            except OSError as exc:
                return Outcome.dead(f"sink failed: {exc}")
            if not written:
                return Outcome.duplicate(f"duplicate seq={seq} id={message_id} already in {self.sink.path}; "
                                         "acked again")
        if message_id is not None:
            self.recent.add(message_id)  # handled: a redelivery after a lost ack is a duplicate
        return Outcome.handled(delivery, result)


def _text(delivery: Delivery) -> str:
    if delivery.message is not None:
        return delivery.message.payload
    return delivery.body.decode("utf-8", errors="replace")
