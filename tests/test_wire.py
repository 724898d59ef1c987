"""The wire codec: both implementations give pika's bytes, decode what pika and the broker send as pika does."""

from __future__ import annotations

import importlib
import os
import random
import socket
import subprocess
import sys
import time

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pika import frame, spec
from pika.connection import Connection
from pika.exceptions import ShortStringTooLong

from rabbitipc import wire

IMPLEMENTATIONS = ["c", "python"]
MODULES = {"c": "rabbitipc.wire._speedups", "python": "rabbitipc.wire._pure"}
PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def codec(request):
    """Each implementation in turn; the C one skips (and fails under CI=true) when it is not built."""
    try:
        return importlib.import_module(MODULES[request.param])
    except ImportError as exc:
        pytest.skip(f"the C extension is not built ({exc}): pip install -e . with a C compiler present")


# -- pika's own codec, the reference ------------------------------------------------------------

class _Capture:
    """Stands in for a pika Connection in Connection._send_message: pika's own publish path, captured."""

    def __init__(self, frame_max: int) -> None:
        self._body_max_length = frame_max - spec.FRAME_HEADER_SIZE - spec.FRAME_END_SIZE
        self.frames: list[bytes] = []

    def _output_marshaled_frames(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)


def pika_message(channel: int, method, properties: spec.BasicProperties, body: bytes, frame_max: int) -> bytes:
    """The frames pika writes for a method with content (Publish, Deliver, Return), split at frame_max."""
    capture = _Capture(frame_max)
    Connection._send_message(capture, channel, method, (properties, body))
    return b"".join(capture.frames)


def pika_events(data: bytes) -> tuple[list[tuple], list]:
    """What pika decodes from a stream, as our event tuples (properties as dicts), and the other frames."""
    events, others = [], []
    pos, pending, parts, size = 0, None, [], 0
    while pos < len(data):
        used, value = frame.decode_frame(data[pos:])
        assert value is not None, "a partial frame at the end of a complete stream"
        pos += used
        if isinstance(value, frame.Method):
            method, channel = value.method, value.channel_number
            if isinstance(method, spec.Basic.Ack):
                events.append((wire.ACK, channel, method.delivery_tag, method.multiple))
            elif isinstance(method, spec.Basic.Nack):
                events.append((wire.NACK, channel, method.delivery_tag, method.multiple, method.requeue))
            elif isinstance(method, spec.Basic.Deliver):
                pending = (wire.DELIVER, channel, method.consumer_tag, method.delivery_tag, method.redelivered,
                           method.exchange, method.routing_key)
            elif isinstance(method, spec.Basic.Return):
                pending = (wire.RETURN, channel, method.reply_code, method.reply_text, method.exchange,
                           method.routing_key)
            else:
                others.append(value)
        elif isinstance(value, frame.Header):
            pending += (vars(value.properties),)
            parts, size = [], value.body_size
            if size == 0:
                events.append(pending + (b"",))
        elif isinstance(value, frame.Body):
            parts.append(value.fragment)
            if sum(map(len, parts)) == size:
                events.append(pending + (b"".join(parts),))
        else:
            others.append(value)
    return events, others


def comparable(events: list[tuple]) -> list[tuple]:
    """Events with their properties as plain dicts (BasicProperties has no __eq__)."""
    return [tuple(vars(x) if isinstance(x, spec.BasicProperties) else x for x in event) for event in events]


def decode_all(codec, data, chunks=None) -> tuple[list[tuple], list]:
    """Decode a stream as the connection would: data arriving in chunks, pika's path for the frames we leave."""
    buffer = bytearray()
    events, others = [], []
    for chunk in chunks or [data]:
        buffer += chunk
        pos = 0
        while True:
            got, pos, status = codec.decode(buffer, pos)
            events += got
            if status != codec.OTHER:
                break
            used, value = frame.decode_frame(bytes(buffer[pos:]))
            assert value is not None, "OTHER must point at a whole frame"
            others.append(value)
            pos += used
        assert status == codec.DONE or status == codec.PARTIAL
        del buffer[:pos]
    assert not buffer, "bytes left over at the end of a complete stream"
    return comparable(events), others


