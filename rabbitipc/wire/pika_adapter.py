"""The one place rabbitipc reaches into pika's private API: the per-message path under pika.

pika connects, negotiates, opens channels and does everything rare; once a connection is open,
`WireConnection` takes the per-message work off pika's pure-Python codec:

- out: `publish()` encodes Basic.Publish + content header + body with a `rabbitipc.wire`
  PublishTemplate (one per channel, route and fixed properties, built on the connection, so a
  reconnect builds new ones with the new frame_max) straight into the output buffer, where
  pika's own frames also go, in call order. With `hold_output` what is written is held until
  `release()` (the publishing engine calls it before its loop waits) and a large body is not
  copied: the buffer holds the frames around it and the body object itself is queued, and the
  socket takes them all in one gathered write (sendmsg) instead of pika's send per buffer.
- in: the data pika reads is decoded with a `rabbitipc.wire.Decoder` in batches: Basic.Deliver
  and Basic.Return go to the channel's own `_on_deliver`/`_on_return` (so pika's checks on
  cancelled and unknown consumer tags still apply), in order with everything else; any frame
  the codec leaves (OTHER: heartbeats, channel methods, Basic.Ack/Nack too, as confirms come in
  batches and need pika's callback routing) goes through pika's generic frame path. The socket
  is read with recv_into straight into one reused input buffer, up to 256 KiB at a time (pika
  reads 4 KiB into a fresh bytes each time): a payload byte is copied once from the kernel and
  once out into its message body, and no read allocates.

The asynchronous publisher (rabbitipc.publish) turns a WireConnection's I/O loop itself through
`open_connection()`, `turn()`, `wake()` and `close_connection()` below, so pika's connection
workflow and I/O loop extension API (poll, process_timeouts) are used here only.

`WireConnection.blocked` follows the broker's connection.blocked/unblocked (pika's public
callbacks), so a publisher can tell "blocked by an alarm" from "slow".

The counters pika's heartbeat checker reads (bytes_sent, bytes_received, frames_*) stay right.
Checked against pika 1.4.4 (installed here; pyproject allows pika>=1.3,<2). The private names
used are listed in PRIVATE_NAMES; tests/test_pika_adapter.py fails when a pika release drops one.
"""

from __future__ import annotations

import itertools
import logging
import operator
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
import pika.adapters.base_connection
import pika.adapters.blocking_connection
import pika.adapters.select_connection
import pika.channel
import pika.connection
import pika.exceptions as px
from pika import frame as _frame
from pika import spec as _spec
from pika.adapters.utils import connection_workflow as _workflow
from pika.adapters.utils import io_services_utils as _io

from .. import wire

LOGGER = logging.getLogger(__name__)

#: Socket reads once open, at most (pika's own _AsyncTransportBase._MAX_RECV_BYTES is 4096).
RECV_BYTES = 256 << 10
#: The input buffer: twice a read, so a partial frame left at its end rarely needs moving.
IN_BUFFER = 2 * RECV_BYTES
#: Held bodies at least this large are queued as they are, not copied into the output buffer.
GATHER_MIN = 16 << 10
#: Buffers per gathered write (Linux's IOV_MAX is 1024).
GATHER_MAX = 512

