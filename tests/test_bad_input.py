"""Input from anyone: text is shown, what cannot be handled is dead-lettered with a reason."""

import json
import time

import pytest

from support import (
    RECEIVED,
    SENT,
    admin_channel_call,
    get_all,
    publish_raw,
    queue_counts,
    queue_depth,
    wait_alive_until,
    wait_until,
)

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


def _queue_type(broker, name: str) -> str | None:
    result = broker.ctl("list_queues", "-q", "--no-table-headers", "name", "type")
    return next((line.split("\t")[1] for line in result.stdout.splitlines() if line.split("\t")[0] == name), None)


@pytest.mark.parametrize("exclusive", [pytest.param(True, id="exclusive-queues"),
                                       pytest.param(False, id="transient-queue")])
def test_a_deleted_dead_letter_queue_is_declared_again_as_at_start(run, broker, queue, exclusive):
    """<queue>.dead deleted under a running receiver: the next message to park declares it again with the
    type it got at start (quorum beside exclusive queues, classic beside a transient queue), and is parked."""
    exchange = f"{queue}-x"
    if exclusive:
        receiver = run("receiver", "--pattern", "broadcast", "--exchange", exchange, "--max-size", "100",
                       own_queue=False)
        dead = exchange + ".dead"
    else:
        receiver = run("receiver", "--queue-durable", "false", "--max-size", "100")
        dead = queue + ".dead"
    receiver.wait_for_line("consuming from queue")
    at_start = _queue_type(broker, dead)
    assert at_start == ("quorum" if exclusive else "classic")
    admin_channel_call(broker.url, lambda channel: channel.queue_delete(dead))
    if exclusive:
        admin_channel_call(broker.url, lambda channel: channel.basic_publish(exchange, "", b"x" * 500))
    else:
        publish_raw(broker.url, queue, b"x" * 500)
    receiver.wait_for_line("dead-lettered")
    assert queue_depth(broker.url, dead) == 1
    assert _queue_type(broker, dead) == at_start
    admin_channel_call(broker.url, lambda channel: channel.queue_delete(dead))


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


# -- issue 13: one message must never stop or stall a receiver ---------------------------------
def ours(message_id: str, seq: int = 1, sent_at: str = "1.0") -> bytes:
    """A body in our schema, sent_at given as the raw JSON number text."""
    return (f'{{"id":"{message_id}","seq":{seq},"sent_at":{sent_at},"host":"h","payload":"p{seq}"}}').encode()


HOSTILE = {
    "nested-100000-brackets": b"[" * 100_000,
    "sent_at-minus-1e308": ours("hostile", sent_at="-1e308"),
    "sent_at-10-to-the-400": ours("hostile", sent_at="1" + "0" * 400),
}


def assert_hostile_message_settled(broker, queue, receiver):
    """The hostile message left the work queue: handled as text, or dead-lettered with a reason."""
    wait_alive_until(receiver, lambda: queue_counts(broker, queue)[:2] == (0, 0), 30,
                     "the work queue empty, nothing unacked")
    for properties, _ in get_all(broker.url, queue + ".dead"):
        assert properties.headers[REASON], "a dead letter says why"
    assert "duplicate" not in receiver.output, "acks of messages handled before were lost"


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_body_neither_stops_the_receiver_nor_is_redelivered(run, broker, queue, body):
    """A body that breaks parsing or the latency sums is settled (text or dead letter); the receiver goes on."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    publish_raw(broker.url, queue, ours("before", seq=1, sent_at="%r" % time.time()))
    receiver.wait_for_line("received seq=1 id=before")
    publish_raw(broker.url, queue, body, message_id="hostile")
    publish_raw(broker.url, queue, ours("after", seq=2, sent_at="%r" % time.time()))
    wait_alive_until(receiver, lambda: "id=after" in receiver.output, 20, "the message after the hostile one")
    assert_hostile_message_settled(broker, queue, receiver)


@pytest.mark.parametrize("options", [("--handler", "slow_handler:handle", "--prefetch", "1"),
                                     ("--jsonl", "JSONL", "--prefetch", "1")], ids=["handler", "jsonl"])
def test_hostile_body_does_not_stall_a_receiver_with_a_handler_thread(run, broker, queue, tmp_path, options):
    """With --handler or --jsonl a hostile body is dead-lettered with the reason and the next message is handled."""
    options = [str(tmp_path / "out.jsonl") if option == "JSONL" else option for option in options]
    receiver = run("receiver", *options)
    receiver.wait_for_line("consuming from queue")
    publish_raw(broker.url, queue, HOSTILE["nested-100000-brackets"], message_id="hostile")
    publish_raw(broker.url, queue, ours("after", seq=2, sent_at="%r" % time.time()))
    wait_alive_until(receiver, lambda: "id=after" in receiver.output, 20, "the message after the hostile one")
    dead = wait_until(lambda: get_all(broker.url, queue + ".dead"), 10, "the hostile message dead-lettered")
    assert dead[0][0].message_id == "hostile" and dead[0][0].headers[REASON]
    assert_hostile_message_settled(broker, queue, receiver)


def test_another_clients_reused_message_ids_are_all_handled(run, broker, queue):
    """A client numbering its messages "1", "2", "1", "2" has each of them handled, none dropped as a duplicate."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    for body, message_id in ((b"first", "1"), (b"second", "2"), (b"third", "1"), (b"fourth", "2")):
        publish_raw(broker.url, queue, body, message_id=message_id)
    wait_until(lambda: receiver.output.count("received text") + receiver.output.count("duplicate") >= 4, 30,
               "four messages settled", lambda: receiver.output[-2000:])
    assert [line.rsplit("body=", 1)[1] for line in receiver.lines if "received text" in line] == \
        ["first", "second", "third", "fourth"]
