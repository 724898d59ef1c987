"""Test helpers: run the real programs as subprocesses and wait on what they log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pika

from rabbitipc.loglines import RECEIVED, SENT  # noqa: F401 - the tests import them from here

ROOT = Path(__file__).resolve().parent.parent
SENDER = ROOT / "sender" / "send.py"
RECEIVER = ROOT / "receiver" / "receive.py"
#: The pipeline stage and the chat have no script in the checkout: their console scripts, installed
#: beside this Python by run-tests.sh.
BIN = Path(sys.executable).parent
STAGE = BIN / "rabbitipc-stage"

#: Rows (fault, accepted, handled, lost, duplicated, extra) of the fault matrix, printed at the end.
FAULT_MATRIX: list[tuple[str, int, int, int, int, int]] = []

#: The limits of the conftest's limited_broker.
CONSUMER_TIMEOUT_MS = 3000
MAX_MESSAGE_SIZE = 128 * 1024


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "condition",
               on_timeout: Callable[[], str] | None = None):
    """Poll condition until truthy and return its value; fail with context after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail}")
        time.sleep(0.05)


class Program:
    """One running program (sender or receiver) with its log lines collected live."""

    def __init__(self, argv: list[str], env: dict[str, str], stdin: str | None = None,
                 new_session: bool = False, open_stdin: bool = False, cwd: Path = ROOT) -> None:
        """stdin: text written to the program's stdin, which is then closed; open_stdin: a pipe left open
        (write to self.proc.stdin)."""
        self.args = argv
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, env=env, text=True, start_new_session=new_session,
            stdin=subprocess.PIPE if stdin is not None or open_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if stdin is not None:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def matches(self, pattern: re.Pattern) -> list[tuple[str, ...]]:
        return [m.groups() for line in list(self.lines) if (m := pattern.search(line))]

    def ids(self, pattern: re.Pattern) -> list[str]:
        return [groups[1] for groups in self.matches(pattern)]

    def wait_for_line(self, needle: str | re.Pattern, timeout: float = 30, count: int = 1) -> None:
        pattern = needle if isinstance(needle, re.Pattern) else re.compile(re.escape(needle))
        wait_until(lambda: len(self.matches(pattern)) >= count or (self.proc.poll() is not None
                                                                   and len(self.matches(pattern)) >= count),
                   timeout, f"{count}x {pattern.pattern!r} in {Path(self.args[-1]).name} output",
                   lambda: self.output)

    def wait_count(self, pattern: re.Pattern, count: int, timeout: float = 30) -> None:
        wait_until(lambda: len(self.matches(pattern)) >= count, timeout,
                   f"{count} lines matching {pattern.pattern!r}", lambda: self.output[-4000:])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """Wait for exit and for all output to be read; return the exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args} still running after {timeout}s\n{self.output}") from None
        self._reader.join(10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)


def program_env(url: str, **extra: str) -> dict[str, str]:
    # RABBITIPC_PURE_PYTHON goes through: `RABBITIPC_PURE_PYTHON=1 ./run-tests.sh` runs the programs on the fallback.
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("RABBITIPC_") or k == "RABBITIPC_PURE_PYTHON") and k != "AMQP_URL"}
    # Tests check every message's own log line, so the per-second line budget is lifted.
    env.update(AMQP_URL=url, RABBITIPC_MAX_RETRY_DELAY="1", PYTHONUNBUFFERED="1", RABBITIPC_LOG_RATE="1000000",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])))
    env.update(extra)
    return env


def jsonl_records(path: Path) -> list:
    """The JSON records of a JSON-lines file another process may still be appending to: complete lines only
    (a line caught half written is read on the next poll)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def queue_depth(url: str, queue: str) -> int:
    """Messages ready in a queue, by a passive declare on a fresh connection."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def get_all(url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Drain a queue with basic_get and return (properties, body) for each message."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    out = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((properties, body))
    finally:
        connection.close()


def publish_raw(url: str, queue: str, body: bytes, **properties) -> None:
    """Publish like another client would (tutorial style, no rabbitipc code)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, pika.BasicProperties(**properties), mandatory=True)
    finally:
        connection.close()


def queue_counts(broker, queue: str) -> tuple[int, int, int] | None:
    """(ready, unacked, consumers) of a queue as rabbitmqctl shows them, None when it does not exist."""
    result = broker.ctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                        "messages_unacknowledged", "consumers")
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == queue:
            return int(fields[1]), int(fields[2]), int(fields[3])
    return None


def admin_channel_call(url: str, operation: Callable) -> None:
    """Run operation(channel) on a fresh connection, as an operator would in the management UI."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        operation(connection.channel())
    finally:
        connection.close()


def wait_alive_until(program: Program, condition: Callable[[], object], timeout: float, what: str):
    """wait_until that fails at once, with the program's output, when the program exits meanwhile."""
    value = wait_until(lambda: condition() or program.proc.poll() is not None, timeout, what,
                       lambda: program.output[-3000:])
    assert program.proc.poll() is None, f"exited {program.proc.returncode} while waiting for {what}\n" \
                                        + program.output[-3000:]
    return value


def receiver_killed_mid_stream(run: Callable[..., Program], receiver_args: tuple[str, ...],
                               sender_args: tuple[str, ...], killed_after: int) -> tuple[Program, Program]:
    """A receiver SIGKILLed once it received `killed_after` messages of a sender's stream (holding
    unacked ones); return (the killed receiver, the sender), once the sender exited 0."""
    first = run("receiver", *receiver_args)
    first.wait_for_line("consuming from queue")
    sender = run("sender", *sender_args)
    first.wait_count(RECEIVED, killed_after)
    first.signal(signal.SIGKILL)
    first.wait()
    assert sender.wait(60) == 0, sender.output
    return first, sender