#: The private pika names this module relies on: (class, attribute) defined on the class...
PRIVATE_NAMES = (
    (pika.connection.Connection, "_adapter_emit_data"),  # every outgoing byte passes here
    (pika.connection.Connection, "_on_data_available"),  # every incoming byte passes here
    (pika.connection.Connection, "_process_frame"),  # the generic path of one decoded frame
    (pika.channel.Channel, "_on_deliver"),  # a whole message, with the consumer-tag checks
    (pika.channel.Channel, "_on_return"),
    (_io._AsyncTransportBase, "_MAX_RECV_BYTES"),
    (_io._AsyncTransportBase, "_sigint_safe_recv"),  # the one socket read of _consume(), set per instance
    (_io._AsyncTransportBase, "_produce"),  # the socket writes of a writable turn, set per instance
)
#: ... and those set on each instance (by the named class's methods).
PRIVATE_INSTANCE_NAMES = (
    (pika.connection.Connection, "_channels"),
    (pika.connection.Connection, "_frame_buffer"),
    (pika.adapters.base_connection.BaseConnection, "_transport"),
    (_io._AsyncTransportBase, "_tx_buffers"),  # what _produce sends, in order
    (_io._AsyncTransportBase, "_tx_buffered_byte_count"),
    (_io._AsyncTransportBase, "_sock"),
    (pika.adapters.blocking_connection.BlockingChannel, "_closing_reason"),  # why the broker closed it
    (pika.adapters.blocking_connection.BlockingChannel, "_impl"),  # see never_reject()
    (pika.adapters.blocking_connection.BlockingChannel, "_consumer_infos"),
    (pika.channel.Channel, "_consumers_with_noack"),
)
#: The I/O loop extension API and connection-workflow errors that open_connection()/turn() use (not
#: part of pika's documented API for applications, so checked like the private names).
LOOP_NAMES = (
    (pika.adapters.select_connection.IOLoop, "activate_poller"),
    (pika.adapters.select_connection.IOLoop, "poll"),
    (pika.adapters.select_connection.IOLoop, "process_timeouts"),
    (_workflow, "AMQPConnectionWorkflowFailed"),
    (_workflow, "AMQPConnectorSocketConnectError"),
    (_workflow, "AMQPConnectorPhaseErrorBase"),
)
#: The private keyword of pika.BlockingConnection that picks its I/O connection class.
BLOCKING_IMPL_KEYWORD = "_impl_class"

_Method, _Header = _frame.Method, _frame.Header
_Deliver, _Return = _spec.Basic.Deliver, _spec.Basic.Return
_DELIVER, _RETURN, _ACK, _NACK = wire.DELIVER, wire.RETURN, wire.ACK, wire.NACK
_OTHER = wire.OTHER
_FRAME_END = b"\xce"
#: Properties a template cannot carry per message: when one is set, pika encodes the message.
_UNTEMPLATED = ("content_encoding", "priority", "correlation_id", "reply_to", "expiration", "type", "user_id",
                "app_id", "cluster_id")
_untemplated = operator.itemgetter(*_UNTEMPLATED)
_NONE_UNTEMPLATED = (None,) * len(_UNTEMPLATED)


