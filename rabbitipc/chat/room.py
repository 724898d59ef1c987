"""`room`: the full-screen chat. Messages from everyone scroll above an input line.

The top line says where the room is and whether the server is there; while it is away it
says so and that the program is reconnecting, and typed lines wait in the outbox until it
is back. Entering and leaving are announced to everyone (`* alice joined`). A late joiner
first sees the last --history messages, when the backend keeps them.

Names and messages are shown escaped (ChatMessage.line()), and the top line starts with the
name as the others see it: `alice` when the server vouches for it, `guest (as alice?)` when not.

Textual runs the screen; the backend listens on a thread of its own and hands each event to
the UI with call_from_thread; the Outbox sends from another, so the screen never waits.
"""

from __future__ import annotations

import asyncio
import signal
import threading

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input, RichLog, Static

from rabbitipc import StopFlag
from rabbitipc.errors import FatalError

from .backend import ChatBackend, Event, Outbox
from .events import ChatMessage, Kind, Link, Status, shown_name
from .printer import clock

LEAVE_TIMEOUT = 5.0  # seconds the "left" notice and unsent lines get to go out when leaving


class ChatRoom(App):
    """The chat room of one user on one backend."""

    TITLE = "rabbitipc chat"
    CSS = """
    #status { height: 1; background: $success-darken-2; color: $text; padding: 0 1; }
    #status.away { background: $error; }
    #messages { height: 1fr; border: none; }
    #entry { dock: bottom; }
    """
    BINDINGS = [
        Binding("ctrl+c", "leave", "leave", priority=True),
        Binding("ctrl+q", "leave", "leave", priority=True),
    ]

    def __init__(self, backend: ChatBackend, username: str, history: int = 20) -> None:
        super().__init__()
        self.backend = backend
        self.username = username
        self.history = history
        self.stop = StopFlag()
        self.error: FatalError | None = None
        self.unsent = 0  # typed lines still unsent when the room closed (the server was away)
        self.shown: list[str] = []  # every line written to the message area, as the user reads it
        self.status_line = "connecting"
        self.away = False
        self._outbox: Outbox | None = None
        self._listener: threading.Thread | None = None
        self._joined = False  # "joined" posted (see on_mount)

    def compose(self) -> ComposeResult:
        yield Static(self._status_text(f"connecting to {self.backend.where}"), id="status")
        yield RichLog(id="messages", wrap=True, markup=False, highlight=False, min_width=20)
        yield Input(placeholder="Type a message, Enter sends; Ctrl+C or /quit leaves", id="entry")

    # -- lifecycle -------------------------------------------------------------------
    def on_mount(self) -> None:
        self.query_one("#entry", Input).focus()
        if not self.backend.keeps_history:
            self._write("* this server keeps no history: you see what is said from now on")
        self._outbox = Outbox(self.backend, self._from_thread(self._fail), self._from_thread(self._sent))
        self._listener = threading.Thread(target=self._listen, name="chat-listener", daemon=True)
        self._listener.start()
        if self.backend.keeps_history:  # the room's history keeps it: posted now, sent whenever the server is there
            self._announce()
        # else (Pub/Sub) at the listener's first CONNECTED (show): a subscription gets nothing published
        # before it exists, and under load "joined" could beat the listener's own subscription.
        if not self.is_headless:  # SIGTERM leaves the room as Ctrl+C does: with a "left" notice
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.action_leave)
            except (RuntimeError, NotImplementedError, ValueError):
                pass  # not the main thread: the signal keeps its default

    def action_leave(self) -> None:
        self.exit(return_code=0)

    async def on_unmount(self) -> None:
        await asyncio.to_thread(self._leave)

    def _leave(self) -> None:
        """Say goodbye (unless sending already failed), flush the outbox, stop listening."""
        if self._outbox is not None:
            if self.error is None:
                self._outbox.post(ChatMessage.new(self.username, kind=Kind.LEFT))
            if not self._outbox.close(LEAVE_TIMEOUT):  # the server is away: say what did not go out
                self.unsent = sum(message.kind is Kind.TEXT for message in self._outbox.unsent())
        self.stop.set("left the room")
        if self._listener is not None:
            self._listener.join(LEAVE_TIMEOUT)
        self.backend.close()

    def _listen(self) -> None:
        """Listener thread: the backend's events, handed to the UI thread."""
        show = self._from_thread(self.show)
        try:
            self.backend.listen(self.stop, self.history, show)
        except FatalError as exc:
            self._from_thread(self._fail)(exc)

    def _from_thread(self, method):
        """method, callable from another thread; a no-op once the app is gone."""

        def call(*args) -> None:
            if self.stop.is_set() or not self.is_running:
                return
            try:
                self.call_from_thread(method, *args)
            except RuntimeError:
                pass  # the app closed meanwhile

        return call

    # -- what the user sees ------------------------------------------------------------
    def _write(self, line: str) -> None:
        self.shown.append(line)
        self.query_one("#messages", RichLog).write(Text(line))

    def show(self, event: Event) -> None:
        if isinstance(event, Status):
            self.away = event.link is not Link.CONNECTED
            if not self.away:
                self._announce()
            self.status_line = event.line()
            self._refresh_status()
            return
        self._write(f"{clock(event.sent_at)} {event.line()}")

    def _announce(self) -> None:
        """Post "joined", once."""
        if not self._joined and self._outbox is not None:
            self._joined = True
            self._outbox.post(ChatMessage.new(self.username, kind=Kind.JOINED))

    def _status_text(self, line: str) -> Text:
        return Text(f"{shown_name(self.username, self.backend.user)} in {self.backend.room}: {line}")

    def _refresh_status(self) -> None:
        """The status line: the link, and how many typed lines still wait for the server."""
        waiting = self._outbox.pending if self._outbox is not None else 0
        suffix = f" ({waiting} to send)" if waiting and self.away else ""
        status = self.query_one("#status", Static)
        status.update(self._status_text(self.status_line + suffix))
        status.set_class(self.away, "away")

    def _sent(self, _message: ChatMessage) -> None:
        self._refresh_status()

    def _fail(self, exc: FatalError) -> None:
        self.error = exc
        self.exit(return_code=exc.exit_code)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        if text in ("/quit", "/exit"):
            self.exit(return_code=0)
            return
        self._outbox.post(ChatMessage.new(self.username, text))
        self._refresh_status()
