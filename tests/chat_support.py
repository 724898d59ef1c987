"""Chat test helpers: the chat program as a subprocess, the Pub/Sub emulator, a tmux terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devtools.localbroker import free_port, port_open
from support import BIN, Program, program_env, wait_until

CHAT = BIN / "rabbitipc-chat"
#: The line `listen` logs once it reads the room: from then on, nothing said is missed.
LISTENING = "chat.printer: connected to"
EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def room_name(request) -> str:
    """A room of the test's own, so tests never hear each other."""
    return f"chat-{request.node.name[:30]}-{uuid.uuid4().hex[:6]}".replace("[", "-").replace("]", "")


def chat(*args: str, url: str = "amqp://unused", env: dict | None = None, stdin: str | None = None) -> Program:
    """Start `rabbitipc-chat ARGS...` (the venv's console script) with its output collected."""
    return Program([sys.executable, str(CHAT), *args], program_env(url, **(env or {})), stdin=stdin)


class PubSubEmulator:
    """Google's Pub/Sub emulator on a free port, started and stopped by the tests."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = workdir / "emulator.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(EMULATOR), "--host=127.0.0.1", f"--port={self.port}"],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, timeout,
                   f"the Pub/Sub emulator on port {self.port}", self.tail)
        if self.proc.poll() is not None:
            raise AssertionError(f"the Pub/Sub emulator exited with {self.proc.returncode}\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)  # the launcher script runs java in the same session
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)

    def env(self, project: str = "rabbitipc-test") -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host, "PUBSUB_PROJECT_ID": project}


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory):
    """The Pub/Sub emulator for the session (its log is printed when it fails to start)."""
    if not EMULATOR.exists() or shutil.which("java") is None:
        if os.environ.get("CI"):
            pytest.fail(f"the Pub/Sub emulator ({EMULATOR}) or java is missing")
        pytest.skip(f"needs the Pub/Sub emulator at {EMULATOR} and java")
    emulator = PubSubEmulator(tmp_path_factory.mktemp("pubsub"))
    emulator.start()
    yield emulator
    emulator.stop()


class Terminal:
    """A program in a tmux window of its own: type into it and read the screen as a person would."""

    def __init__(self, argv: list[str], env: dict[str, str], width: int = 100, height: int = 24) -> None:
        self.socket = f"rabbitipc-test-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height
        # The size is the pane's: COLUMNS/LINES from the test process (xdist's workers set 80x24) would
        # make the program draw for another screen.
        env = {**{k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")},
               "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        exports = " ".join(f"{key}={_quote(value)}" for key, value in env.items())
        command = f"env -i {exports} {' '.join(_quote(a) for a in argv)}; echo \"[exit $?]\"; sleep 600"
        self._tmux("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "t", command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=20).stdout

    def type(self, text: str, enter: bool = True) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self._tmux("send-keys", "-t", "t", "Enter")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def title(self) -> str:
        """The pane's title, which a program can set with an OSC 0 or 2 sequence."""
        return self._tmux("display-message", "-p", "-t", "t", "#{pane_title}").strip()

    def wait_for(self, text: str, timeout: float = 30, count: int = 1) -> str:
        wait_until(lambda: self.screen().count(text) >= count, timeout, f"{text!r} on the screen",
                   lambda: self.screen())
        return self.screen()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


#: A hostile message: retitles the terminal, clears the screen, draws a red line, overwrites it with CR.
HOSTILE_TEXT = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mFAKE SYSTEM LINE\x1b[0m\rforged \x9b2J\x7f"
#: A hostile name: retitles the terminal (OSC 2).
HOSTILE_NAME = "\x1b]2;PWNED\x07eve"
#: How the chat shows them: every control character a visible escape, the rest as sent.
HOSTILE_TEXT_SHOWN = "\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mFAKE SYSTEM LINE\\x1b[0m\\rforged \\x9b2J\\x7f"
HOSTILE_NAME_SHOWN = "? (as \\x1b]2;PWNED\\x07eve?)"


def publish_raw(url: str, room: str, message: dict, **properties) -> None:
    """Publish a body to a room's exchange as any client could, bypassing the chat program's checks
    (confirmed: a refusal raises pika's ChannelClosedByBroker)."""
    import json

    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(room, "", json.dumps(message).encode(), pika.BasicProperties(**properties))
    finally:
        connection.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def terminal():
    """Open programs in tmux terminals; all are closed at the end of the test."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing")
        pytest.skip("needs tmux")
    opened: list[Terminal] = []

    def open_terminal(argv: list[str], env: dict[str, str], **size) -> Terminal:
        term = Terminal(argv, env, **size)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


# -- the room in Textual's headless pilot ------------------------------------------------------
def rabbit_room(url: str, room: str, username: str, history: int = 20):
    """A ChatRoom app of `username` on a RabbitMQ room, reconnecting quickly."""
    from rabbitipc.backoff import RetryPolicy
    from rabbitipc.chat.rabbitmq import RabbitBackend
    from rabbitipc.chat.room import ChatRoom
    from rabbitipc.connection import Broker

    backend = RabbitBackend(Broker(url, retry=RetryPolicy(timeout=120, min_delay=0.2, max_delay=1)), room,
                            name=f"test-{username}")
    return ChatRoom(backend, username, history)


async def until(pilot, condition, timeout: float = 30, what: str = "condition", show=None) -> None:
    """Let the app run until condition() holds; fail with what the screen shows after timeout."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            app = show or pilot.app
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; {app.username} sees:\n"
                                 + "\n".join(app.shown) + f"\nstatus: {app.status_line}")
        await pilot.pause(0.05)


async def type_line(pilot, text: str) -> None:
    """Type text key by key, then Enter, as a person at the keyboard."""
    await pilot.press(*text, "enter")


def sees(app, text: str) -> bool:
    return any(line.endswith(text) for line in app.shown)
