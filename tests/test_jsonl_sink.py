"""--jsonl: every message lands in the file exactly once, even across a receiver crash."""

import base64
import binascii
import json
import signal
from collections import Counter

from support import RECEIVED, SENT, publish_raw, queue_depth, wait_until


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_crash_and_restart_leave_each_message_once_in_the_file(run, broker, queue, tmp_path):
    """SIGKILL mid-stream, restart on the same file: all accepted ids present, none twice."""
    path = tmp_path / "messages.jsonl"
    first = run("receiver", "--jsonl", str(path), "--prefetch", "50")
    first.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "300", "--rate", "300")
    first.wait_count(RECEIVED, 40)
    first.signal(signal.SIGKILL)
    first.wait()
    assert sender.wait(60) == 0, sender.output
    second = run("receiver", "--jsonl", str(path))
    accepted = set(sender.ids(SENT))
    wait_until(lambda: {record["id"] for record in lines(path)} >= accepted, 30, "every message in the file",
               lambda: second.output[-2000:])
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "queue drained")
    counts = Counter(record["id"] for record in lines(path))
    assert len(counts) == 300 and max(counts.values()) == 1
    assert {"id", "seq", "sent_at", "host", "payload", "received_at"} <= set(lines(path)[0])


def test_unusable_file_is_a_one_line_usage_error(run, tmp_path):
    """A --jsonl path that cannot be opened: exit 2 with one line naming it, before consuming anything."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    receiver = run("receiver", "--jsonl", str(directory))
    assert receiver.wait(30) == 2, receiver.output
    assert f"receiver: error: --jsonl {directory}: Is a directory" in receiver.output
    assert "Traceback" not in receiver.output and "consuming" not in receiver.output


def base64_of(value) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        return None


def test_binary_body_is_kept_byte_for_byte(run, broker, queue, tmp_path):
    """A body that is not UTF-8 is stored recoverably (base64 with a marker), not with its bytes replaced."""
    path = tmp_path / "messages.jsonl"
    receiver = run("receiver", "--jsonl", str(path))
    receiver.wait_for_line("consuming from queue")
    body = bytes(range(256))
    publish_raw(broker.url, queue, body, message_id="binary-1")
    wait_until(lambda: lines(path), 30, "the record", lambda: receiver.output[-2000:])
    record = lines(path)[0]
    assert record["id"] == "binary-1"
    assert any(base64_of(value) == body for value in record.values()), record
