"""The pure-Python wire codec: the fallback of the C extension, with the same interface and bytes.

See rabbitipc.wire for the interface. Kept plain (struct, precomputed template bytes) so the
fallback costs no more than pika's own codec; tests/test_wire.py holds both to pika's bytes.
"""

from __future__ import annotations

import operator
import struct

from pika import data as _data
from pika import exceptions as _exceptions
from pika import spec as _spec

DELIVER, ACK, NACK, RETURN = 1, 2, 3, 4
DONE, PARTIAL, OTHER = 0, 1, 2
FRAME_MIN_SIZE = 4096

_FLAG_CONTENT_TYPE = 1 << 15
_FLAG_HEADERS = 1 << 13
_FLAG_DELIVERY_MODE = 1 << 12
_FLAG_MESSAGE_ID = 1 << 7
_FLAG_TIMESTAMP = 1 << 6

_FRAME_HEAD = struct.Struct(">BHI")
_HEADER_HEAD = struct.Struct(">BHIHHQH")  # frame head, class 60, weight 0, body size, property flags
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_BODY_HEAD = struct.Struct(">BHI")
_END = b"\xce"
_BasicProperties = _spec.BasicProperties


def _short(value: str | bytes, what: str) -> bytes:
    """An AMQP short string (length octet, then the UTF-8 bytes), as pika's encode_short_string; str or bytes
    only (bytes(5) would be five NUL bytes, and bytes(10**9) a gigabyte)."""
    if isinstance(value, str):
        raw = value.encode()
    elif isinstance(value, bytes):
        raw = bytes(value)
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if len(raw) > 255:
        raise _exceptions.ShortStringTooLong(raw)
    return bytes((len(raw),)) + raw


