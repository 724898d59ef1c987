"""What travels in the chat: a ChatMessage (someone said something, joined or left), and
the Status events a backend reports while it connects, loses the server and gets it back.

The body is JSON with the seed's two fields, `username` and `message`, plus `kind`, `id`
and `sent_at`. Bodies from other clients (the seed's own scripts, the management UI) are
read too: JSON with `username`/`message` keeps them, anything else is shown as text from "?".

Everything in a message came from the network: what the chat shows of it (line(), who(),
text()) is escaped by rabbitipc.message.printable, the function the receiver's log lines use,
so no message or name can move the cursor, clear a screen or retitle a terminal.

A name is shown as verified only when the server vouches for it: `user_id` is the broker user
who published the message, which RabbitMQ checks (docs/chat.md). `alice` means broker user
alice said it as alice; `guest (as alice?)` means broker user guest said it and called itself
alice; `? (as alice?)` means no server vouches for anyone (Pub/Sub, or a client that set no
user_id).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum

from rabbitipc.message import printable

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
    #: The broker user who published it, as the server checked it ("": no server vouches for a name).
    user_id: str = ""

    @classmethod
    def new(cls, username: str, message: str = "", kind: Kind = Kind.TEXT) -> ChatMessage:
        return cls(username, message, kind, os.urandom(8).hex(), time.time())

    def body(self) -> bytes:
        return json.dumps({"id": self.id, "kind": self.kind.value, "username": self.username,
                           "message": self.message, "sent_at": self.sent_at}, ensure_ascii=False).encode()

    @classmethod
    def parse(cls, body: bytes, fallback_time: float | None = None, user_id: str = "") -> ChatMessage:
        """Any body: ours, the seed's {"username", "message"}, or plain text (shown from "?").

        user_id: the publisher as the server checked it (RabbitMQ's user_id property), if any."""
        when = time.time() if fallback_time is None else fallback_time
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls("?", body.decode("utf-8", errors="replace"), Kind.TEXT, "", when, user_id)
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
            user_id=user_id,
        )

    def who(self) -> str:
        """The sender as shown: `alice` when the server vouches for the name, else `<broker user or ?> (as alice?)`."""
        return shown_name(self.username, self.user_id)

    def text(self) -> str:
        """The message, escaped: control characters visible, never acted on by a terminal."""
        return printable(self.message, None)

    def line(self) -> str:
        """How the chat shows it: `alice: hello`, `* bob joined`, `* bob left` (escaped)."""
        if self.kind is Kind.TEXT:
            return f"{self.who()}: {self.text()}"
        return f"* {self.who()} {self.kind.value}"


def shown_name(name: str, user_id: str) -> str:
    """A chat name as others see it: verified (the broker user itself) or marked with who vouches for it.

    The part before " (as " is always the server's word (or "?"), never the sender's claim.
    """
    claim = printable(name, MAX_USERNAME)
    if user_id and name == user_id:
        return claim
    return f"{printable(user_id, 64) or '?'} (as {claim}?)"


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
        """The status as shown, escaped (a reason may quote the server)."""
        if self.link is Link.CONNECTED:
            return f"connected to {printable(self.where, None)}"
        detail = printable(self.detail, 300)
        return f"server away, reconnecting: {detail}" if detail else "server away, reconnecting"


def username(text: str) -> str:
    """A chat name: 1 to 32 printable characters (a config validator: raises ValueError)."""
    name = text.strip()
    if not name or len(name) > MAX_USERNAME or not name.isprintable():
        raise ValueError(f"must be 1 to {MAX_USERNAME} printable characters")
    return name
