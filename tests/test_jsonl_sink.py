"""--jsonl: every message lands in the file exactly once, even across a receiver crash."""

import base64
import binascii
import json
import signal
import time
from collections import Counter

from rabbitipc.consume.sinks import DIGEST_FIELD
from rabbitipc.message import Message, payload_digest
from rabbitipc.names import BODY_DIGEST_HEADER
from support import RECEIVED, SENT, get_all, publish_raw, queue_depth, receiver_killed_mid_stream, wait_until


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_crash_and_restart_leave_each_message_once_in_the_file(run, broker, queue, tmp_path):
    """SIGKILL mid-stream, restart on the same file: all accepted ids present, none twice."""
    path = tmp_path / "messages.jsonl"
    _, sender = receiver_killed_mid_stream(run, ("--jsonl", str(path), "--prefetch", "50"),
                                           ("--count", "300", "--rate", "300"), killed_after=40)
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
    assert f"rabbitipc-receive: error: --jsonl {directory}: Is a directory" in receiver.output
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


def publish_keyed(url, queue, key, payload):
    """Publish as the HTTP front does for an Idempotency-Key: the key as the id, the payload's digest in a header."""
    body = Message(key, 1, time.time(), "front", payload).body()
    digest = {BODY_DIGEST_HEADER: payload_digest(payload)}
    publish_raw(url, queue, body, message_id=key, delivery_mode=2, headers=digest)


def test_a_key_reused_for_another_body_after_a_restart_is_dead_lettered_not_dropped(run, broker, queue, tmp_path):
    """After a restart, a key in the file with another body digest is dead-lettered; a true retry is acked."""
    path = tmp_path / "messages.jsonl"
    first = run("receiver", "--jsonl", str(path))
    first.wait_for_line("consuming from queue")
    publish_keyed(broker.url, queue, "order-1", '{"order":1}')
    wait_until(lambda: lines(path), 30, "the record", lambda: first.output[-2000:])
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0, first.output
    second = run("receiver", "--jsonl", str(path))  # remembers no id in memory: only the file knows order-1
    second.wait_for_line("consuming from queue")
    publish_keyed(broker.url, queue, "order-1", '{"order":"another"}')
    publish_keyed(broker.url, queue, "order-1", '{"order":1}')  # a true retry
    second.wait_for_line("dead-lettered id=order-1")
    second.wait_for_line(f"id=order-1 already in {path}")
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "queue drained")
    records = lines(path)
    assert [record["id"] for record in records] == ["order-1"], records
    assert records[0][DIGEST_FIELD] == payload_digest('{"order":1}')
    parked = get_all(broker.url, f"{queue}.dead")
    assert len(parked) == 1, parked
    properties, body = parked[0]
    assert json.loads(body)["payload"] == '{"order":"another"}'
    assert "Idempotency-Key conflict: id order-1" in properties.headers["x-rabbitipc-reason"], properties.headers
    assert second.ids(RECEIVED) == []


def test_records_written_without_a_digest_still_load_and_count_as_handled(run, broker, queue, tmp_path):
    """A file from before digests were stored loads: its ids are acked as duplicates, whatever digest comes."""
    path = tmp_path / "messages.jsonl"
    old = {"id": "order-9", "seq": 1, "sent_at": 1.0, "host": "old", "payload": "{}", "received_at": 2.0}
    path.write_text(json.dumps(old) + "\n")
    receiver = run("receiver", "--jsonl", str(path))
    receiver.wait_for_line("consuming from queue")  # (the queue exists: a message published before is unroutable)
    assert f"{path} holds 1 messages already" in receiver.output
    publish_keyed(broker.url, queue, "order-9", '{"order":"any"}')
    publish_keyed(broker.url, queue, "order-10", '{"order":10}')
    receiver.wait_for_line(f"id=order-9 already in {path}")
    wait_until(lambda: len(lines(path)) == 2, 30, "the new record", lambda: receiver.output[-2000:])
    assert lines(path)[0] == old
    assert lines(path)[1][DIGEST_FIELD] == payload_digest('{"order":10}')
    assert get_all(broker.url, f"{queue}.dead") == []
