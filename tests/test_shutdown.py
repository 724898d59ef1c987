"""SIGTERM and Ctrl-C stop both programs cleanly: exit 0 within 5 s, nothing lost; a stop that leaves work to be
done again says so and exits 9."""

import signal
import time

import pytest

from support import RECEIVED, SENT, queue_counts, queue_depth, wait_until


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


def test_sigterm_while_the_broker_is_down_names_the_handled_messages_left_unacked(run, broker, queue, tmp_path):
    """The broker goes away while a message is handled; SIGTERM then: one line counting the handled message
    that could not be acked, exit 9; the message is back in the queue when the broker returns."""
    sender = run("sender", "--count", "1", "--rate", "0")
    assert sender.wait() == 0, sender.output
    release = tmp_path / "release"
    receiver = run("receiver", "--handler", "slow_handler:until_released", env={"TEST_RELEASE_FILE": str(release)})
    receiver.wait_for_line("working on id=")
    broker.stop()
    try:
        receiver.wait_for_line("connection to the broker lost")
        release.touch()
        receiver.wait_for_line("done with id=")  # handled while the broker is down: its ack cannot go out
        receiver.signal(signal.SIGTERM)
        assert receiver.wait(10) == 9, receiver.output
    finally:
        broker.start()
    assert "stopped with 1 handled message(s) not acked" in receiver.output
    wait_until(lambda: queue_depth(broker.url, queue) == 1, 30, "the message back in the queue")


def test_sigterm_while_reconnecting_keeps_the_grace_period_and_names_the_message_in_hand(run, broker, queue, tmp_path):
    """The broker goes away while the handler works; SIGTERM while reconnecting: the handler gets --grace-period,
    then exit 9 naming the unfinished message (it used to exit 0 after a fixed 5 s), which the broker delivers
    again when it returns."""
    sender = run("sender", "--count", "1", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver = run("receiver", "--handler", "slow_handler:until_released", "--grace-period", "3",
                   env={"TEST_RELEASE_FILE": str(tmp_path / "never")})
    receiver.wait_for_line("working on id=")
    broker.stop()
    try:
        receiver.wait_for_line("connection to the broker lost")
        started = time.monotonic()
        receiver.signal(signal.SIGTERM)
        assert receiver.wait(20) == 9, receiver.output
        assert 3 <= time.monotonic() - started < 10
    finally:
        broker.start()
    assert "within the 3s grace period" in receiver.output
    wait_until(lambda: queue_depth(broker.url, queue) == 1, 30, "the message back in the queue")


def test_a_handler_past_the_grace_period_is_abandoned_and_its_message_handled_once_by_the_next(run, broker, queue):
    """SIGTERM to a receiver whose handler hangs: exit 9 once --grace-period is over, naming the message; the
    message goes back and the next receiver handles it, once."""
    sender = run("sender", "--count", "1", "--rate", "0")
    assert sender.wait() == 0, sender.output
    (sent,) = sender.ids(SENT)
    hung = run("receiver", "--handler", "slow_handler:hang", "--grace-period", "2")
    hung.wait_for_line(f"hanging on id={sent}")
    started = time.monotonic()
    hung.signal(signal.SIGTERM)
    assert hung.wait(15) == 9, hung.output
    assert 2 <= time.monotonic() - started < 8
    assert f"did not finish the message id={sent} within the 2s grace period" in hung.output
    assert hung.ids(RECEIVED) == []
    second = run("receiver")
    second.wait_count(RECEIVED, 1)
    wait_until(lambda: queue_counts(broker, queue) == (0, 0, 1), 20, "the message acked")
    assert second.ids(RECEIVED) == [sent]
