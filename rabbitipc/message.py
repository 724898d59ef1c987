"""The message schema: what the sender puts on the wire and how the receiver reads any body.

Our messages are JSON objects with id, seq, sent_at, host and payload. Bodies from other
clients (the management UI, the RabbitMQ tutorial's send.py) are not errors: they are shown
as text, escaped and truncated so one message is always one log line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import socket
import time
from dataclasses import dataclass

import pika

from .names import BODY_DIGEST_HEADER
from .wire import plain_json_join as _plain_join
from .wire import plain_json_str as _plain_str

CONTENT_TYPE = "application/json"
PERSISTENT = pika.DeliveryMode.Persistent
TRANSIENT = pika.DeliveryMode.Transient
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_RAW_DECODE = json.JSONDecoder().raw_decode
_QUOTE = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) quotes strings with
SCHEMA_FIELDS = {"id": str, "seq": int, "sent_at": (int, float), "host": str, "payload": str}
#: Payloads at least this long (characters, or bytes of a body) take the plain-text paths below: for a
#: 64 KiB payload json's own string escaper and scanner cost 130 and 55 us, the check (wire.plain_json_text)
#: about 3 compiled and 35 in pure Python (measured).
PLAIN_MIN = 256
_PAYLOAD_MARK = b',"payload":"'
#: Every combination of exact field types the schema allows (bool, an int subclass, is not one).
_VALID_TYPES = set(itertools.product(*(kind if isinstance(kind, tuple) else (kind,)
                                        for kind in SCHEMA_FIELDS.values())))


class NotOurMessage(ValueError):
    """The body is not a rabbitipc JSON message; str() says why in a few words."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message of ours: unique id, sender's sequence number, send time, host, payload."""

    id: str
    seq: int
    sent_at: float
    host: str
    payload: str

    @classmethod
    def new(cls, seq: int, host: str, payload: str) -> Message:
        # 128 random bits as 32 hex digits, like uuid4().hex at a quarter of the cost.
        return cls(id=os.urandom(16).hex(), seq=seq, sent_at=time.time(), host=host, payload=payload)

    def as_dict(self) -> dict:
        # A dict literal, not dataclasses.asdict (which deep-copies): this runs per message.
        return {"id": self.id, "seq": self.seq, "sent_at": self.sent_at, "host": self.host, "payload": self.payload}

    def body(self) -> bytes:
        """Compact UTF-8 JSON, the same bytes json.dumps gives, built without a per-call encoder object."""
        if type(self.seq) is int and type(self.sent_at) is float and math.isfinite(self.sent_at):
            head = '{"id":%s,"seq":%d,"sent_at":%r,"host":%s,"payload":' % (
                _QUOTE(self.id), self.seq, self.sent_at, _QUOTE(self.host))
            payload = self.payload
            if type(payload) is str and len(payload) >= PLAIN_MIN:
                body = _plain_join((head + '"').encode(), payload, b'"}')  # nothing to escape: the payload as it is
                if body is not None:
                    return body
            return (head + _QUOTE(payload) + "}").encode()
        return _ENCODE(self.as_dict()).encode()

    def properties(self, persistent: bool = True, body_digest: str | None = None) -> pika.BasicProperties:
        """AMQP properties: persistent (unless asked not to), typed, with the id where management tools show it.

        `body_digest` (payload_digest(), for an id a client chose) goes in the BODY_DIGEST_HEADER header.

        Kept to these four on purpose: with a fifth (app_id) the broker spent a third more CPU
        per persistent message (80 against 60 us, 50,000 published alone, RabbitMQ 3.10). The
        likely cause: the encoded properties then pass 64 bytes, Erlang's limit for small binaries.
        """
        return pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT if persistent else TRANSIENT,
            message_id=self.id,
            timestamp=int(self.sent_at) if 0 <= self.sent_at < 2**63 else None,  # AMQP: 64-bit seconds
            headers=None if body_digest is None else {BODY_DIGEST_HEADER: body_digest},
        )

    @classmethod
    def parse(cls, body: bytes) -> Message:
        """Decode a body of ours, or raise NotOurMessage saying what is wrong with it."""
        try:
            data = _loads(body)
        except ValueError as exc:  # (RecursionError, nesting deeper than the stack, is the caller's: dead-letter)
            raise NotOurMessage(f"not JSON ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise NotOurMessage(f"JSON {type(data).__name__}, not an object")
        fields = tuple(map(data.get, SCHEMA_FIELDS))
        if tuple(map(type, fields)) not in _VALID_TYPES:  # the usual case is checked in one go
            for name, kind in SCHEMA_FIELDS.items():
                value = data.get(name)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise NotOurMessage(f"field {name!r} missing or not {getattr(kind, '__name__', 'a number')}")
        sent_at = fields[2]
        if type(sent_at) is not float or not math.isfinite(sent_at):
            # JSON allows NaN, Infinity and integers of any size: the time must be a finite float.
            try:
                sent_at = float(sent_at)
            except OverflowError:
                sent_at = math.inf
            if not math.isfinite(sent_at):
                raise NotOurMessage("field 'sent_at' not a finite number")
            fields = fields[:2] + (sent_at,) + fields[3:]
        return cls(*fields)


def payload_digest(payload: str) -> str:
    """What BODY_DIGEST_HEADER carries: the SHA-256 of the payload's UTF-8 text, in hex."""
    return hashlib.sha256(payload.encode()).hexdigest()


def _loads(body: bytes) -> object:
    """json.loads, with quicker paths for what our sender writes (UTF-8, nothing around the object)."""
    if len(body) >= PLAIN_MIN:
        data = _loads_plain_payload(body)
        if data is not None:
            return data
    try:
        text = body.decode()
        data, end = _RAW_DECODE(text)
        if end == len(text):
            return data
    except ValueError:  # not UTF-8, not JSON, or space around it: json.loads decides (and explains)
        pass
    return json.loads(body)


def _loads_plain_payload(body: bytes) -> dict | None:
    """The object of a body ending in ',"payload":"<text needing no escape>"}', else None (not that form).

    Sound because the text holds no quote: when what precedes it parses with an empty payload,
    the whole body parses to the same object with this payload (the last "payload" wins in both),
    so json scans only the short head, not a long payload.
    """
    if body[:2] != b'{"' or body[-2:] != b'"}':
        return None
    mark = body.find(_PAYLOAD_MARK)
    if mark < 0:
        return None
    try:
        text = _plain_str(memoryview(body)[mark + len(_PAYLOAD_MARK):-2])  # checked and decoded in one pass
        if text is None:
            return None
        data = json.loads(body[:mark] + b',"payload":""}')
    except ValueError:
        return None  # the whole body's own parse gives the error (or, for a bad head, the answer)
    if type(data) is not dict:
        return None
    data["payload"] = text
    return data


#: Characters that reorder or hide what follows them on screen (bidirectional overrides and isolates):
#: escaped too, so received text cannot make a line read as something else.
_BIDI = frozenset((0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def printable(text: str, limit: int | None = 120) -> str:
    """Escape control characters and truncate, so any text fits on one line of a log or a terminal.

    C0 (ESC included), DEL, C1, the line and paragraph separators and the bidirectional controls
    become visible escapes (\\x1b, \\n, \\u202e); other text, accents and emoji included, stays as
    it is. limit=None keeps the whole text.
    """
    out = []
    for char in text if limit is None else text[:limit]:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{code:02x}"))
        elif code in (0x2028, 0x2029) or code in _BIDI:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    if limit is not None and len(text) > limit:
        out.append(f"...(+{len(text) - limit} chars)")
    return "".join(out)


def describe_body(body: bytes, limit: int = 120) -> str:
    """A one-line, escaped, truncated rendering of any body, text or binary."""
    return printable(body.decode("utf-8", errors="replace"), limit)


class Stamper:
    """Makes one process's messages: numbered from 1 in the order made, stamped with the host name."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host or socket.gethostname()
        self._seq = itertools.count(1)

    def __call__(self, payload: str) -> Message:
        return Message.new(next(self._seq), self.host, payload)