# -- strategies ------------------------------------------------------------------------------------

short_strings = st.one_of(st.text(max_size=63), st.binary(max_size=255))
octets = st.integers(0, 255)
u64 = st.integers(0, 2**64 - 1)
table_values = st.recursive(
    st.one_of(st.text(max_size=20), st.binary(max_size=20), st.booleans(), st.none(),
              st.integers(-(2**63), 2**63 - 1)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=6)
tables = st.dictionaries(st.text(max_size=20), table_values, max_size=4)
frame_maxes = st.one_of(st.just(4096), st.integers(4096, 9000), st.just(131072))


@st.composite
def bodies(draw, frame_max: int):
    """Any body, often around or past one frame (frame_max - 8 bytes) and several frames long."""
    chunk = frame_max - 8
    size = draw(st.one_of(st.integers(0, 300), st.integers(chunk - 2, chunk + 2), st.integers(0, 3 * chunk + 5)))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


properties_strategy = st.builds(
    spec.BasicProperties,
    content_type=st.none() | short_strings, content_encoding=st.none() | short_strings, headers=st.none() | tables,
    delivery_mode=st.none() | octets, priority=st.none() | octets, correlation_id=st.none() | short_strings,
    reply_to=st.none() | short_strings, expiration=st.none() | short_strings, message_id=st.none() | short_strings,
    timestamp=st.none() | u64, type=st.none() | short_strings, user_id=st.none() | short_strings,
    app_id=st.none() | short_strings, cluster_id=st.none() | short_strings)


@st.composite
def incoming_frames(draw, frame_max: int) -> bytes:
    """One incoming method the codec handles (Deliver, Return with content; Ack, Nack), as pika encodes it."""
    channel = draw(st.integers(1, 0xFFFF))
    kind = draw(st.sampled_from(["deliver", "return", "ack", "nack"]))
    if kind == "ack":
        return frame.Method(channel, spec.Basic.Ack(draw(u64), draw(st.booleans()))).marshal()
    if kind == "nack":
        return frame.Method(channel, spec.Basic.Nack(draw(u64), draw(st.booleans()), draw(st.booleans()))).marshal()
    if kind == "deliver":
        method = spec.Basic.Deliver(draw(short_strings), draw(u64), draw(st.booleans()), draw(short_strings),
                                    draw(short_strings))
    else:
        method = spec.Basic.Return(draw(st.integers(0, 0xFFFF)), draw(short_strings), draw(short_strings),
                                   draw(short_strings))
    return pika_message(channel, method, draw(properties_strategy), draw(bodies(frame_max)), frame_max)


@st.composite
def streams(draw) -> bytes:
    frame_max = draw(frame_maxes)
    return b"".join(draw(st.lists(incoming_frames(frame_max), min_size=1, max_size=6)))


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])


# -- encoding ------------------------------------------------------------------------------------

@PROPERTY
@given(channel=st.integers(0, 0xFFFF), exchange=short_strings, routing_key=short_strings, mandatory=st.booleans(),
       content_type=st.none() | short_strings, delivery_mode=st.none() | octets,
       message_id=st.none() | short_strings, timestamp=st.none() | u64, headers=st.none() | tables,
       data=st.data(), frame_max=frame_maxes)
def test_encode_gives_pikas_bytes(codec, channel, exchange, routing_key, mandatory, content_type, delivery_mode,
                                  message_id, timestamp, headers, data, frame_max):
    """Publish, header and body frames (split at frame_max) are byte for byte what pika's basic_publish writes."""
    body = data.draw(bodies(frame_max))
    template = codec.PublishTemplate(channel, exchange, routing_key, mandatory, frame_max=frame_max,
                                     content_type=content_type, delivery_mode=delivery_mode)
    properties = spec.BasicProperties(content_type=content_type, delivery_mode=delivery_mode, message_id=message_id,
                                      timestamp=timestamp, headers=headers)
    expected = pika_message(channel, spec.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                        mandatory=mandatory), properties, body, frame_max)
    assert template.encode(body, message_id, timestamp, headers) == expected
    out = bytearray(b"before")
    assert template.encode_into(out, memoryview(body), message_id=message_id, timestamp=timestamp,
                                headers=headers) == len(expected)
    assert out == b"before" + expected