class WireConnection(pika.SelectConnection):
    """A SelectConnection whose per-message frames are encoded and decoded by rabbitipc.wire."""

    def __init__(self, *args: Any, hold_output: bool = False, **kwargs: Any) -> None:
        self._out = bytearray()
        self._held: list = []  # hold_output: buffers and large bodies before _out, in order
        self._held_size = 0
        self._gather = False  # the transport writes with sendmsg (plain TCP): large bodies are not copied
        # The input buffer once taken over: data[_in_start:_in_end] is read and not yet decoded.
        self._in = bytearray()
        self._in_view = memoryview(self._in)
        self._in_start = self._in_end = 0
        self._events: deque[tuple] = deque()  # decoded, not yet handed on (see _decode_input)
        self._decoder = wire.Decoder()  # this stream's: a large message arriving in pieces is walked once
        self._hold = hold_output
        self._fast_in = False
        self._templates: dict[tuple, Any] = {}
        #: True from the broker's connection.blocked (a memory or disk alarm) to its connection.unblocked.
        self.blocked = False
        super().__init__(*args, **kwargs)
        self.add_on_connection_blocked_callback(self._on_blocked)
        self.add_on_connection_unblocked_callback(self._on_unblocked)

    @property
    def rabbitipc_node(self) -> str:
        """host:port of the broker node (see node())."""
        return f"{self.params.host}:{self.params.port}"

    def _on_blocked(self, _connection, _method) -> None:
        self.blocked = True

    def _on_unblocked(self, _connection, _method) -> None:
        self.blocked = False

    # -- out ----------------------------------------------------------------------------
    @property
    def held_bytes(self) -> int:
        """Bytes written and not yet handed to the socket (hold_output only)."""
        return self._held_size + len(self._out)

    def _adapter_emit_data(self, data: bytes) -> None:
        if self._hold:
            self._out += data
        else:
            super()._adapter_emit_data(data)

    def release(self) -> None:
        """Hand everything held to the transport: one write of pika's send, or one gathered sendmsg on plain TCP."""
        if self._held:
            held, self._held, self._held_size = self._held, [], 0
            for data in held:
                super()._adapter_emit_data(data)
        if self._out:
            data, self._out = self._out, bytearray()
            # A view: pika requeues the rest of a partial send as chunk[sent:], a copy for a bytearray.
            super()._adapter_emit_data(memoryview(data))

    def publish(self, channel, exchange: str, routing_key: str, body: bytes,
                properties: pika.BasicProperties, mandatory: bool = False) -> None:
        """channel.basic_publish(...), with the frames encoded by a template when the properties allow."""
        fields = properties.__dict__
        if type(body) is not bytes or _untemplated(fields) != _NONE_UNTEMPLATED:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
            return
        if self.is_closed:
            raise px.ConnectionWrongStateError("Attempted to send a frame on closed connection.")
        if not channel.is_open:
            raise px.ChannelWrongStateError("Channel is closed.")
        number = channel.channel_number
        key = (number, exchange, routing_key, mandatory, fields["content_type"], fields["delivery_mode"])
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = wire.PublishTemplate(
                number, exchange, routing_key, mandatory, frame_max=self.params.frame_max,
                content_type=fields["content_type"], delivery_mode=fields["delivery_mode"])
        timestamp = fields["timestamp"]
        if self._hold:
            if self._gather and GATHER_MIN <= len(body) <= template.frame_max - 8:
                sent = template.encode_head_into(self._out, body, fields["message_id"], timestamp, fields["headers"])
                head, self._out = self._out, bytearray(_FRAME_END)  # the body's frame end starts the next buffer
                self._held += (memoryview(head), body)  # what was held before the body, then the body itself
                self._held_size += len(head) + len(body)
            else:
                sent = template.encode_into(self._out, body, fields["message_id"], timestamp, fields["headers"])
        else:
            out = bytearray()
            sent = template.encode_into(out, body, fields["message_id"], timestamp, fields["headers"])
            super()._adapter_emit_data(memoryview(out))
        self.bytes_sent += sent
        chunk = self.params.frame_max - 8
        self.frames_sent += 2 + (len(body) + chunk - 1) // chunk

    # -- in -----------------------------------------------------------------------------
    def _on_data_available(self, data_in: bytes) -> None:
        if not self._fast_in:
            if not self.is_open:
                super()._on_data_available(data_in)
                return
            self._take_over_input()
        if not (type(data_in) is memoryview and data_in.obj is self._in):  # not read by _recv_into
            self._append(data_in)
        self._decode_input()

    def _decode_input(self) -> None:
        """Decode and hand on what the input buffer holds, in stream order.

        Re-entrant: a callback run from here may turn the I/O loop (a publisher's confirm callback
        publishing into a full window), which reads more and calls this again. So the buffer's
        cursors live only on the connection, moved past what is decoded before anything is handed
        on, and decoded events wait in one queue that every call drains in order: a nested call
        first hands on what its caller had decoded, then what it decodes itself."""
        pending = self._events
        try:
            while True:
                start = self._in_start
                events, stop, status = self._decoder.decode(self._in, start, self._in_end)
                self.bytes_received += stop - start
                self._in_start = stop
                if events:
                    pending.extend(events)
                if pending:
                    self._dispatch(pending)
                    continue  # a callback may have read (and decoded) more: look again from the cursor
                if status == _OTHER and self._in_end - stop >= 7:
                    # One frame the codec leaves to pika: decoded and processed by pika's own path.
                    size = int.from_bytes(self._in_view[stop + 3:stop + 7], "big") + 8
                    if self._in_end - stop >= size:
                        consumed, value = _frame.decode_frame(bytes(self._in_view[stop:stop + size]))
                        if value is not None:
                            self._in_start = stop + consumed
                            self.bytes_received += consumed
                            self._process_frame(value)
                            continue
                return
        finally:
            if self._in_start == self._in_end:
                self._in_start = self._in_end = 0
                if len(self._in) > 4 * IN_BUFFER:  # after a message larger than the buffer
                    self._new_input_buffer(IN_BUFFER, 0)

    def _take_over_input(self) -> None:
        """From now on: our buffer (with what pika has not decoded yet), read into by _recv_into."""
        self._fast_in = True
        pending, self._frame_buffer = self._frame_buffer, b""
        self._new_input_buffer(IN_BUFFER, 0)
        self._append(pending)
        transport = getattr(self, "_transport", None)
        if transport is not None:  # instance attributes: other connections keep pika's
            transport._MAX_RECV_BYTES = RECV_BYTES
            transport._sigint_safe_recv = self._recv_into
            if type(transport) is _io._AsyncPlaintextTransport:  # (an SSL socket has no sendmsg)
                # A method of ours, not of the transport's: pika drops the transport when the link ends,
                # and nothing is left in a cycle holding the buffers.
                transport._produce = self._produce_gathered
                self._gather = True

    def _recv_into(self, sock, max_bytes: int) -> memoryview:
        """The transport's socket read: into the input buffer; returns the view of what came (empty at EOF)."""
        self._make_room(max_bytes)
        end = self._in_end
        count = sock.recv_into(self._in_view[end:end + max_bytes])
        self._in_end = end + count
        return self._in_view[end:end + count]

    def _append(self, data) -> None:
        """Copy data read elsewhere (by pika before the take-over) to the end of the input buffer."""
        if data:
            self._make_room(len(data), len(data))
            end = self._in_end
            self._in_view[end:end + len(data)] = data
            self._in_end = end + len(data)

    def _make_room(self, wanted: int, minimum: int = 1) -> None:
        """Free space after the data for a read of `wanted` bytes (at least `minimum`; reads of half a buffer
        or more are taken as they come): move the undecoded tail to the front, or to a larger buffer when
        what is pending (a message larger than the buffer, arriving in pieces) leaves no room."""
        need = max(minimum, min(wanted, IN_BUFFER // 2))
        capacity, start, end = len(self._in), self._in_start, self._in_end
        if capacity - end >= need:
            return
        pending = end - start
        if pending + need <= capacity:
            self._in_view[:pending] = self._in_view[start:end]  # a partial frame (memoryview copies overlaps safely)
            self._in_start, self._in_end = 0, pending
        else:
            self._new_input_buffer(max(2 * capacity, pending + wanted), start)

    def _new_input_buffer(self, capacity: int, start: int) -> None:
        """Replace the input buffer by one of `capacity` bytes holding the data from `start` on, at its front."""
        pending = self._in_view[start:self._in_end]
        fresh = bytearray(capacity)
        fresh[:len(pending)] = pending
        self._in, self._in_view = fresh, memoryview(fresh)
        self._in_start, self._in_end = self._in_start - start, len(pending)

    def _produce_gathered(self) -> None:
        """pika's _AsyncTransportBase._produce, with one sendmsg of up to GATHER_MAX queued buffers at a time
        where pika makes one send per buffer: what it sent is dropped from the queue, the rest of a buffer
        sent in part stays as a view. Raises what sendmsg raises (EAGAIN when the socket is full: pika's
        caller waits for the next writable turn)."""
        transport = self._transport
        buffers = transport._tx_buffers
        sock = transport._sock
        while buffers:
            sent = sock.sendmsg(list(itertools.islice(buffers, GATHER_MAX)))
            transport._tx_buffered_byte_count -= sent
            while sent:
                size = len(buffers[0])
                if sent < size:
                    buffers[0] = memoryview(buffers[0])[sent:]
                    break
                buffers.popleft()
                sent -= size

    def _dispatch(self, events: deque[tuple]) -> None:
        """Hand decoded events to pika's channels (or callbacks), in the order they arrived, taking each off
        the queue before its callback runs (which may dispatch the rest: see _decode_input)."""
        channels = self._channels
        chunk = self.params.frame_max - 8
        while events:
            event = events.popleft()
            kind = event[0]
            if kind == _DELIVER:
                _, number, consumer_tag, tag, redelivered, exchange, routing_key, properties, body = event
                self.frames_received += 2 + (len(body) + chunk - 1) // chunk
                channel = channels.get(number)
                if channel is None:
                    LOGGER.critical("Received Basic.Deliver for unregistered channel %i", number)
                    continue
                channel._on_deliver(_Method(number, _Deliver(consumer_tag, tag, redelivered, exchange, routing_key)),
                                    _Header(number, len(body), properties), body)
            elif kind == _ACK:
                self._process_frame(_Method(event[1], _spec.Basic.Ack(event[2], event[3])))
            elif kind == _NACK:
                self._process_frame(_Method(event[1], _spec.Basic.Nack(event[2], event[3], event[4])))
            else:
                _, number, reply_code, reply_text, exchange, routing_key, properties, body = event
                self.frames_received += 2 + (len(body) + chunk - 1) // chunk
                channel = channels.get(number)
                if channel is None:
                    LOGGER.critical("Received Basic.Return for unregistered channel %i", number)
                    continue
                channel._on_return(_Method(number, _Return(reply_code, reply_text, exchange, routing_key)),
                                   _Header(number, len(body), properties), body)


def blocking_connection(params: pika.ConnectionParameters) -> pika.BlockingConnection:
    """A pika.BlockingConnection whose I/O connection is a WireConnection (pika's _impl_class hook)."""
    connection = pika.BlockingConnection(params, **{BLOCKING_IMPL_KEYWORD: WireConnection})
    connection.rabbitipc_node = f"{params.host}:{params.port}"
    return connection


def node(connection: Any) -> str:
    """host:port of the broker node a connection of ours (WireConnection or blocking_connection()) talks to."""
    return getattr(connection, "rabbitipc_node", "")


def closing_reason(channel: pika.adapters.blocking_connection.BlockingChannel) -> Exception:
    """Why a closed BlockingChannel closed: the broker's ChannelClosedByBroker (kept only in a
    private attribute, as pika's process_data_events does not raise it for callback consumers),
    else a generic ChannelWrongStateError."""
    reason = getattr(channel, "_closing_reason", None)
    return reason if isinstance(reason, px.ChannelClosedByBroker) else px.ChannelWrongStateError("channel closed")


def never_reject(channel: pika.adapters.blocking_connection.BlockingChannel, consumer_tag: str) -> None:
    """Have pika drop, not reject, the deliveries of this consumer it still holds when the consumer is
    cancelled or its channel or connection closes: a stream answers a reject by closing the whole
    connection (540 NOT_IMPLEMENTED). Acks stay manual; only pika's bookkeeping of the consumer changes."""
    channel._consumer_infos[consumer_tag].auto_ack = True
    channel._impl._consumers_with_noack.add(consumer_tag)


# -- an asynchronous WireConnection turned by its owner's thread -------------------------------
def _nothing() -> None:
    """A timer (or thread-safe) callback whose only job is to end a poll."""


def _unwrap(error: BaseException) -> BaseException:
    """The error pika.BlockingConnection would raise for a failed open (it unwraps the same way)."""
    if isinstance(error, _workflow.AMQPConnectionWorkflowFailed):
        error = error.exceptions[-1]
        if isinstance(error, _workflow.AMQPConnectorSocketConnectError):
            return px.AMQPConnectionError(error)
        if isinstance(error, _workflow.AMQPConnectorPhaseErrorBase):
            error = error.exception
    if isinstance(error, (px.AMQPError, OSError)):
        return error
    return px.AMQPConnectionError(error)


def open_connection(params: pika.ConnectionParameters, on_close: Callable[[Any, BaseException], None],
                    turn_seconds: float = 0.2) -> WireConnection:
    """One attempt to open a WireConnection (output held until release()) by turning its loop here;
    raises what pika.BlockingConnection would (connection.connect() retries on those)."""
    state: dict[str, Any] = {}
    connection = WireConnection(
        params, hold_output=True,
        on_open_callback=lambda _c: state.setdefault("open", True),
        on_open_error_callback=lambda _c, error: state.setdefault("error", error),
        on_close_callback=on_close,
    )
    connection.ioloop.activate_poller()
    while not state:
        turn(connection, turn_seconds)  # pika's own socket and stack timeouts bound this
    if "error" in state:
        connection.ioloop.close()
        raise _unwrap(state["error"])
    return connection


def turn(connection: WireConnection, timeout: float) -> None:
    """One turn of pika's I/O loop: write what is held, dispatch what arrived, wait at most timeout."""
    connection.release()
    ioloop = connection.ioloop
    timer = ioloop.call_later(timeout, _nothing)
    try:
        ioloop.poll()
        ioloop.process_timeouts()
    finally:
        ioloop.remove_timeout(timer)


def wake(connection: WireConnection) -> None:
    """From any thread: end the wait of the owner's current (or next) turn at once."""
    try:
        connection.ioloop.add_callback_threadsafe(_nothing)
    except Exception:  # noqa: BLE001 - the loop is closing: its owner sees why at its next turn
        LOGGER.debug("wake: the I/O loop is closed")


def close_connection(connection: WireConnection, seconds: float = 5.0, turn_seconds: float = 0.2) -> None:
    """Close the connection, turning its loop until it is closed (`seconds` at most), then close the loop."""
    if connection.is_open:
        connection.close()
    deadline = time.monotonic() + seconds
    while not connection.is_closed and time.monotonic() < deadline:
        turn(connection, turn_seconds)
    connection.ioloop.close()
