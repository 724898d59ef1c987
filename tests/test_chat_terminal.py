"""The chat in real terminals (tmux): keys typed as a person types them, screens read as a person reads them."""

import sys

import pytest

from chat_support import CHAT, HOSTILE_NAME, HOSTILE_TEXT, chat, publish_raw, room_name
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


@pytest.mark.parametrize("view", ["rich", "room"])
def test_hostile_name_and_message_do_not_drive_the_terminal(broker, room, terminal, view):
    """A received name and message full of terminal escapes: the pane keeps its title, the screen keeps
    its lines (status and earlier messages), and the escapes are shown as text."""
    argv = ["listen", "--mode", "rich"] if view == "rich" else ["room", "--username", "alice"]
    screen = terminal([sys.executable, str(CHAT), "--room", room, "--history", "0", *argv], program_env(broker.url),
                      height=16)
    screen.wait_for("connected to")
    title = screen.title()
    publish_raw(broker.url, room, {"username": "carol", "message": "a line before"})
    screen.wait_for("a line before")
    publish_raw(broker.url, room, {"username": HOSTILE_NAME, "message": HOSTILE_TEXT})
    publish_raw(broker.url, room, {"username": "carol", "message": "a line after"})
    shown = screen.wait_for("a line after")
    assert "\\x1b[2J\\x1b[31mFAKE SYSTEM" in shown, shown  # the escapes are text on the screen
    assert "x1b]2;PWNED" in shown, shown
    assert screen.title() == title, "a received name or message retitled the terminal"
    assert "a line before" in shown and "connected to" in shown, "the screen was cleared"


@pytest.mark.parametrize("backend", ["rabbitmq", "pubsub"])
def test_two_people_in_two_terminals(backend, broker, room, terminal, request):
    """alice and bob each in a terminal: they type, each sees the other; Ctrl+C leaves with a notice."""
    if backend == "pubsub":
        emulator = request.getfixturevalue("pubsub_emulator")
        env = program_env("amqp://unused", **emulator.env(f"test-{room[-6:]}"))
    else:
        env = program_env(broker.url)

    vouch = "guest" if backend == "rabbitmq" else "?"  # Pub/Sub vouches for no name

    def name(user):
        return f"{vouch} (as {user}?)"

    def open_room(user):
        return terminal([sys.executable, str(CHAT), "--backend", backend, "--room", room, "room", "--username", user],
                        env, width=90, height=16)

    alice = open_room("alice")
    alice.wait_for(f"* {name('alice')} joined", timeout=60)  # the first room also creates the topic/exchange
    bob = open_room("bob")
    alice.wait_for(f"* {name('bob')} joined")
    bob.wait_for(f"* {name('bob')} joined")
    if backend == "rabbitmq":
        assert f"* {name('alice')} joined" in bob.screen(), "bob entered later: history showed him alice arriving"
    else:
        assert "keeps no history" in bob.screen()
    alice.type("hi bob, how is the queue?")
    bob.wait_for(f"{name('alice')}: hi bob, how is the queue?")
    bob.type("all acked, alice")
    alice.wait_for(f"{name('bob')}: all acked, alice")
    bob.keys("C-c")
    alice.wait_for(f"* {name('bob')} left")
    bob.wait_for("[exit 0]")
    shown = alice.wait_for("connected to")
    assert f"{name('alice')} in {room}: connected to" in shown
    print(shown)  # the capture docs/chat.md shows