def test_encode_what_our_sender_sets(codec):
    """The four properties our messages carry (content type, persistence, id, timestamp), as pika writes them."""
    template = codec.PublishTemplate(1, "", "work", frame_max=131072, content_type="application/json",
                                     delivery_mode=2)
    body = b'{"id":"ab","seq":1}'
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent,
                                      message_id="ab", timestamp=1700000000)
    assert template.encode(body, "ab", 1700000000) == pika_message(
        1, spec.Basic.Publish(exchange="", routing_key="work"), properties, body, 131072)
    assert (template.channel, template.exchange, template.routing_key, template.mandatory, template.frame_max,
            template.content_type, template.delivery_mode) == (1, "", "work", False, 131072, "application/json", 2)


def test_encode_rejects_what_pika_rejects(codec):
    """Too long a short string raises pika's ShortStringTooLong; a bad frame_max, channel or timestamp is refused."""
    with pytest.raises(ShortStringTooLong):
        codec.PublishTemplate(1, "x" * 256, "key")
    template = codec.PublishTemplate(1, "", "key")
    with pytest.raises(ShortStringTooLong):
        template.encode(b"body", "é" * 128)
    with pytest.raises(OverflowError):
        template.encode(b"body", None, -1)
    with pytest.raises(TypeError):
        template.encode(b"body", None, 1.5)
    with pytest.raises(ValueError):
        codec.PublishTemplate(1, "", "key", frame_max=4095)
    with pytest.raises(ValueError):
        codec.PublishTemplate(65536, "", "key")


# -- decoding ------------------------------------------------------------------------------------

@PROPERTY
@given(stream=streams())
def test_decode_matches_pika(codec, stream):
    """Deliveries, returns, acks and nacks that pika encodes decode to what pika decodes, in one call."""
    expected, _ = pika_events(stream)
    events, end, status = codec.decode(stream)
    assert (comparable(events), end, status) == (expected, len(stream), codec.DONE)


@PROPERTY
@given(stream=streams(), cuts=st.lists(st.integers(0, 10**6), max_size=8))
def test_decode_fragmented_stream(codec, stream, cuts):
    """Split at arbitrary points (as socket reads split it), the stream still decodes to pika's events."""
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    events, others = decode_all(codec, stream, chunks)
    assert (events, others) == (pika_events(stream)[0], [])


@PROPERTY
@given(before=streams(), after=streams(), position=st.integers(0, 2), data=st.data())
def test_decode_stops_at_frames_it_leaves_to_pika(codec, before, after, position, data):
    """A frame it does not handle (heartbeat, ConsumeOk, Channel.Close...) stops it right there, events before kept."""
    other = data.draw(st.sampled_from([
        frame.Heartbeat().marshal(),
        frame.Method(1, spec.Basic.ConsumeOk("ctag")).marshal(),
        frame.Method(3, spec.Channel.Close(406, "PRECONDITION_FAILED", 60, 40)).marshal(),
        frame.Method(0, spec.Connection.Blocked("low on memory")).marshal(),
        frame.Header(1, 0, spec.BasicProperties()).marshal(),  # a header with no method before it
        frame.Body(1, b"stray").marshal(),
    ]))
    head = [b"", before, before + after][position]
    stream = head + other + after
    events, end, status = codec.decode(stream)
    assert (comparable(events), end, status) == (pika_events(head)[0], len(head), codec.OTHER)
    events, end, status = codec.decode(stream, end + len(other))
    assert (comparable(events), end, status) == (pika_events(after)[0], len(stream), codec.DONE)


@PROPERTY
@given(stream=streams(), cut=st.integers(1, 10**6))
def test_decode_keeps_an_incomplete_message(codec, stream, cut):
    """Cut short, the stream decodes up to the last whole message and reports PARTIAL with the offset to keep."""
    cut = cut % len(stream)
    events, end, status = codec.decode(stream[:cut])
    assert status in (codec.PARTIAL, codec.DONE) and end <= cut
    assert status == codec.DONE or end < cut
    rest, end2, status2 = codec.decode(stream, end)
    assert (comparable(events + rest), end2, status2) == (pika_events(stream)[0], len(stream), codec.DONE)


