"""The chat's send and listen (print) through a real broker: everyone hears everyone, late joiners catch up."""

import json
import re

import pika
import pytest

from chat_support import (
    HOSTILE_NAME,
    HOSTILE_NAME_SHOWN,
    HOSTILE_TEXT,
    HOSTILE_TEXT_SHOWN,
    LISTENING,
    chat,
    publish_raw,
    room_name,
)
from support import wait_until

#: A text line: (who, text); the tests' guest user sends as alice, so alice is shown as "guest (as alice?)".
LINE = re.compile(r"^\d\d:\d\d:\d\d (\S+(?: \(as [^)]*\?\))?): (.*)$")


ALICE, BOB = "guest (as alice?)", "guest (as bob?)"  # what the broker vouches for: the tests' user, guest


@pytest.fixture
def room(request):
    return room_name(request)


def said(program) -> list[tuple[str, str]]:
    return program.matches(LINE)


def test_two_listeners_hear_two_users(broker, room):
    """Two listeners each print every message two users send, in order, once."""
    ears = [chat("--room", room, "--history", "0", "listen", "--count", "4", url=broker.url) for _ in range(2)]
    for ear in ears:
        ear.wait_for_line(LISTENING)
    for user, text in [("alice", "hi bob"), ("bob", "hi alice"), ("alice", "how are you?"), ("bob", "fine")]:
        sender = chat("--room", room, "send", "--username", user, "--message", text, url=broker.url)
        assert sender.wait() == 0, sender.output
    for ear in ears:
        assert ear.wait() == 0, ear.output
        assert said(ear) == [(ALICE, "hi bob"), (BOB, "hi alice"), (ALICE, "how are you?"), (BOB, "fine")]
        # The listener opens with one "connected" line (its printer's), not the connection's twin of it.
        assert sum("connected to" in line for line in ear.lines) == 1, ear.output


def test_a_late_listener_sees_the_last_messages(broker, room):
    """Messages said before a listener started: it sees the last --history of them, oldest first."""
    lines = "".join(f"message {n}\n" for n in range(1, 11))
    sender = chat("--room", room, "send", "--username", "carol", "--message", "-", url=broker.url, stdin=lines)
    assert sender.wait() == 0, sender.output
    late = chat("--room", room, "--history", "3", "listen", "--count", "4", url=broker.url)
    wait_until(lambda: len(said(late)) >= 3, 30, "the last three messages", lambda: late.output)
    assert [text for _, text in said(late)] == ["message 8", "message 9", "message 10"]
    assert chat("--room", room, "send", "--username", "dave", "--message", "and now", url=broker.url).wait() == 0
    assert late.wait() == 0, late.output
    assert said(late)[-1] == ("guest (as dave?)", "and now")


def test_the_seeds_subscriber_and_sender_still_work(broker, room):
    """The room is a plain fanout exchange: a seed-style exclusive queue hears us, and we hear the seed's JSON."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        channel.exchange_declare(room, exchange_type="fanout", durable=True)
        mine = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(mine, room)
        listener = chat("--room", room, "--history", "0", "listen", "--count", "1", url=broker.url)
        listener.wait_for_line(LISTENING)
        channel.basic_publish(room, "", json.dumps({"username": "seed", "message": "from the seed"}).encode())
        assert listener.wait() == 0, listener.output
        assert said(listener) == [("? (as seed?)", "from the seed")]
        assert chat("--room", room, "send", "--username", "erin", "--message", "to the seed",
                    url=broker.url).wait() == 0
        bodies = [json.loads(channel.basic_get(mine, auto_ack=True)[2]) for _ in range(2)]
        assert bodies[1]["username"] == "erin" and bodies[1]["message"] == "to the seed"
    finally:
        connection.close()


@pytest.mark.parametrize("args,complaint", [
    (["send", "--username", "x"], "send needs --message"),
    (["listen", "--mode", "loud"], "'loud' is not one of print, rich"),
    (["--backend", "kafka", "listen"], "'kafka' is not one of rabbitmq, pubsub"),
    (["--backend", "pubsub", "listen"], "needs --project"),
    (["send", "--username", "", "--message", "x"], "1 to 32 printable characters"),
])
def test_bad_usage_is_one_line_and_exit_2(args, complaint):
    """Wrong flags: one line naming the problem, exit 2, no traceback."""
    program = chat(*args, env={"PUBSUB_PROJECT_ID": "", "GOOGLE_CLOUD_PROJECT": ""})
    assert program.wait() == 2
    assert complaint in program.output and "Traceback" not in program.output
    assert len(program.lines) == 1, program.output


def test_any_body_is_shown_and_sigterm_stops_cleanly(broker, room):
    """A body that is not JSON (another client's) is shown as text from '?'; SIGTERM ends the listener with 0."""
    import signal

    listener = chat("--room", room, "--history", "0", "listen", url=broker.url)
    listener.wait_for_line(LISTENING)
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        connection.channel().basic_publish(room, "", b"plain text, [not] json")
    finally:
        connection.close()
    wait_until(lambda: said(listener), 30, "the plain body", lambda: listener.output)
    assert said(listener) == [("? (as ??)", "plain text, [not] json")]
    listener.signal(signal.SIGTERM)
    assert listener.wait() == 0, listener.output


def test_late_listeners_join_a_long_history_without_losing_the_connection(broker, room):
    """Joining finds the newest offset with a probe consumer: cancelling it must not make pika reject
    deliveries it still holds (a stream answers a reject by closing the connection, 540)."""
    lines = "".join(f"message {n}\n" for n in range(1, 401))
    sender = chat("--room", room, "send", "--username", "carol", "--message", "-", url=broker.url, stdin=lines)
    assert sender.wait() == 0, sender.output
    for _ in range(4):
        late = chat("--room", room, "--history", "3", "listen", "--count", "3", url=broker.url)
        assert late.wait() == 0, late.output
        assert [text for _, text in said(late)] == ["message 398", "message 399", "message 400"]
        assert "lost" not in late.output and "NOT_IMPLEMENTED" not in late.output, late.output


def test_received_control_characters_are_printed_as_escapes(broker, room):
    """A name and a message carrying terminal escapes are printed with every control character visible
    (nothing retitles, clears or overwrites the listener's terminal); accents and emoji stay as sent."""
    listener = chat("--room", room, "--history", "0", "listen", "--count", "2", url=broker.url)
    listener.wait_for_line(LISTENING)
    publish_raw(broker.url, room, {"username": HOSTILE_NAME, "message": HOSTILE_TEXT})
    publish_raw(broker.url, room, {"username": "zoë", "message": "café ✓ 😀"})
    assert listener.wait() == 0, listener.output
    assert not any(char in listener.output for char in "\x1b\x07\r\x9b\x7f"), repr(listener.output)
    assert said(listener) == [(HOSTILE_NAME_SHOWN, HOSTILE_TEXT_SHOWN), ("? (as zoë?)", "café ✓ 😀")]