class PublishTemplate:
    """Basic.Publish to one route on one channel, encoded once; encode() adds properties and body."""

    def __init__(self, channel: int, exchange: str | bytes, routing_key: str | bytes, mandatory: bool = False,
                 *, frame_max: int = 131072, content_type: str | bytes | None = None,
                 delivery_mode: int | None = None) -> None:
        # Checked in the C codec's order, and nothing changed unless all is well (as there).
        channel, mandatory, frame_max = operator.index(channel), bool(mandatory), operator.index(frame_max)
        if not 0 <= channel <= 0xFFFF:
            raise ValueError(f"channel {channel} is not in 0..65535")
        if frame_max < FRAME_MIN_SIZE or frame_max > 0xFFFFFFFF:
            raise ValueError(f"frame_max {frame_max} is not in {FRAME_MIN_SIZE}..4294967295")
        if delivery_mode is not None:
            delivery_mode = operator.index(delivery_mode)
            if not 0 <= delivery_mode <= 255:
                raise ValueError(f"delivery_mode {delivery_mode} is not an octet")
        payload = b"".join((struct.pack(">HHH", 60, 40, 0), _short(exchange, "exchange"),
                            _short(routing_key, "routing_key"), b"\x01" if mandatory else b"\x00"))
        flags = 0
        encoded_type = encoded_mode = b""
        if content_type is not None:
            flags |= _FLAG_CONTENT_TYPE
            encoded_type = _short(content_type, "content_type")
        if delivery_mode is not None:
            flags |= _FLAG_DELIVERY_MODE
            encoded_mode = bytes((delivery_mode,))
        self.channel, self.exchange, self.routing_key = channel, exchange, routing_key
        self.mandatory, self.frame_max = mandatory, frame_max
        self.content_type, self.delivery_mode = content_type, delivery_mode
        # What an encode takes from the template, in one read before anything else (user code run by the
        # headers' encode_table may call __init__ again: the message is still this template's, whole).
        self._fixed = (_FRAME_HEAD.pack(1, channel, len(payload)) + payload + _END, channel, frame_max - 8, flags,
                       encoded_type, encoded_mode)

    def encode(self, body: bytes, message_id: str | bytes | None = None, timestamp: int | None = None,
               headers: dict | None = None) -> bytes:
        """The method, content header and body frames of one message, as one bytes object."""
        out = bytearray()
        self._encode(out, body, message_id, timestamp, headers, False)
        return bytes(out)

    def encode_into(self, out: bytearray, body: bytes, message_id: str | bytes | None = None,
                    timestamp: int | None = None, headers: dict | None = None) -> int:
        """Append the frames of one message to `out`; returns how many bytes were appended."""
        return self._encode(out, body, message_id, timestamp, headers, False)

    def encode_head_into(self, out: bytearray, body: bytes, message_id: str | bytes | None = None,
                         timestamp: int | None = None, headers: dict | None = None) -> int:
        """Append the frames of one message whose body fits one frame (1 to frame_max - 8 bytes) up to its
        body's bytes: the body and the frame end byte (0xCE) are the caller's to send next, so a large body
        goes to the socket without a copy. Returns how many bytes the whole message takes."""
        return self._encode(out, body, message_id, timestamp, headers, True)

    def _encode(self, out: bytearray, body: bytes, message_id: str | bytes | None, timestamp: int | None,
                headers: dict | None, head_only: bool) -> int:
        # Everything is checked and encoded before the first byte goes into `out`, which is left as it was
        # on any error (as by the C codec).
        method, channel, chunk, flags, content_type, delivery_mode = self._fixed
        if type(out) is not bytearray and not isinstance(out, bytearray):
            raise TypeError(f"out must be a bytearray, not {type(out).__name__}")
        if type(body) is not bytes:  # any buffer, its size in bytes (an array('H') has two per item)
            view = memoryview(body)
            if not view.c_contiguous:
                raise BufferError("the body is not a contiguous buffer")
            body = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        length = len(body)
        props = [content_type]
        if headers is not None:
            flags |= _FLAG_HEADERS
            pieces: list[bytes] = []
            _data.encode_table(pieces, headers)
            props.extend(pieces)
        props.append(delivery_mode)
        if message_id is not None:
            flags |= _FLAG_MESSAGE_ID
            props.append(_short(message_id, "message_id"))
        if timestamp is not None:
            if not isinstance(timestamp, int):
                raise TypeError(f"timestamp must be an int, not {type(timestamp).__name__}")
            if not 0 <= timestamp <= 0xFFFFFFFFFFFFFFFF:
                raise OverflowError(f"timestamp {timestamp} does not fit 64 unsigned bits")
            flags |= _FLAG_TIMESTAMP
            props.append(_U64.pack(timestamp))
        if head_only and not 0 < length <= chunk:
            raise ValueError(f"a body of {length} bytes is not 1..{chunk} (one frame)")
        prop_bytes = b"".join(props)
        start = len(out)
        out += method  # the first write: an `out` that cannot grow (exported) raises here, unchanged
        try:
            out += _HEADER_HEAD.pack(2, channel, 14 + len(prop_bytes), 60, 0, length, flags)
            out += prop_bytes
            out += _END
            if length <= chunk:
                if length:
                    out += _BODY_HEAD.pack(3, channel, length)
                    if head_only:
                        return len(out) - start + length + 1
                    out += body
                    out += _END
            else:
                view = memoryview(body)
                for offset in range(0, length, chunk):
                    piece = view[offset:offset + chunk]
                    out += _BODY_HEAD.pack(3, channel, len(piece))
                    out += piece
                    out += _END
        except BaseException:  # MemoryError: no partial message left behind
            del out[start:]
            raise
        return len(out) - start


def _short_at(buf: bytes, pos: int, end: int) -> tuple[str | bytes, int]:
    """The short string at pos (str when UTF-8, else bytes, as pika decodes it) and the offset after it."""
    if pos >= end:
        raise IndexError(pos)
    size = buf[pos]
    stop = pos + 1 + size
    if stop > end:
        raise IndexError(pos)
    raw = buf[pos + 1:stop]
    try:
        return raw.decode("utf8"), stop
    except UnicodeDecodeError:
        return bytes(raw), stop


_SHORT, _OCTET, _U64_KIND, _TABLE = range(4)
#: BasicProperties fields in wire order: flag bit, attribute name, kind.
_FIELDS = tuple(zip(
    [1 << bit for bit in range(15, 1, -1)],
    ["content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id", "reply_to",
     "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"],
    [_SHORT, _SHORT, _TABLE, _OCTET, _OCTET, _SHORT, _SHORT, _SHORT, _SHORT, _U64_KIND, _SHORT, _SHORT, _SHORT,
     _SHORT]))
_NO_PROPERTIES = dict.fromkeys(name for _bit, name, _kind in _FIELDS)
_new_properties = object.__new__
#: The present fields of each flag word seen, so a message's properties cost one loop over those alone.
_PRESENT: dict[int, list[tuple[str, int]]] = {}