@PROPERTY
@given(stream=streams(), cut=st.integers(0, 10**6), junk=st.binary(min_size=1, max_size=64))
def test_decode_reads_only_up_to_end(codec, stream, cut, junk):
    """decode(buffer, start, end) on a reused buffer (the adapter reads into one): what lies past `end` is never
    read, so a stream cut at `end` and followed by old bytes decodes as the cut stream alone."""
    cut = cut % (len(stream) + 1)
    buffer = bytearray(stream[:cut] + junk)
    assert codec.decode(buffer, 0, cut)[1:] == codec.decode(stream[:cut])[1:]
    assert comparable(codec.decode(buffer, 0, cut)[0]) == comparable(codec.decode(stream[:cut])[0])
    events, end, status = codec.decode(memoryview(stream), 0, len(stream))
    assert (comparable(events), end, status) == (pika_events(stream)[0], len(stream), codec.DONE)
    for body in (event[-1] for event in events if event[0] in (codec.DELIVER, codec.RETURN)):
        assert type(body) is bytes  # a copy: the buffer it came from is reused by the next read
    with pytest.raises(ValueError):
        codec.decode(buffer, 0, len(buffer) + 1)
    with pytest.raises(ValueError):
        codec.decode(buffer, cut + 1, cut)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=streams(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                                        max_size=3))
def test_decode_corrupted_stream_never_disagrees_with_pika(codec, stream, flips):
    """Any bytes flipped: no crash, no exception, and whatever it decodes is what pika decodes from those bytes."""
    data = bytearray(stream)
    for at, mask in flips:
        data[at % len(data)] ^= mask
    events, end, status = codec.decode(bytes(data))
    assert 0 <= end <= len(data) and status in (codec.DONE, codec.PARTIAL, codec.OTHER)
    assert (comparable(events), []) == pika_events(bytes(data[:end]))


def test_decode_bad_frame_end_is_left_to_pika(codec):
    """A frame whose end octet is wrong is not decoded: pika's path raises its own error on it."""
    good = frame.Method(1, spec.Basic.Ack(7, False)).marshal()
    events, end, status = codec.decode(good + good[:-1] + b"\x00")
    assert (comparable(events), end, status) == ([(codec.ACK, 1, 7, False)], len(good), codec.OTHER)


# -- selection ---------------------------------------------------------------------------------------

def _active(env: dict) -> str:
    code = "import rabbitipc.wire as w; print(w.implementation().name, '|', w.describe())"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_pure_python_forced_by_environment():
    """RABBITIPC_PURE_PYTHON=1 selects the pure-Python codec and the log phrase says why; 0 does not force it."""
    assert _active({"RABBITIPC_PURE_PYTHON": "1"}) == \
        "PYTHON | wire codec: pure Python (RABBITIPC_PURE_PYTHON is set)"
    try:
        importlib.import_module(MODULES["c"])
    except ImportError as exc:
        pytest.skip(f"the C extension is not built ({exc})")
    assert _active({"RABBITIPC_PURE_PYTHON": "0"}) == "C | wire codec: C extension (built)"


# -- against the real broker -----------------------------------------------------------------------

