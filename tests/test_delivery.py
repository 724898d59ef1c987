"""Messages sent are received: exactly once, shared between receivers, drained after an outage."""

import sys
from collections import Counter

from support import RECEIVED, SENDER, SENT, Program, jsonl_records, program_env, queue_counts, queue_depth, wait_until


def test_every_message_sent_is_received_exactly_once(run):
    """N messages from the sender each show up once in the receiver's log, with latency."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "50", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 50)
    sent = sender.ids(SENT)
    assert len(sent) == 50 and len(set(sent)) == 50
    assert sorted(receiver.ids(RECEIVED)) == sorted(sent)
    assert [int(seq) for seq, _ in sender.matches(SENT)] == list(range(1, 51))
    assert "latency_ms=" in receiver.output


def test_acks_of_a_slow_stream_go_out_without_waiting_for_more_messages(run, broker, queue):
    """Acks are batched (by count and by time): the last of a few messages is acked while the receiver idles."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "5", "--rate", "20")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 5)
    wait_until(lambda: queue_counts(broker, queue) == (0, 0, 1), 5, "all 5 acked, the receiver still consuming",
               lambda: f"ready, unacked, consumers: {queue_counts(broker, queue)}")
    assert receiver.proc.poll() is None


def test_default_sender_sleeps_random_intervals(run, tmp_path):
    """Without --rate the sender pauses a random time between min and max interval."""
    path = tmp_path / "messages.jsonl"
    receiver = run("receiver", "--jsonl", str(path))
    sender = run("sender", "--count", "3", "--min-interval", "0.2", "--max-interval", "0.4", "--seed", "7")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 3)
    wait_until(lambda: len(jsonl_records(path)) >= 3, 30, "3 records", lambda: receiver.output[-2000:])
    # Each message's sent_at is taken when it is made, so its gaps are the pauses themselves; the
    # "sent" lines come at confirm time, and a late confirm shortened the next gap under load.
    seconds = [record["sent_at"] for record in sorted(jsonl_records(path), key=lambda record: record["seq"])]
    gaps = [b - a for a, b in zip(seconds, seconds[1:])]
    assert all(0.19 <= gap <= 1.0 for gap in gaps), gaps


def test_two_receivers_share_the_work(run):
    """Two receivers on one queue split the messages between them, none handled twice."""
    first, second = run("receiver"), run("receiver")
    first.wait_for_line("consuming from queue")
    second.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "40", "--rate", "100")
    assert sender.wait() == 0, sender.output
    wait_until(lambda: len(first.ids(RECEIVED)) + len(second.ids(RECEIVED)) >= 40, 30, "40 received")
    a, b = first.ids(RECEIVED), second.ids(RECEIVED)
    assert a and b, "both receivers should get a share"
    assert sorted(a + b) == sorted(sender.ids(SENT))
    assert not set(a) & set(b)


def test_backlog_drains_when_a_receiver_comes_back(run, broker, queue):
    """With every receiver down the messages wait in the queue; the next receiver gets them all."""
    sender = run("sender", "--count", "30", "--rate", "0")
    assert sender.wait() == 0, sender.output
    assert queue_depth(broker.url, queue) == 30
    receiver = run("receiver")
    receiver.wait_count(RECEIVED, 30)
    assert Counter(receiver.ids(RECEIVED)) == Counter(sender.ids(SENT))
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "empty queue")


def test_stdin_gives_one_message_per_line(run):
    """--message - sends each line of standard input as one message, then stops."""
    receiver = run("receiver")
    sender = run("sender", "--message", "-", "--rate", "0", stdin="alpha\nbeta\ngamma\n")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 3)
    payloads = [line.rsplit("payload=", 1)[1] for line in receiver.lines if " received seq=" in line]
    assert payloads == ["alpha", "beta", "gamma"]


def test_stdin_lines_go_out_as_they_come_without_the_random_pause(run, broker, queue):
    """--message - without --rate: a line is sent (and confirmed) while stdin stays open, and piped lines skip
    the random sleeps between generated messages."""
    env = {"RABBITIPC_MIN_INTERVAL": "30", "RABBITIPC_MAX_INTERVAL": "30"}  # the random pause, made obvious
    live = Program([sys.executable, str(SENDER), "--queue", queue, "--message", "-"], program_env(broker.url, **env),
                   open_stdin=True)
    try:
        for n in (1, 2):
            live.proc.stdin.write(f"typed {n}\n")
            live.proc.stdin.flush()
            live.wait_count(SENT, n, timeout=20)  # before stdin closes, and without a 30 s pause
        live.proc.stdin.close()
        assert live.wait(30) == 0, live.output
    finally:
        live.stop()
    piped = run("sender", "--message", "-", env=env, stdin="".join(f"line {n}\n" for n in range(1, 6)))
    assert piped.wait(25) == 0, piped.output  # 4 pauses of 30 s before
    assert len(piped.ids(SENT)) == 5
    assert queue_depth(broker.url, queue) == 7


def test_quorum_queue_type_is_created_and_used(run, broker, queue):
    """--queue-type quorum declares a quorum queue (and its dead-letter and retry delay queues) and messages flow."""
    receiver = run("receiver", "--queue-type", "quorum")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--queue-type", "quorum", "--count", "10", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 10)
    listing = broker.ctl("list_queues", "name", "type", "durable").stdout
    types = dict(line.split()[:2] for line in listing.splitlines() if line.startswith(queue))
    assert types == {queue: "quorum", queue + ".dead": "quorum",  # the delay queues of the default retries
                     queue + ".retry.1000ms": "quorum", queue + ".retry.2000ms": "quorum"}


def test_quorum_queue_of_an_older_declaration_is_used_quietly(run, broker, queue):
    """A quorum queue declared without a replica count (the tutorials', an older rabbitipc) is used as
    it is, with no warning: the count we ask for only matters when a queue is created."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    connection.close()
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "3", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 3)
    assert "already exists" not in receiver.output + sender.output


def test_receiver_count_stops_after_n_and_leaves_the_rest_queued(run, broker, queue):
    """--count 30 on the receiver: it handles 30, exits 0, the other 20 wait in the queue."""
    sender = run("sender", "--count", "50", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver = run("receiver", "--count", "30", "--prefetch", "50")
    assert receiver.wait(30) == 0, receiver.output
    assert len(receiver.ids(RECEIVED)) == 30
    assert "stopped by --count 30 reached" in receiver.output
    wait_until(lambda: queue_depth(broker.url, queue) == 20, 10, "the 20 unhandled messages back in the queue")