def _properties(buf: bytes, pos: int, end: int) -> _BasicProperties:
    """The BasicProperties in buf[pos:end], as pika's BasicProperties.decode gives them (IndexError if cut short).

    pika's decode tests all fourteen flags and its __init__ sets all fourteen attributes: this visits
    the present fields alone and sets them on a copy of an all-None dict.
    """
    if pos + 2 > end:
        raise IndexError(pos)
    flags = _U16.unpack_from(buf, pos)[0]
    pos += 2
    partial = flags
    while partial & 1:  # further flag words: no properties of Basic live there, pika reads and drops them
        if pos + 2 > end:
            raise IndexError(pos)
        partial = _U16.unpack_from(buf, pos)[0]
        pos += 2
    values = _NO_PROPERTIES.copy()
    fields = _PRESENT.get(flags)
    if fields is None:
        fields = _PRESENT[flags] = [(name, kind) for bit, name, kind in _FIELDS if flags & bit]
    for name, kind in fields:
        if kind == _SHORT:
            values[name], pos = _short_at(buf, pos, end)
        elif kind == _OCTET:
            if pos >= end:
                raise IndexError(pos)
            values[name] = buf[pos]
            pos += 1
        elif kind == _U64_KIND:
            if pos + 8 > end:
                raise IndexError(pos)
            values[name] = _U64.unpack_from(buf, pos)[0]
            pos += 8
        else:
            try:
                values[name], used = _data.decode_table(bytes(buf[pos:end]), 0)
            except Exception:  # struct.error and the like: malformed, pika's path decides
                raise IndexError(pos) from None
            pos += used
            if pos > end:
                raise IndexError(pos)
    properties = _new_properties(_BasicProperties)
    properties.__dict__ = values
    return properties


def _content(buf: bytes, start: int, pos: int, channel: int, total: int,
             state: Decoder | None) -> tuple[int, object, bytes, int] | int:
    """The header and body frames in buf[pos:total] after the method frame at buf[start:]: (status, properties,
    body, end) or a status. state: the caller's Decoder, whose walk of this message it resumes."""
    if pos + 7 > total:
        return PARTIAL
    kind, chan, hsize = _FRAME_HEAD.unpack_from(buf, pos)
    if kind != 2 or chan != channel or hsize < 14:
        return OTHER
    hend = pos + 7 + hsize
    if hend >= total:
        return PARTIAL
    if buf[hend] != 0xCE:
        return OTHER
    class_id, _weight, body_size = struct.unpack_from(">HHQ", buf, pos + 7)
    if class_id != 60:
        return OTHER
    header = pos + 19
    got = 0
    pos = first = hend + 1
    if state is not None and state._head is not None:
        head, state._head = state._head, None
        if len(head) == first - start and state._walked <= total - start and buf[start:first] == head:
            pos, got = start + state._walked, state._got
    heads = 0  # body frame heads read
    status = DONE
    while got < body_size:
        if pos + 7 > total:
            status = PARTIAL
            break
        heads += 1
        kind, chan, bsize = _FRAME_HEAD.unpack_from(buf, pos)
        if kind != 3 or chan != channel or got + bsize > body_size:
            status = OTHER
            break
        bend = pos + 7 + bsize
        if bend >= total:
            status = PARTIAL
            break
        if buf[bend] != 0xCE:
            status = OTHER
            break
        got += bsize
        pos = bend + 1
    if state is not None:
        state.frames_walked += heads
    if status != DONE:
        if status == PARTIAL and state is not None and pos > first:  # whole body frames walked: resume after them
            state._head, state._walked, state._got = bytes(buf[start:first]), pos - start, got
        return status
    # Body and properties are built only once the whole message is here: a large message arriving in many
    # reads is walked once (with a Decoder), not decoded each time. The body first, as in the C codec: nothing
    # that runs other Python code (pika's decode_table) comes between the walk and the copy.
    if pos - first == body_size + 8:  # one body frame (k frames take body_size + 8k bytes)
        body = bytes(buf[first + 7:pos - 1])
    elif pos == first:
        body = b""
    else:  # the frames walked, in this call or before it, each checked again (another thread may write)
        pieces = []
        at = first
        while at + 8 <= pos:
            size = _U32.unpack_from(buf, at + 3)[0]
            pieces.append(buf[at + 7:at + 7 + size])
            at += 8 + size
        body = b"".join(pieces)
        if at != pos or len(body) != body_size:
            return OTHER
    try:
        properties = _properties(buf, header, hend)
    except IndexError:  # a malformed header: pika's own path raises its error
        return OTHER
    return DONE, properties, body, pos