class RawClient:
    """An AMQP connection on a plain socket: pika's spec for the rare frames, the codec under test for the rest."""

    def __init__(self, url: str, codec, frame_max: int) -> None:
        params = pika.URLParameters(url)
        self.codec = codec
        self.sock = socket.create_connection((params.host, params.port), timeout=10)
        self.buffer = bytearray()
        self.received = bytearray()  # everything after the handshake, for pika to decode afterwards
        self.events: list[tuple] = []
        self.others: list = []
        self.recording = False
        self.sock.sendall(frame.ProtocolHeader().marshal())
        self.expect(spec.Connection.Start)
        credentials = params.credentials
        self.send(0, spec.Connection.StartOk(
            client_properties={"connection_name": "test_wire"}, mechanism="PLAIN",
            response=f"\0{credentials.username}\0{credentials.password}", locale="en_US"))
        tune = self.expect(spec.Connection.Tune)
        self.frame_max = min(frame_max, tune.frame_max or frame_max)
        self.send(0, spec.Connection.TuneOk(tune.channel_max, self.frame_max, 0))
        self.send(0, spec.Connection.Open(virtual_host=params.virtual_host))
        self.expect(spec.Connection.OpenOk)
        self.recording = True

    def send(self, channel: int, method) -> None:
        self.sock.sendall(frame.Method(channel, method).marshal())

    def read(self) -> None:
        """One socket read (a large one), decoded: our events, and pika's frames for what the codec leaves."""
        data = self.sock.recv(1 << 20)
        assert data, "the broker closed the connection"
        if self.recording:
            self.received += data
        self.buffer += data
        pos = 0
        while True:
            events, pos, status = self.codec.decode(self.buffer, pos) if self.recording else ([], pos, None)
            self.events += events
            if status == self.codec.PARTIAL or pos == len(self.buffer):
                break
            used, value = frame.decode_frame(bytes(self.buffer[pos:]))
            if value is None:
                break
            self.others.append(value)
            pos += used
        del self.buffer[:pos]

    def expect(self, method_class):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for value in self.others:
                if isinstance(value, frame.Method) and isinstance(value.method, method_class):
                    self.others.remove(value)
                    return value.method
                if isinstance(value, frame.Method) and isinstance(value.method, (spec.Channel.Close,
                                                                               spec.Connection.Close)):
                    raise AssertionError(f"closed by the broker: {value.method}")
            self.read()
        raise AssertionError(f"no {method_class.NAME} within 30 s")

    def wait_for(self, what, condition) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {len(self.events)} events"
            self.read()


def test_broker_round_trip(codec, broker, queue):
    """Encoded frames are accepted, confirmed and returned by RabbitMQ; what it sends decodes as pika decodes it."""
    client = RawClient(broker.url, codec, frame_max=8192)  # a small frame_max: bodies cross frames both ways
    try:
        client.send(1, spec.Channel.Open())
        client.expect(spec.Channel.OpenOk)
        client.send(1, spec.Confirm.Select())
        client.expect(spec.Confirm.SelectOk)
        client.send(1, spec.Queue.Declare(queue=queue, durable=True))
        client.expect(spec.Queue.DeclareOk)

        template = codec.PublishTemplate(1, "", queue, True, frame_max=client.frame_max,
                                         content_type="application/json", delivery_mode=2)
        nowhere = codec.PublishTemplate(1, "", queue + "-nowhere", True, frame_max=client.frame_max,
                                        content_type="text/plain", delivery_mode=1)
        sizes = [0, 1, 100, client.frame_max - 8, client.frame_max - 7, 3 * client.frame_max, 65536] + [100] * 40
        sent = [(random.Random(i).randbytes(size), f"m-{i}", 1700000000 + i,
                 {"n": i, "tag": "x"} if i % 5 == 0 else None) for i, size in enumerate(sizes)]
        out = bytearray()
        for i, (body, message_id, timestamp, headers) in enumerate(sent):
            template.encode_into(out, body, message_id, timestamp, headers)
            if i == 3:
                out += nowhere.encode(b"unroutable", "lost", 1)
        client.sock.sendall(out)

        total = len(sent) + 1
        confirmed: set[int] = set()

        def all_confirmed() -> bool:
            for event in client.events:
                if event[0] == codec.ACK:
                    tag, multiple = event[2], event[3]
                    confirmed.update(range(1, tag + 1) if multiple else (tag,))
                assert event[0] != codec.NACK, f"nacked: {event}"
            return confirmed >= set(range(1, total + 1))

        client.wait_for("confirms", all_confirmed)
        returns = [event for event in client.events if event[0] == codec.RETURN]
        assert len(returns) == 1
        _, channel, reply_code, reply_text, exchange, routing_key, properties, body = returns[0]
        assert (channel, reply_code, reply_text, exchange, routing_key, body) == \
            (1, 312, "NO_ROUTE", "", queue + "-nowhere", b"unroutable")
        assert (properties.content_type, properties.delivery_mode, properties.message_id, properties.timestamp) == \
            ("text/plain", 1, "lost", 1)

        client.send(1, spec.Basic.Qos(prefetch_count=1000))
        client.expect(spec.Basic.QosOk)
        client.send(1, spec.Basic.Consume(queue=queue, consumer_tag="wire-test"))
        client.expect(spec.Basic.ConsumeOk)
        client.wait_for("deliveries", lambda: sum(e[0] == codec.DELIVER for e in client.events) == len(sent))
        deliveries = [event for event in client.events if event[0] == codec.DELIVER]
        for (body, message_id, timestamp, headers), event in zip(sent, deliveries):
            _, channel, consumer_tag, _tag, redelivered, exchange, routing_key, properties, got = event
            assert (channel, consumer_tag, redelivered, exchange, routing_key, got) == \
                (1, "wire-test", False, "", queue, body)
            assert (properties.content_type, properties.delivery_mode, properties.message_id, properties.timestamp,
                    properties.headers) == ("application/json", 2, message_id, timestamp, headers)
        client.sock.sendall(frame.Method(1, spec.Basic.Ack(deliveries[-1][3], multiple=True)).marshal())
        client.send(1, spec.Queue.Delete(queue=queue))
        client.expect(spec.Queue.DeleteOk)

        # Everything the broker sent after the handshake, decoded by pika in one go, gives the same events.
        assert comparable(client.events) == pika_events(bytes(client.received))[0]
        client.send(0, spec.Connection.Close(200, "done", 0, 0))
        client.expect(spec.Connection.CloseOk)
    finally:
        client.sock.close()


