"""The per-message AMQP 0-9-1 hot path: Basic.Publish frames out, deliveries and confirms in.

pika stays for connecting, negotiating, channels and everything rare; this package does the
per-message work in one call each way, compiled (the `_speedups` C extension, built by
`pip install .` where a C compiler is present) or in pure Python (`_pure`, the fallback, chosen
when the extension is not built or when RABBITIPC_PURE_PYTHON=1). Both give pika's bytes.

Out: ``PublishTemplate(channel, exchange, routing_key, mandatory=False, *, frame_max=131072,
content_type=None, delivery_mode=None)`` is prepared once per route and connection;
``template.encode(body, message_id=None, timestamp=None, headers=None) -> bytes`` gives the
method, content header and body frames (split at frame_max) of one message,
``template.encode_into(out: bytearray, ...) -> int`` appends them to an output buffer, and
``template.encode_head_into(out, body, ...) -> int`` appends those of a message whose body fits one
frame up to the body's bytes, so that the caller hands the body itself to the socket (a gathered
write), then the frame end byte 0xCE; both return the size of the whole message.

In: ``decode(data, start=0, end=None) -> (events, end, status)`` decodes the frames in
data[start:end] (end: the end of the data) into a list of event tuples, bodies copied out (so a
read buffer can be reused), stopping at the end of the data (status DONE), at a frame or message not
yet complete (PARTIAL: keep data[end:] and call again with more), or at a frame it leaves to
pika (OTHER: data[end:] starts with it). The events:

- ``(DELIVER, channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key, properties, body)``
- ``(ACK, channel, delivery_tag, multiple)``
- ``(NACK, channel, delivery_tag, multiple, requeue)``
- ``(RETURN, channel, reply_code, reply_text, exchange, routing_key, properties, body)``

properties is a pika.spec.BasicProperties; short strings are str, or bytes when not UTF-8 (as pika).

``Decoder().decode(data, start=0, end=None)`` is the same for one stream, read after read: after
PARTIAL in the middle of a message's body frames it resumes where it stopped (the message known
again by its method and header frames), so a message of many frames arriving in many reads is
walked once rather than once per read; ``frames_walked`` counts the body frame heads it read.

And for the message body (rabbitipc.message): ``plain_json_text(data) -> bool``, True when UTF-8
bytes need no escape inside a JSON string (no control character, quote or backslash), so a long
payload is copied into or out of the JSON body as it is; ``plain_json_str(data) -> str | None`` is
``str(data, "utf-8")`` when ``plain_json_text(data)``, else None, in one pass; and
``plain_json_join(head, text, tail) -> bytes | None`` is ``head + text.encode() + tail`` when the
text needs no escape, else None, in one copy.
"""

from __future__ import annotations

import enum
import importlib
import logging
import os

LOGGER = logging.getLogger(__name__)

#: Set to 1 (or any value but 0 or empty) to use the pure-Python codec even where the extension is built.
PURE_PYTHON_ENV = "RABBITIPC_PURE_PYTHON"


class Implementation(enum.Enum):
    """Which codec is active."""

    C = "C extension"
    PYTHON = "pure Python"


#: What both implementations provide.
_INTERFACE = ("PublishTemplate", "Decoder", "decode", "plain_json_text", "plain_json_str", "plain_json_join", "DELIVER",
              "ACK", "NACK", "RETURN", "DONE", "PARTIAL", "OTHER", "FRAME_MIN_SIZE")
_TEMPLATE_METHODS = ("encode", "encode_into", "encode_head_into")


def _select():
    """The codec module to use, which one it is, and why."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        from . import _pure
        return _pure, Implementation.PYTHON, f"{PURE_PYTHON_ENV} is set"
    try:
        _speedups = importlib.import_module(f"{__name__}._speedups")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}._speedups":
            raise
        from . import _pure
        return _pure, Implementation.PYTHON, "the C extension is not built: no C compiler when installed?"
    except ImportError as exc:  # built, but for another Python: say so rather than hide it
        from . import _pure
        return _pure, Implementation.PYTHON, f"the C extension does not load: {exc}"
    missing = [name for name in _INTERFACE if not hasattr(_speedups, name)]
    missing += [f"PublishTemplate.{name}" for name in _TEMPLATE_METHODS
                if not hasattr(getattr(_speedups, "PublishTemplate", None), name)]
    if missing:  # built in place from an older source: the pure one is complete, and the log says what to do
        from . import _pure
        return _pure, Implementation.PYTHON, (f"the C extension is out of date (no {', '.join(missing)}): "
                                              "pip install -e . again")
    return _speedups, Implementation.C, "built"


_impl, _active, _why = _select()

PublishTemplate = _impl.PublishTemplate
decode = _impl.decode
Decoder = _impl.Decoder
plain_json_text = _impl.plain_json_text
plain_json_str = _impl.plain_json_str
plain_json_join = _impl.plain_json_join
DELIVER, ACK, NACK, RETURN = _impl.DELIVER, _impl.ACK, _impl.NACK, _impl.RETURN
DONE, PARTIAL, OTHER = _impl.DONE, _impl.PARTIAL, _impl.OTHER
FRAME_MIN_SIZE = _impl.FRAME_MIN_SIZE


def implementation() -> Implementation:
    """The codec in use: Implementation.C or Implementation.PYTHON."""
    return _active


def describe() -> str:
    """One phrase for a log line: which codec is active, and why."""
    return f"wire codec: {_active.value} ({_why})"


__all__ = ["ACK", "DELIVER", "DONE", "Decoder", "FRAME_MIN_SIZE", "NACK", "OTHER", "PARTIAL", "PURE_PYTHON_ENV",
           "RETURN", "Implementation", "PublishTemplate", "decode", "describe", "implementation", "plain_json_join",
           "plain_json_str", "plain_json_text"]
