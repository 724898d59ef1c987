"""The message schema and how any body is rendered on one log line."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rabbitipc.consume.dedupe import RecentIds
from rabbitipc.message import PLAIN_MIN, Message, NotOurMessage, _loads, _loads_plain_payload, describe_body, printable
from rabbitipc.programs.sender import payloads


def test_message_round_trips_through_json():
    """What the sender encodes, the receiver decodes to the same fields."""
    message = Message.new(7, "host-a", "héllo")
    assert Message.parse(message.body()) == message
    assert message.properties().delivery_mode == 2 and message.properties().message_id == message.id


@pytest.mark.parametrize("body,reason", [
    (b"plain", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1]", "JSON list, not an object"),
    (b'{"id": "x", "seq": true, "sent_at": 1, "host": "h", "payload": "p"}', "field 'seq'"),
])
def test_foreign_bodies_are_recognised_with_a_reason(body, reason):
    """Bodies that are not ours raise NotOurMessage saying why."""
    with pytest.raises(NotOurMessage, match=reason):
        Message.parse(body)


def test_printable_escapes_and_truncates():
    """Control characters are escaped and long text is cut with a count of what was left out."""
    assert printable("a\nb\x1b\\c") == "a\\nb\\x1b\\\\c"
    assert printable("x" * 10, limit=4) == "xxxx...(+6 chars)"
    assert describe_body(b"\xffok") == "\ufffdok"


def test_printable_keeps_text_readable_and_shows_every_control_character():
    """Accents and emoji stay; C0 (ESC), DEL, C1 and bidirectional overrides become visible escapes; no limit."""
    assert printable("café ✓ 😀 zoë", None) == "café ✓ 😀 zoë"
    assert printable("\x1b]0;t\x07\x7f\x9b\u202egnp.exe", None) == "\\x1b]0;t\\x07\\x7f\\x9b\\u202egnp.exe"
    assert printable("y" * 500, None) == "y" * 500


def test_recent_ids_forget_the_oldest():
    """The duplicate window is bounded: the oldest id is forgotten first."""
    recent = RecentIds(2)
    for key in ("a", "b", "c"):
        recent.add(key)
    assert "a" not in recent and "b" in recent and "c" in recent and len(recent) == 2


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(min_value=0, max_value=2**63), host=st.text(), payload=st.text(),
       message_id=st.text(), sent_at=st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40))
def test_body_is_exactly_what_json_dumps_writes(seq, host, payload, message_id, sent_at):
    """The hand-built body is byte for byte json.dumps(compact, UTF-8), and parses back."""
    message = Message(message_id, seq, sent_at, host, payload)
    expected = json.dumps(message.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    assert message.body() == expected
    assert Message.parse(message.body()) == message


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(min_value=0, max_value=2**63), host=st.text(), message_id=st.text(),
       payload=st.text(min_size=PLAIN_MIN), sent_at=st.floats(allow_nan=False, allow_infinity=False),
       plain=st.booleans())
def test_long_payloads_encode_and_parse_as_json_does(seq, host, message_id, payload, sent_at, plain):
    """Payloads past PLAIN_MIN, with or without characters to escape, give json.dumps's bytes and parse back."""
    if plain:
        payload = "".join(c for c in payload if c not in '"\\' and ord(c) >= 0x20 and not 0xD800 <= ord(c) < 0xE000)
        payload = (payload + "x" * PLAIN_MIN)[:max(PLAIN_MIN, len(payload))]
    message = Message(message_id, seq, sent_at, host, payload)
    expected = json.dumps(message.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    assert message.body() == expected
    assert Message.parse(message.body()) == message


_PIECES = st.sampled_from(['{"', '"', "\\", ",", ":", "}", "{", "[", "]", '"payload":"', ',"payload":"', '""',
                           '"id"', "1", "true", "\n", " ", "é", "x" * 40]) | st.text(max_size=5)


_KEYS = st.sampled_from(["id", "payload", "host", ',"payload":"', '"}', "\\"]) | st.text(max_size=3)
_VALUES = st.text(max_size=8) | st.integers() | st.floats() | st.booleans() | st.none() | st.lists(st.integers(),
                                                                                                   max_size=2)
#: The start of an object of ours or of anyone's: a real object without its closing brace, sometimes mangled.
_HEADS = st.builds(lambda obj, ascii, cut, junk: [json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii)[:-1]
                                                  [:None if cut is None else -cut], *junk],
                   st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=4), st.booleans(),
                   st.integers(-6, 3).map(lambda n: n if n > 0 else None),
                   st.integers(-6, 2).flatmap(lambda n: st.lists(_PIECES, min_size=max(n, 0), max_size=max(n, 0))))


@settings(max_examples=1000, deadline=None)
@given(head=st.lists(_PIECES, max_size=12) | _HEADS, pad=st.integers(0, 3).map(bool),
       tail=st.just(["text"]) | st.just(["é"]) | st.lists(_PIECES, max_size=6))
def test_any_long_body_parses_exactly_as_json_loads(head, tail, pad):
    """The receiver's quick path for long payloads never parses a body differently from json.loads."""
    body = ("".join(head) + ',"payload":"' + "".join(tail) + ("y" * PLAIN_MIN if pad else "") + '"}').encode(
        "utf-8", "surrogatepass")
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError) as exc:
        expected = type(exc)
    try:
        got = _loads(body)
    except (ValueError, RecursionError) as exc:
        got = type(exc)
    assert got == expected or (isinstance(expected, type) and isinstance(got, type) and issubclass(got, ValueError)
                               and issubclass(expected, ValueError))


@pytest.mark.parametrize("head", [
    '{"id":"a","payload":"first"', '{"host":"\\",\\"payload\\":\\"","payload":"x","n":[1,{"payload":"y"}]',
    '{"a":"b', '{"a":"b\\', '{"a":1', '{"a":tru', '{"a":{"b":1}', '{"a":[1', '{"\\ud800":1', '{"a":NaN',
])
def test_tricky_heads_parse_exactly_as_json_loads(head):
    """Quotes, escapes, nesting and cut tokens before the payload: the quick path agrees with json.loads."""
    body = (head + ',"payload":"' + "z" * PLAIN_MIN + '"}').encode()
    try:
        expected = json.loads(body)
    except ValueError:
        with pytest.raises(ValueError):
            _loads(body)
        return
    assert _loads(body) == expected


def test_a_long_plain_body_takes_the_quick_path():
    """Our sender's long body is parsed from its short head (the quick path is really taken)."""
    message = Message.new(1, "h", "p" * 65536)
    assert _loads_plain_payload(message.body())["payload"] == message.payload
    assert _loads_plain_payload(b'{"id":"a","payload":"x\\"y"}') is None


@pytest.mark.parametrize("size", [None, 0, 5, 7, 8, 9, 10, 100, 65536])
def test_generated_payloads_are_hello_n_padded_or_cut_to_the_size(size):
    """--size: 'hello N', padded with ' xxx...' or cut to exactly size characters, as N gains digits."""
    texts = list(itertools.islice(payloads(None, size), 0, 1001))
    for n in (1, 9, 10, 99, 100, 999, 1000, 1001):
        expected = f"hello {n}" if size is None else (f"hello {n}" + " " + "x" * size)[:size]
        assert texts[n - 1] == expected