def test_falls_back_when_the_extension_is_not_built():
    """Without the compiled module (installed with no C compiler) the pure-Python codec is used; the log says why."""
    block = ("import sys\n"
             "class NoExtension:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'rabbitipc.wire._speedups':\n"
             "            raise ModuleNotFoundError('No module named ' + repr(name), name=name)\n"
             "sys.meta_path.insert(0, NoExtension())\n"
             "import rabbitipc.wire as w\n"
             "template = w.PublishTemplate(1, '', 'key')\n"
             "print(w.implementation().name, '|', w.describe(), '|', type(template).__module__)\n")
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, check=True,
                            env={k: v for k, v in os.environ.items() if k != "RABBITIPC_PURE_PYTHON"})
    assert result.stdout.strip() == ("PYTHON | wire codec: pure Python (the C extension is not built: no C compiler "
                                     "when installed?) | rabbitipc.wire._pure")


def test_falls_back_when_the_extension_is_out_of_date():
    """A compiled module built from an older source (a function missing) is not used half: the pure codec is."""
    block = ("import importlib.util, pathlib, sys\n"
             "wire_dir = pathlib.Path(importlib.util.find_spec('rabbitipc').origin).parent / 'wire'\n"
             "built = sorted(wire_dir.glob('_speedups.*.so'))\n"
             "assert built, 'No module named ' + repr('rabbitipc.wire._speedups')\n"
             "spec = importlib.util.spec_from_file_location('rabbitipc.wire._speedups', built[0])\n"
             "real = importlib.util.module_from_spec(spec)\n"
             "spec.loader.exec_module(real)\n"
             "stale = type(sys)('rabbitipc.wire._speedups')\n"
             "stale.__dict__.update({k: v for k, v in vars(real).items() if k != 'plain_json_text'})\n"
             "sys.modules['rabbitipc.wire._speedups'] = stale\n"
             "import rabbitipc.wire as w\n"
             "print(w.implementation().name, '|', w.describe(), '|', w.plain_json_text.__module__)\n")
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "RABBITIPC_PURE_PYTHON"})
    if "No module named 'rabbitipc.wire._speedups'" in result.stderr:
        pytest.skip("the C extension is not built")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("PYTHON | wire codec: pure Python (the C extension is out of date (no "
                                     "plain_json_text): pip install -e . again) | rabbitipc.wire._pure")


