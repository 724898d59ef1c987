"""The one interface the chat programs talk to, whatever carries the messages.

A backend sends a ChatMessage (returning once the server has it) and listens: it calls
on_event with every ChatMessage of the room, oldest first, and with a Status whenever its
link to the server changes, until the stop flag is set. RabbitMQ (rabbitmq.py) and Google
Cloud Pub/Sub (pubsub.py) implement it; the printer and the room never know which they have.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from rabbitipc import StopFlag
from rabbitipc.errors import FatalError
from rabbitipc.owned import Closed, Owned

from .events import ChatMessage, Status

LOGGER = logging.getLogger(__name__)

Event = ChatMessage | Status
OnEvent = Callable[[Event], None]


class ChatBackend(Protocol):
    #: The room's name: the exchange (RabbitMQ) or the topic (Pub/Sub).
    room: str
    #: Where the chat lives, safe to show (no password): a URL or a Pub/Sub topic path.
    where: str
    #: The server's name for this program's user, which others see beside the chat name ("": none).
    user: str
    #: Whether listen() gives a late joiner the last messages of the room.
    keeps_history: bool

    def send(self, message: ChatMessage) -> None:
        """Return once the server has the message; raise FatalError when it cannot be sent."""

    def listen(self, stop: StopFlag, history: int, on_event: OnEvent) -> None:
        """Call on_event with the last `history` messages, then every new one, until stop is set."""

    def close(self) -> None:
        """Release connections and anything created for this program (a subscription)."""


class Outbox:
    """Sends from one thread of its own, in order, so a UI never waits for the server.

    pika connections belong to one thread (rabbitipc.owned); posting from the UI thread only enqueues.
    A FatalError (refused permissions, server gone for the retry budget) goes to on_error,
    and the outbox stops sending.
    """

    def __init__(self, backend: ChatBackend, on_error: Callable[[FatalError], None],
                 on_sent: Callable[[ChatMessage], None] | None = None) -> None:
        self.backend = backend
        self.on_error = on_error
        self.on_sent = on_sent
        self._unsent: list[ChatMessage] = []  # posted, not yet confirmed by the server
        self._lock = threading.Lock()  # _unsent changes on the poster's thread and on ours
        self._owner = Owned("chat-outbox")
        self._owner.start(self._run)

    def post(self, message: ChatMessage) -> Future | None:
        """Hand the message to the sending thread; the future is done once the server has it (None after close())."""
        with self._lock:
            self._unsent.append(message)
        try:
            return self._owner.submit(lambda: self._send(message))
        except Closed:
            return None  # never sent: it stays among the unsent

    @property
    def pending(self) -> int:
        return len(self._unsent)

    def unsent(self) -> list[ChatMessage]:
        """The messages posted and not (yet) confirmed, oldest first."""
        with self._lock:
            return list(self._unsent)

    def _send(self, message: ChatMessage) -> None:
        self.backend.send(message)
        with self._lock:
            self._unsent.remove(message)
        if self.on_sent is not None:
            self.on_sent(message)

    def _run(self) -> None:
        while self._owner.wait():
            try:
                self._owner.run_pending()
            except FatalError as exc:
                self.on_error(exc)
                return
            except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed
                LOGGER.exception("sending failed")
                self.on_error(FatalError(f"sending failed: {exc.__class__.__name__}: {exc}"))
                return

    def close(self, timeout: float = 10.0) -> bool:
        """Send what was posted (up to timeout seconds); True when everything went out."""
        self._owner.close()
        return self._owner.join(timeout)
