"""What travels in the chat: a ChatMessage (someone said something, joined or left), and
the Status events a backend reports while it connects, loses the server and gets it back.

The body is JSON with the seed's two fields, `username` and `message`, plus `kind`, `id`
and `sent_at`. Bodies from other clients (the seed's own scripts, the management UI) are
read too: JSON with `username`/`message` keeps them, anything else is shown as text from "?".
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum

MAX_USERNAME = 32


class Kind(StrEnum):
    """What a chat message says: a line of text, or that its user entered or left the room."""

    TEXT = "text"
    JOINED = "joined"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    username: str
    message: str
    kind: Kind = Kind.TEXT
    id: str = ""
    sent_at: float = 0.0

    @classmethod
    def new(cls, username: str, message: str = "", kind: Kind = Kind.TEXT) -> ChatMessage:
        return cls(username, message, kind, os.urandom(8).hex(), time.time())

    def body(self) -> bytes:
        return json.dumps({"id": self.id, "kind": self.kind.value, "username": self.username,
                           "message": self.message, "sent_at": self.sent_at}, ensure_ascii=False).encode()

    @classmethod
    def parse(cls, body: bytes, fallback_time: float | None = None) -> ChatMessage:
        """Any body: ours, the seed's {"username", "message"}, or plain text (shown from "?")."""
        when = time.time() if fallback_time is None else fallback_time
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls("?", body.decode("utf-8", errors="replace"), Kind.TEXT, "", when)
        try:
            kind = Kind(data.get("kind", "text"))
        except ValueError:
            kind = Kind.TEXT
        sent_at = data.get("sent_at")
        return cls(
            username=str(data.get("username", "?"))[:MAX_USERNAME],
            message=str(data.get("message", "")),
            kind=kind,
            id=str(data.get("id", "")),
            sent_at=float(sent_at) if isinstance(sent_at, int | float) and not isinstance(sent_at, bool) else when,
        )

    def line(self) -> str:
        """How the chat shows it: `alice: hello`, `* bob joined`, `* bob left`."""
        if self.kind is Kind.TEXT:
            return f"{self.username}: {self.message}"
        return f"* {self.username} {self.kind.value}"


class Link(StrEnum):
    """The state of the connection to the chat server."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True, slots=True)
class Status:
    """The backend's connection changed: connected to `where`, or away and retrying (`detail` says why)."""

    link: Link
    where: str = ""
    detail: str = ""

    def line(self) -> str:
        if self.link is Link.CONNECTED:
            return f"connected to {self.where}"
        return f"server away, reconnecting: {self.detail}" if self.detail else "server away, reconnecting"


def username(text: str) -> str:
    """A chat name: 1 to 32 printable characters (a config validator: raises ValueError)."""
    name = text.strip()
    if not name or len(name) > MAX_USERNAME or not name.isprintable():
        raise ValueError(f"must be 1 to {MAX_USERNAME} printable characters")
    return name
