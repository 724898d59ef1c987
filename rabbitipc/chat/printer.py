"""`listen`: the seed's subscriber, printing each message as a line, or as a live `rich` table.

print: one line per message on stdout (`12:03:04 alice: hello`), link changes logged on stderr.
rich:  a table of time, user and message that keeps the latest rows on screen, with the link
       status under it, redrawn in place (rich.live).

Both show names and text escaped (ChatMessage.who(), text(), line()): what arrives never
reaches the terminal as control characters.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from rabbitipc import StopFlag

from .backend import Event
from .events import ChatMessage, Kind, Link, Status

LOGGER = logging.getLogger(__name__)


def clock(sent_at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(sent_at))


class Counter:
    """Sets the stop flag after `count` text messages (None: never)."""

    def __init__(self, stop: StopFlag, count: int | None) -> None:
        self.stop, self.count, self.seen = stop, count, 0

    def saw(self, event: Event) -> None:
        if isinstance(event, ChatMessage) and event.kind is Kind.TEXT:
            self.seen += 1
            if self.count is not None and self.seen >= self.count:
                self.stop.set(f"--count {self.count} reached")


def print_events(stop: StopFlag, count: int | None, out: TextIO | None = None) -> Callable[[Event], None]:
    """An on_event that prints one line per message."""
    counter = Counter(stop, count)
    link: list[Link | None] = [None]

    def on_event(event: Event) -> None:
        if isinstance(event, Status):
            if event.link is not link[0]:  # each retry already has its own log line
                link[0] = event.link
                (LOGGER.info if event.link is Link.CONNECTED else LOGGER.warning)("%s", event.line())
            return
        print(f"{clock(event.sent_at)} {event.line()}", file=out or sys.stdout, flush=True)
        counter.saw(event)

    return on_event


class LiveTable:
    """The `rich` mode: the latest rows of (time, user, message), and the link status below."""

    def __init__(self, stop: StopFlag, count: int | None, rows: int | None = None) -> None:
        from rich.console import Console

        self.console = Console()
        self.rows = rows or max(3, self.console.size.height - 7)
        self.messages: deque[ChatMessage] = deque(maxlen=self.rows)
        self.status = "connecting"
        self.counter = Counter(stop, count)
        self.live = None

    def table(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title="chat", caption=self.status, expand=True)
        table.add_column("time", width=8, no_wrap=True)
        table.add_column("user", style="bold cyan", max_width=20, no_wrap=True)
        table.add_column("message", overflow="fold", ratio=1)
        for message in self.messages:
            # Text(), not markup: what people type is shown as typed, brackets and all, control characters escaped.
            text = Text(message.text()) if message.kind is Kind.TEXT else Text(message.kind.value, style="italic")
            table.add_row(clock(message.sent_at), Text(message.who()), text)
        return table

    def __enter__(self) -> LiveTable:
        from rich.live import Live

        self.live = Live(self.table(), console=self.console, refresh_per_second=8, screen=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def on_event(self, event: Event) -> None:
        if isinstance(event, Status):
            self.status = event.line()
        else:
            self.messages.append(event)
            self.counter.saw(event)
        self.live.update(self.table())
