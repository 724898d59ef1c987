"""The wire codecs against each other and pika: any input gives both codecs the same answer, and none can crash.

Differential property tests (the compiled codec, the pure one and pika's own frame codec as the oracle) with a
bounded example count; the memory-safety cases (a buffer or template changed by Python code run in the middle
of a call) run in a subprocess, so a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import array
import importlib
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pika import spec
from test_wire import (
    IMPLEMENTATIONS,
    MODULES,
    bodies,
    comparable,
    frame_maxes,
    octets,
    pika_events,
    pika_message,
    short_strings,
    streams,
    tables,
    u64,
)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


def _load(name: str):
    try:
        return importlib.import_module(MODULES[name])
    except ImportError as exc:
        pytest.skip(f"the C extension is not built ({exc}): pip install -e . with a C compiler present")


@pytest.fixture(scope="module")
def both():
    """The compiled codec and the pure one (skips, and fails under CI=true, when the C one is not built)."""
    return _load("c"), _load("python")


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def impl(request):
    """Each implementation in turn (not named `codec`: conftest's autouse fixture of that name would make every
    test of this file run twice)."""
    return _load(request.param)


def outcome(call):
    """What a call gives: ("ok", value), or ("error", the exception's type)."""
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 (the type is what is compared)
        return "error", type(exc)


# -- encoding: any arguments, the same answer from both; pika's bytes when accepted ------------------------

not_short = st.one_of(st.integers(0, 300), st.just(2**70), st.none(), st.floats(allow_nan=False), st.just([1]),
                      st.binary(max_size=8).map(bytearray))
long_text = st.text(min_size=200, max_size=300)  # past 255 bytes once UTF-8 encoded, often
any_short = st.one_of(short_strings, short_strings, long_text, not_short)
bad_tables = st.sampled_from([[1], {"k": object()}, {1: "v"}, "text"])


@st.composite
def any_bodies(draw, frame_max):
    """A body as bytes, bytearray, memoryview or array('H') (two bytes an item), or something that is no buffer."""
    raw = draw(bodies(frame_max))
    kind = draw(st.sampled_from(["bytes", "bytearray", "memoryview", "array", "str", "none", "int"]))
    if kind == "array":
        return array.array("H", raw[:len(raw) // 2 * 2])
    return {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw), "str": raw.hex()[:50],
            "none": None, "int": len(raw)}[kind]


@FUZZ
@given(channel=st.one_of(st.integers(-2, 70000), st.just(1.5)), exchange=any_short, routing_key=any_short,
       mandatory=st.booleans(), frame_max=st.one_of(frame_maxes, st.just(4095), st.just(4096.0)),
       content_type=st.none() | any_short, delivery_mode=st.none() | st.one_of(octets, st.just(256), st.just(2.0)),
       message_id=st.none() | any_short, timestamp=st.none() | st.one_of(u64, st.just(-1), st.just(2**64),
                                                                              st.just(1.5), st.just(True)),
       headers=st.none() | tables | bad_tables, data=st.data())
def test_encode_same_answer_from_both_codecs_and_pika(both, channel, exchange, routing_key, mandatory, frame_max,
                                                      content_type, delivery_mode, message_id, timestamp, headers,
                                                      data):
    """Whatever the arguments (wrong types too), both codecs raise the same error or give the same bytes, pika's
    own; encode_into appends them to what `out` held, and on an error leaves `out` as it was."""
    c, pure = both
    made = [outcome(lambda codec=codec: codec.PublishTemplate(
        channel, exchange, routing_key, mandatory, frame_max=frame_max, content_type=content_type,
        delivery_mode=delivery_mode)) for codec in (c, pure)]
    assert made[0][0] == made[1][0] and (made[0][0] == "ok" or made[0] == made[1]), made
    if made[0][0] != "ok":
        return
    templates = [template for _, template in made]
    body = data.draw(any_bodies(int(frame_max)))
    results = []
    for template in templates:
        encoded = outcome(lambda t=template: t.encode(body, message_id, timestamp, headers))
        out = bytearray(b"before")
        appended = outcome(lambda t=template, o=out: t.encode_into(o, body, message_id=message_id,
                                                                   timestamp=timestamp, headers=headers))
        head_out = bytearray(b"head")
        head = outcome(lambda t=template, o=head_out: t.encode_head_into(o, body, message_id, timestamp, headers))
        results.append((encoded, appended, bytes(out), head, bytes(head_out)))
    assert results[0] == results[1]
    encoded, appended, out, head, head_out = results[0]
    if encoded[0] == "error":
        assert (appended[0], out) == ("error", b"before")
        return
    raw = memoryview(body).cast("B").tobytes()
    properties = spec.BasicProperties(content_type=content_type, delivery_mode=delivery_mode, message_id=message_id,
                                      timestamp=timestamp, headers=headers)
    expected = pika_message(channel, spec.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                        mandatory=mandatory), properties, raw, int(frame_max))
    assert encoded[1] == expected
    assert appended == ("ok", len(expected)) and out == b"before" + expected
    if head[0] == "ok":
        assert head[1] == len(expected) and head_out + raw + b"\xce" == b"head" + expected
    else:
        assert head_out == b"head" and not 0 < len(raw) <= int(frame_max) - 8


# -- decoding: any bytes, read in any pieces, the same events from both codecs, with and without a Decoder ------

def feed(decode, data: bytes, points: list[int], keep: list[bool]) -> list[tuple]:
    """Each call's (events, end, status) with data arriving in pieces cut at `points`, as a connection reads it:
    the consumed bytes dropped from the buffer after a read, or kept and skipped with `start`; stops at OTHER."""
    buffer, pos, calls = bytearray(b"junk"), 4, []
    for a, b, keep_consumed in zip([0, *points], [*points, len(data)], keep):
        buffer += data[a:b]
        events, pos, status = decode(buffer, pos, len(buffer))
        calls.append((comparable(events), pos, status))
        if status == 2:  # OTHER
            break
        if not keep_consumed:
            del buffer[:pos]
            pos = 0
    return calls


@FUZZ
@given(stream=streams(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=2),
       cuts=st.lists(st.integers(0, 10**6), max_size=12), keep=st.lists(st.booleans(), min_size=13, max_size=13),
       tail=st.binary(max_size=40))
def test_decode_same_answer_from_both_codecs_and_pika(both, stream, flips, cuts, keep, tail):
    """Any stream (pika's frames, some bytes flipped, junk after), read in any pieces: both codecs' decode and
    Decoder give the same events, offset and status at every read, and what they decode is what pika decodes."""
    data = bytearray(stream + tail)
    for at, mask in flips:
        data[at % len(data)] ^= mask
    data = bytes(data)
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    c, pure = both
    runs = [feed(decoder, data, points, keep) for decoder in
            (c.decode, c.Decoder().decode, pure.decode, pure.Decoder().decode)]
    assert runs[1] == runs[0] and runs[2] == runs[0] and runs[3] == runs[0]
    events = [event for call_events, _, _ in runs[0] for event in call_events]
    whole, end, status = c.decode(data)
    assert comparable(whole) == events
    assert (events, []) == pika_events(data[:end])


# -- a message of many frames arriving in many reads is walked once ------------------------------------------

@pytest.mark.parametrize("read_size", [4096, 1000, 65536])
def test_decoder_walks_a_partial_message_once(impl, read_size):
    """A 2 MiB body at frame_max 4096 (514 frames) read in pieces: the Decoder reads each body frame's head about
    once (the frames plus one look per read), where decoding from the first frame at every read is quadratic."""
    frame_max, size = 4096, 2 << 20
    body = bytes(range(256)) * (size // 256)
    data = pika_message(7, spec.Basic.Deliver("ctag", 1, False, "", "key"),
                        spec.BasicProperties(content_type="application/octet-stream"), body, frame_max)
    frames = -(-size // (frame_max - 8))
    decoder = impl.Decoder()
    buffer, got, reads = bytearray(), [], 0
    for at in range(0, len(data), read_size):
        buffer += data[at:at + read_size]
        reads += 1
        events, end, status = decoder.decode(buffer)
        got += events
        del buffer[:end]
    assert [event[-1] == body for event in got] == [True] and not buffer
    assert frames <= decoder.frames_walked <= frames + reads


def test_decoder_takes_a_new_message_at_the_same_place_afresh(impl):
    """After PARTIAL, a different message where the old one was (another delivery tag) is walked from its first
    frame: the resume point belongs to the message, not to the offset."""
    frame_max = 4096
    first, second = (pika_message(1, spec.Basic.Deliver("ctag", tag, False, "", "key"), spec.BasicProperties(),
                                  bytes([tag]) * 20000, frame_max) for tag in (1, 2))
    decoder = impl.Decoder()
    assert decoder.decode(first[:15000])[1:] == (0, impl.PARTIAL)
    events, end, status = decoder.decode(second)
    assert (end, status) == (len(second), impl.DONE) and events[0][3] == 2 and events[0][-1] == b"\x02" * 20000


# -- the pure fallback as the C codec -----------------------------------------------------------------------

def test_encode_declares_a_buffers_size_in_bytes(impl):
    """An array('H') body (two bytes an item) is declared and framed by its bytes, as the same bytes would be."""
    template = impl.PublishTemplate(1, "", "key", frame_max=4096)
    items = array.array("H", range(3000))  # 6000 bytes: two frames
    assert template.encode(items) == template.encode(items.tobytes())
    out = bytearray()
    assert template.encode_into(out, items) == len(out) == len(template.encode(items.tobytes()))


def test_encode_into_leaves_out_unchanged_on_error(impl):
    """encode_into raising (no buffer for a body, a bad header, a body too large for encode_head_into) appends
    nothing: no partial frames are left in the output buffer."""
    template = impl.PublishTemplate(1, "", "key", frame_max=4096, content_type="text/plain")
    for call, error in [(lambda out: template.encode_into(out, "not bytes"), TypeError),
                        (lambda out: template.encode_into(out, b"body", None, None, {"k": object()}), Exception),
                        (lambda out: template.encode_head_into(out, b"x" * 5000), ValueError),
                        (lambda out: template.encode_into(out, b"body", 5), TypeError)]:
        out = bytearray(b"kept")
        with pytest.raises(error):
            call(out)
        assert out == b"kept"


@pytest.mark.parametrize("value", [5, 2**70, 1.0, bytearray(b"key")])
def test_short_strings_must_be_str_or_bytes(impl, value):
    """A routing key, exchange, content type or message id that is not str or bytes is a TypeError (an int is
    not turned into that many NUL bytes, nor 10**9 into a gigabyte)."""
    with pytest.raises(TypeError):
        impl.PublishTemplate(1, "", value)
    with pytest.raises(TypeError):
        impl.PublishTemplate(1, value, "key")
    with pytest.raises(TypeError):
        impl.PublishTemplate(1, "", "key", content_type=value)
    with pytest.raises(TypeError):
        impl.PublishTemplate(1, "", "key").encode(b"body", value)


# -- memory safety: Python code run in the middle of a call (each in a subprocess: a crash fails the test) -------

def run_isolated(name: str, *pieces: str, timeout: float = 60) -> None:
    """Run the code pieces (CODEC_IMPORT: `codec` is the named implementation) in a fresh interpreter; it must
    print ok."""
    prelude = f"import importlib\ncodec = importlib.import_module({MODULES[name]!r})\n"
    if name == "c":
        _load("c")
    code = "".join(textwrap.dedent(piece) for piece in pieces).replace("CODEC_IMPORT", prelude)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), (result.returncode, result.stderr[-3000:])


#: pika's own frames of a message at frame_max 4096: Connection._send_message(capture, ...) fills capture.frames.
_CAPTURE = """
    from pika import spec
    from pika.connection import Connection

    class Capture:
        _body_max_length = 4096 - 8
        frames = []
        def _output_marshaled_frames(self, frames):
            self.frames.extend(frames)
    capture = Capture()
"""

#: A delivery with headers (pika's decode_table runs, Python code) and a body of three frames at frame_max 4096.
_RACY_DELIVERY = _CAPTURE + """
    body = bytes(range(256)) * 40
    Connection._send_message(capture, 1, spec.Basic.Deliver("ctag", 1, False, "", "key"),
                             (spec.BasicProperties(headers={"a": 1}), body))
    method, header = Capture.frames[:2]
    sizes = []  # where each body frame's size field is
    at = len(method) + len(header)
    for piece in Capture.frames[2:]:
        sizes.append(at + 3)
        at += len(piece)
    data = bytearray(b"".join(Capture.frames))
    good = bytes(data)
"""


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_decode_survives_the_buffer_written_during_the_call(name):
    """Body frame sizes overwritten (60,000) while decode is in pika's decode_table (where a finaliser or another
    thread may run): the body is the one walked, nothing is copied past it (the C codec re-read the sizes)."""
    run_isolated(name, """
        import pika.data
        real_decode_table = pika.data.decode_table
        def decode_table(encoded, offset):
            for at in sizes:
                data[at:at + 4] = (60000).to_bytes(4, "big")
            return real_decode_table(encoded, offset)
        pika.data.decode_table = decode_table  # before the codec is imported: the C one looks it up once
        """, _RACY_DELIVERY, """
        CODEC_IMPORT
        events, end, status = codec.decode(data)
        assert (len(events), end, status) == (1, len(data), codec.DONE), (events, end, status)
        assert events[0][-1] == body and events[0][-2].headers == {"a": 1}
        print("ok")
        """)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_decode_with_a_thread_writing_the_buffer(name):
    """A thread writing 60,000 into the body frame sizes of a buffer that is decoded again and again (restored
    before each call), for a second: no crash, and a body decoded is the whole message's (the C codec used to
    segfault within a second)."""
    run_isolated(name, _RACY_DELIVERY, """
        import sys, threading, time
        CODEC_IMPORT
        sys.setswitchinterval(1e-6)
        stop = False
        bad = (60000).to_bytes(4, "big")
        def writer():
            while not stop:
                for at in sizes:
                    data[at:at + 4] = bad
        thread = threading.Thread(target=writer)
        thread.start()
        deadline = time.monotonic() + 1.0
        try:
            while time.monotonic() < deadline:
                data[:] = good
                events, end, status = codec.decode(data)
                for event in events:
                    assert event[-1] == body
        finally:
            stop = True
            thread.join()
        print("ok")
        """)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("new_type", ["x" * 250, "y"])
def test_encode_survives_the_template_reinitialised_during_the_call(name, new_type):
    """Headers whose items() calls the template's __init__ again (longer or shorter content type, other route):
    the message is encoded whole with the template as it was at the call (the C codec wrote the new content type
    into a frame sized for the old: an overflow, or uninitialised bytes sent)."""
    run_isolated(name, _CAPTURE, """
        CODEC_IMPORT
        body = b"b" * 5000
        template = codec.PublishTemplate(1, "ex", "key", frame_max=4096, content_type="t" * 200, delivery_mode=2)

        class Sneaky(dict):
            def items(self):
                template.__init__(3, "other", "route" * 10, frame_max=8192, content_type=NEW_TYPE, delivery_mode=1)
                return super().items()

        properties = spec.BasicProperties(content_type="t" * 200, delivery_mode=2, message_id="m", headers={"a": 1})
        Connection._send_message(capture, 1, spec.Basic.Publish(exchange="ex", routing_key="key"),
                                 (properties, body))
        expected = b"".join(Capture.frames)
        def reset():
            template.__init__(1, "ex", "key", frame_max=4096, content_type="t" * 200, delivery_mode=2)
        reset()
        assert template.encode(body, "m", None, Sneaky(a=1)) == expected
        reset()
        out = bytearray(b"x")
        assert template.encode_into(out, body, "m", None, Sneaky(a=1)) == len(expected) and out == b"x" + expected
        reset()
        out = bytearray()
        small = b"s" * 100
        Capture.frames.clear()
        Connection._send_message(capture, 1, spec.Basic.Publish(exchange="ex", routing_key="key"),
                                 (properties, small))
        expected = b"".join(Capture.frames)
        assert template.encode_head_into(out, small, "m", None, Sneaky(a=1)) == len(expected)
        assert out + small + b"\\xce" == expected
        assert template.content_type == NEW_TYPE  # the __init__ did happen, for the next message
        print("ok")
        """.replace("NEW_TYPE", repr(new_type)))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_template_without_init_raises(name):
    """PublishTemplate.__new__ without __init__: encoding raises AttributeError (the C codec crashed the
    interpreter: a division by zero, a NULL frame)."""
    run_isolated(name, """
        CODEC_IMPORT
        template = codec.PublishTemplate.__new__(codec.PublishTemplate)
        for call in (lambda: template.encode(b"body"), lambda: template.encode(b""),
                     lambda: template.encode_into(bytearray(), b"body"),
                     lambda: template.encode_head_into(bytearray(), b"body")):
            try:
                call()
            except AttributeError:
                pass
            else:
                raise SystemExit("no error")
        print("ok")
        """)
