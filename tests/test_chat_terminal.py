"""The chat in real terminals (tmux): keys typed as a person types them, screens read as a person reads them."""

import sys

import pytest

from chat_support import CHAT, chat, room_name
from support import program_env


@pytest.fixture
def room(request):
    return room_name(request)


def test_rich_listener_keeps_the_latest_rows(broker, room, terminal):
    """`listen --mode rich` draws a table of time, user and message, and keeps the newest rows on screen."""
    screen = terminal([sys.executable, str(CHAT), "--room", room, "--history", "0", "listen", "--mode", "rich"],
                      program_env(broker.url), height=14)
    screen.wait_for("connected to")
    lines = "".join(f"rich line {n:02d}\n" for n in range(1, 16))
    assert chat("--room", room, "send", "--username", "alice", "--message", "-", url=broker.url,
                stdin=lines).wait() == 0
    shown = screen.wait_for("rich line 15")
    assert "time" in shown and "user" in shown and "message" in shown
    assert "alice" in shown
    assert "rich line 01" not in shown, "the oldest rows made room for the newest"
    assert "rich line 14" in shown


@pytest.mark.parametrize("backend", ["rabbitmq", "pubsub"])
def test_two_people_in_two_terminals(backend, broker, room, terminal, request):
    """alice and bob each in a terminal: they type, each sees the other; Ctrl+C leaves with a notice."""
    if backend == "pubsub":
        emulator = request.getfixturevalue("pubsub_emulator")
        env = program_env("amqp://unused", **emulator.env(f"test-{room[-6:]}"))
    else:
        env = program_env(broker.url)

    def open_room(user):
        return terminal([sys.executable, str(CHAT), "--backend", backend, "--room", room, "room", "--username", user],
                        env, width=90, height=16)

    alice = open_room("alice")
    alice.wait_for("* alice joined", timeout=60)  # the first room also creates the topic/exchange
    bob = open_room("bob")
    alice.wait_for("* bob joined")
    bob.wait_for("* bob joined")
    if backend == "rabbitmq":
        assert "* alice joined" in bob.screen(), "bob entered later: the history showed him alice arriving"
    else:
        assert "keeps no history" in bob.screen()
    alice.type("hi bob, how is the queue?")
    bob.wait_for("alice: hi bob, how is the queue?")
    bob.type("all acked, alice")
    alice.wait_for("bob: all acked, alice")
    bob.keys("C-c")
    alice.wait_for("* bob left")
    bob.wait_for("[exit 0]")
    shown = alice.wait_for("connected to")
    assert f"alice in {room}: connected to" in shown
    print(shown)  # the capture docs/chat.md shows
