"""Input from anyone: text is shown, what cannot be handled is dead-lettered with a reason."""

import json

from support import RECEIVED, SENT, get_all, publish_raw, queue_depth, wait_until

REASON = "x-rabbitipc-reason"


def test_plain_text_from_another_client_is_shown_escaped_and_acked(run, broker, queue):
    """A tutorial-style text body is logged as text on one line, control characters escaped."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    publish_raw(broker.url, queue, b"Hello World!\n\x1b[31mred\x00" + b"z" * 500)
    receiver.wait_for_line("received text")
    line = next(line for line in receiver.lines if "received text" in line)
    assert "body=Hello World!\\n\\x1b[31mred\\x00zz" in line
    assert "...(+" in line and "\x1b" not in line
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "message acked")
    assert get_all(broker.url, queue + ".dead") == []


def test_message_over_the_size_limit_goes_to_the_dead_letter_queue(run, broker, queue):
    """A body over --max-size is moved to <queue>.dead with the reason, not lost, not requeued."""
    receiver = run("receiver", "--max-size", "100")
    sender = run("sender", "--count", "2", "--rate", "0", "--size", "500")
    assert sender.wait() == 0, sender.output
    receiver.wait_for_line("dead-lettered", count=2)
    dead = wait_until(lambda: get_all(broker.url, queue + ".dead"), 10, "dead letters")
    assert len(dead) == 2
    properties, body = dead[0]
    assert "exceeds the 100-byte limit" in properties.headers[REASON]
    assert json.loads(body)["id"] in sender.ids(SENT)
    assert queue_depth(broker.url, queue) == 0


def test_handler_failure_dead_letters_that_message_and_the_rest_flow(run, broker, queue):
    """A handler exception sends only that message to <queue>.dead; the others are handled."""
    receiver = run("receiver", "--handler", "slow_handler:fail_on_boom")
    sender = run("sender", "--message", "-", "--rate", "0", stdin="ok 1\nboom\nok 2\n")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 2)
    receiver.wait_for_line("dead-lettered")
    dead = wait_until(lambda: get_all(broker.url, queue + ".dead"), 10, "dead letter")
    assert [json.loads(body)["payload"] for _, body in dead] == ["boom"]
    assert dead[0][0].headers[REASON] == "handler failed: RuntimeError: cannot handle boom"
    assert receiver.proc.poll() is None, "the receiver must keep running"


def test_strict_mode_dead_letters_foreign_bodies(run, broker, queue):
    """With --strict, a body that is not our JSON is dead-lettered with the parse reason."""
    receiver = run("receiver", "--strict")
    receiver.wait_for_line("consuming from queue")
    publish_raw(broker.url, queue, b'{"id": 5}')
    receiver.wait_for_line("dead-lettered")
    dead = wait_until(lambda: get_all(broker.url, queue + ".dead"), 10, "dead letter")
    assert dead[0][0].headers[REASON].startswith("not a rabbitipc message: field 'id'")


def test_redelivered_duplicate_is_not_handled_twice(run, broker, queue):
    """The same message id published twice is handled once and logged as a duplicate."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    body = json.dumps({"id": "dup-1", "seq": 1, "sent_at": 0.0, "host": "h", "payload": "p"}).encode()
    publish_raw(broker.url, queue, body)
    publish_raw(broker.url, queue, body)
    receiver.wait_for_line("duplicate seq=1 id=dup-1")
    assert receiver.ids(RECEIVED) == ["dup-1"]
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "both acked")
