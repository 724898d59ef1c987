"""The message schema and how any body is rendered on one log line."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rabbitipc.consume.dedupe import RecentIds
from rabbitipc.message import Message, NotOurMessage, describe_body, printable


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