def test_micro_benchmark_runs():
    """python -m bench.wire with tiny counts prints a row for every case, a column per codec (figures not asserted)."""
    result = subprocess.run([sys.executable, "-m", "bench.wire", "--messages", "200", "--rounds", "1"],
                            capture_output=True, text=True, timeout=120, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = result.stdout.splitlines()
    if "the C extension is not built" in lines[0]:
        lines = lines[1:]
    else:
        assert lines[1].split()[:2] == ["case", "C"]
    assert lines[1].split()[-5:] == ["pure-python", "pika", "pika", "/", "C"]
    assert [line[:52].strip() for line in lines[2:]] == [
        "encode 100 B", "encode 64 KiB", "encode_into 100 B, one buffer", "decode deliver 100 B, 4 KiB reads",
        "decode deliver 100 B, 256 KiB reads", "decode deliver 64 KiB, 4 KiB reads",
        "decode deliver 64 KiB, 256 KiB reads", "decode deliver 8 MiB, frame_max 4096, 256 KiB reads",
        "decode ack, 4 KiB reads"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile-sender", "Dockerfile-receiver"])
def test_images_compile_the_codec_in_the_build_stage_only(dockerfile):
    """Both images install gcc and copy setup.py in their first stage, and the stage they ship has no compiler."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, dockerfile)) as file:
        stages = file.read().split("\nFROM ")[1:]
    assert len(stages) == 2, "expected a build stage and a final stage"
    build, final = stages
    assert "gcc" in build and "libc6-dev" in build and "setup.py" in build
    assert "gcc" not in final and "apt-get" not in final and "COPY --from=build /opt/venv /opt/venv" in final
    with open(os.path.join(root, ".dockerignore")) as file:
        assert "!setup.py" in file.read().splitlines(), "setup.py must reach the build context"


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=80) | st.lists(st.sampled_from(b'\x00\x1f !"#[\\]\x7f\x80\xff'), max_size=40).map(bytes))
def test_plain_json_text_is_true_exactly_when_nothing_needs_an_escape(codec, data):
    """plain_json_text: no byte below 0x20, no quote, no backslash, at any position (the C one reads words)."""
    assert codec.plain_json_text(data) is all(byte >= 0x20 and byte not in b'"\\' for byte in data)
    assert codec.plain_json_text(b"x" * 64 + data) is codec.plain_json_text(data)


@settings(max_examples=400, deadline=None)
@given(length=st.integers(0, 300), position=st.integers(0, 299), offset=st.integers(0, 15),
       special=st.sampled_from(b'\x00\x01\x1f"\\'), filler=st.sampled_from([b"a", b" ", b"\x7f", b"\x80\xff", b"~!#"]))
def test_plain_json_text_finds_one_special_byte_anywhere_in_a_long_text(codec, length, position, offset, special,
                                                                        filler):
    """One byte needing an escape, at any position of a long text (the C one reads 64 bytes a step), through a
    view at any alignment: found; the same text without it is plain. Bytes 0x7f-0xff are plain (UTF-8)."""
    text = bytearray((filler * 300)[:length])
    assert codec.plain_json_text(memoryview(bytes(offset) + text)[offset:]) is True
    if length:
        text[position % length] = special
        assert codec.plain_json_text(memoryview(bytes(offset) + text)[offset:]) is False
        assert codec.plain_json_text(bytes(text)) is False


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=200) | st.text(alphabet='ab"\\\x00\x1f\x7fé€😀', max_size=200),
       pad=st.integers(0, 70))
def test_plain_json_str_and_join_agree_with_the_check_and_utf8(codec, text, pad):
    """plain_json_str is str(data, 'utf-8') exactly when plain_json_text(data), else None; plain_json_join is
    head + text.encode() + tail under the same condition, else None (ASCII and beyond, any length)."""
    text = "x" * pad + text
    data = text.encode()  # (hypothesis' text() has no lone surrogates: those are tested below)
    plain = codec.plain_json_text(data)
    assert codec.plain_json_str(memoryview(data)) == (text if plain else None)
    assert codec.plain_json_join(b'{"a":"', text, b'"}') == ((b'{"a":"' + data + b'"}') if plain else None)


def test_plain_json_str_refuses_what_is_not_utf8(codec):
    """Bytes that are not UTF-8 raise UnicodeDecodeError, as bytes.decode does (the message parser then
    lets json explain)."""
    with pytest.raises(UnicodeDecodeError):
        codec.plain_json_str(b"abc\xff" * 40)
    with pytest.raises(UnicodeEncodeError):
        codec.plain_json_join(b"", "x\ud800", b"")
