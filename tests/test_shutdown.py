"""SIGTERM and Ctrl-C stop both programs cleanly: exit 0 within 5 s, nothing lost."""

import signal
import time

import pytest

from support import RECEIVED, SENT, queue_depth, wait_until


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_receiver_stops_cleanly_and_leaves_the_rest_queued(run, broker, queue, signum):
    """A stopped receiver exits 0 quickly; what it did not handle is still in the queue."""
    sender = run("sender", "--count", "100", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver = run("receiver", "--prefetch", "50", "--handler", "slow_handler:handle")
    receiver.wait_count(RECEIVED, 3)
    started = time.monotonic()
    receiver.signal(signum)
    assert receiver.wait(10) == 0, receiver.output
    assert time.monotonic() - started < 5
    handled = len(receiver.ids(RECEIVED))
    assert handled < 100
    wait_until(lambda: queue_depth(broker.url, queue) == 100 - handled, 10, "unhandled messages back in the queue")
    assert "stopped by" in receiver.output


def test_sender_stops_cleanly_and_every_accepted_message_arrives(run, broker, queue):
    """SIGTERM to a busy sender: exit 0 within 5 s and all it reported sent is in the queue."""
    sender = run("sender", "--rate", "100")
    sender.wait_count(SENT, 20)
    started = time.monotonic()
    sender.signal(signal.SIGTERM)
    assert sender.wait(10) == 0, sender.output
    assert time.monotonic() - started < 5
    accepted = sender.ids(SENT)
    assert queue_depth(broker.url, queue) == len(accepted)
    receiver = run("receiver")
    receiver.wait_count(RECEIVED, len(accepted))
    assert sorted(receiver.ids(RECEIVED)) == sorted(accepted)


def test_batched_acks_are_sent_before_a_stopped_receiver_closes(run, broker, queue):
    """A receiver stopped mid-stream acks what it handled: the next one gets the rest, none twice."""
    sender = run("sender", "--count", "3000", "--rate", "0")
    assert sender.wait(60) == 0, sender.output
    first = run("receiver", "--prefetch", "1000")
    first.wait_count(RECEIVED, 500)
    first.signal(signal.SIGTERM)
    assert first.wait(10) == 0, first.output[-2000:]
    second = run("receiver", "--prefetch", "1000")
    handled_first = first.ids(RECEIVED)
    second.wait_count(RECEIVED, 3000 - len(handled_first))
    both = handled_first + second.ids(RECEIVED)
    assert len(both) == len(set(both)) == 3000 == len(set(sender.ids(SENT)))