class Decoder:
    """decode() for one incoming stream: after PARTIAL, the next call resumes the message where this one
    stopped, so a message of many frames arriving in many reads is walked once, not once per read."""

    def __init__(self) -> None:
        # The message left PARTIAL: its method and header frames (None: none), the offset from its start up to
        # which its body frames were walked and the body bytes in them.
        self._head: bytes | None = None
        self._walked = self._got = 0
        #: Body frame heads read while looking for the end of a message, over the decoder's life.
        self.frames_walked = 0

    def decode(self, data: bytes | bytearray | memoryview, start: int = 0,
               end: int | None = None) -> tuple[list[tuple], int, int]:
        """As rabbitipc.wire.decode, resuming a message left PARTIAL by the previous call."""
        return _decode(data, start, end, self)


_JSON_SPECIAL = bytes(range(0x20)) + b'"\\'


def plain_json_text(data: bytes | bytearray | memoryview) -> bool:
    """True when data (UTF-8) goes into a JSON string as it is: no control character, quote or backslash."""
    if type(data) is memoryview:
        data = data.tobytes()
    return len(data.translate(None, _JSON_SPECIAL)) == len(data)


def plain_json_str(data: bytes | bytearray | memoryview) -> str | None:
    """str(data, 'utf-8') when plain_json_text(data), else None (UnicodeDecodeError when not UTF-8)."""
    return str(data, "utf-8") if plain_json_text(data) else None


def plain_json_join(head: bytes, text: str, tail: bytes) -> bytes | None:
    """head + text.encode() + tail when the text needs no escape inside a JSON string, else None."""
    data = text.encode()
    return b"".join((head, data, tail)) if plain_json_text(data) else None


def decode(data: bytes | bytearray | memoryview, start: int = 0,
           end: int | None = None) -> tuple[list[tuple], int, int]:
    """Decode the frames in data[start:end] into events; see rabbitipc.wire.decode."""
    return _decode(data, start, end, None)


def _decode(data: bytes | bytearray | memoryview, start: int, end: int | None,
            state: Decoder | None) -> tuple[list[tuple], int, int]:
    buf = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    total = len(buf)
    if end is not None:
        if not 0 <= end <= total:
            raise ValueError(f"end {end} is outside 0..{total}")
        total = end
    if not 0 <= start <= total:
        raise ValueError(f"start {start} is outside 0..{total}")
    events: list[tuple] = []
    pos = start
    unpack_head = _FRAME_HEAD.unpack_from
    while True:
        if pos + 7 > total:
            return events, pos, DONE if pos == total else PARTIAL
        kind, channel, size = unpack_head(buf, pos)
        end = pos + 7 + size
        if end >= total:
            return events, pos, PARTIAL
        if kind != 1 or size < 4 or buf[end] != 0xCE:
            return events, pos, OTHER
        method = _U32.unpack_from(buf, pos + 7)[0]
        body_at = pos + 11
        try:
            if method == 0x003C0050:  # Basic.Ack
                if size < 13:
                    return events, pos, OTHER
                events.append((ACK, channel, _U64.unpack_from(buf, body_at)[0], bool(buf[body_at + 8] & 1)))
                pos = end + 1
                continue
            if method == 0x003C0078:  # Basic.Nack
                if size < 13:
                    return events, pos, OTHER
                bits = buf[body_at + 8]
                events.append((NACK, channel, _U64.unpack_from(buf, body_at)[0], bool(bits & 1), bool(bits & 2)))
                pos = end + 1
                continue
            if method != 0x003C003C and method != 0x003C0032:
                return events, pos, OTHER
        except IndexError:
            return events, pos, OTHER
        # The content first: while a large message is still arriving, nothing is decoded.
        content = _content(buf, pos, end + 1, channel, total, state)
        if type(content) is int:
            return events, pos, content
        _status, properties, body, after = content
        try:
            if method == 0x003C003C:  # Basic.Deliver
                consumer_tag, at = _short_at(buf, body_at, end)
                if at + 9 > end:
                    return events, pos, OTHER
                tag = _U64.unpack_from(buf, at)[0]
                redelivered = bool(buf[at + 8] & 1)
                exchange, at = _short_at(buf, at + 9, end)
                routing_key, at = _short_at(buf, at, end)
                head = (DELIVER, channel, consumer_tag, tag, redelivered, exchange, routing_key)
            else:  # Basic.Return
                if body_at + 2 > end:
                    return events, pos, OTHER
                reply_code = _U16.unpack_from(buf, body_at)[0]
                reply_text, at = _short_at(buf, body_at + 2, end)
                exchange, at = _short_at(buf, at, end)
                routing_key, at = _short_at(buf, at, end)
                head = (RETURN, channel, reply_code, reply_text, exchange, routing_key)
        except IndexError:
            return events, pos, OTHER
        pos = after
        events.append(head + (properties, body))
