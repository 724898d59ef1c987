"""Nothing accepted is lost when a receiver dies or the broker restarts mid-stream."""

import logging
import signal
import threading
import uuid
from collections import Counter

import pika.exceptions as px
import pytest

from devtools.localbroker import free_port
from rabbitipc import MessageQueue
from rabbitipc.backoff import RetryPolicy
from rabbitipc.connection import Broker, connect, redact
from rabbitipc.errors import AuthError, Stopped
from rabbitipc.shutdown import StopFlag
from support import RECEIVED, SENT, queue_counts, queue_depth, receiver_killed_mid_stream, wait_until


def test_receiver_killed_mid_stream_loses_nothing(run, broker, queue):
    """SIGKILL a receiver holding unacked messages: a new receiver gets every message."""
    first, sender = receiver_killed_mid_stream(run, ("--prefetch", "20"), ("--count", "200", "--rate", "200"),
                                               killed_after=20)
    second = run("receiver")
    accepted = set(sender.ids(SENT))
    assert len(accepted) == 200
    wait_until(lambda: accepted <= set(first.ids(RECEIVED)) | set(second.ids(RECEIVED)), 30,
               "every accepted message received", lambda: second.output[-3000:])
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "empty queue")


def test_broker_restart_mid_stream_both_reconnect_and_nothing_is_lost(run, broker, queue):
    """Stop and restart the broker while messages flow: both programs reconnect, all arrive once."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "150", "--rate", "50")
    receiver.wait_count(RECEIVED, 30)
    broker.stop()
    broker.start()
    assert sender.wait(120) == 0, sender.output
    accepted = sender.ids(SENT)
    assert len(accepted) == 150
    wait_until(lambda: set(accepted) <= set(receiver.ids(RECEIVED)), 60,
               "every accepted message received after the restart", lambda: receiver.output[-3000:])
    handled = Counter(receiver.ids(RECEIVED))
    assert max(handled.values()) == 1, "a message was handled twice"
    assert "reconnecting" in receiver.output or "not reachable" in receiver.output
    assert "connection lost" in sender.output or "not reachable" in sender.output


def test_node_list_connects_to_the_node_that_answers_without_backoff(run, broker, queue):
    """Given three node URLs of which two refuse, both programs connect at once to the one that
    answers (no backoff wait), each connect line naming its node, no password logged."""
    dead = [f"amqp://guest:pw-of-dead-node@127.0.0.1:{free_port()}/%2F" for _ in range(2)]
    nodes = ";".join([dead[0], broker.url, dead[1]])
    receiver = run("receiver", url=nodes)
    sender = run("sender", "--count", "20", "--rate", "0", url=nodes)
    assert sender.wait(30) == 0, sender.output
    wait_until(lambda: len(set(receiver.ids(RECEIVED))) == 20, 30, "all 20 received", lambda: receiver.output[-3000:])
    for program in (sender, receiver):
        assert f"connected to {redact(broker.url)}" in program.output, program.output[-3000:]
        assert "retrying in" not in program.output
        assert "pw-of-dead-node" not in program.output and "guest:guest" not in program.output


def test_node_list_waits_out_the_backoff_only_when_every_node_refuses(run):
    """Every node of the list refusing: one line per round naming all nodes, the growing delay, then
    exit 4 after the retry budget."""
    nodes = ";".join(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F" for _ in range(3))
    sender = run("sender", "--retry-timeout", "3", url=nodes)
    assert sender.wait(30) == 4, sender.output
    assert "none of the 3 broker nodes reachable" in sender.output and "retrying in" in sender.output
    assert "no node of the 3 broker nodes reachable" in sender.output


def test_sender_waits_for_a_broker_that_starts_later(run, broker, queue):
    """A sender started before the broker (as in a Pod) retries, then delivers everything."""
    broker.stop()
    try:
        sender = run("sender", "--count", "5", "--rate", "20")
        sender.wait_for_line("not reachable")
    finally:
        broker.start()
    assert sender.wait(60) == 0, sender.output
    receiver = run("receiver")
    receiver.wait_count(RECEIVED, 5)
    assert sorted(receiver.ids(RECEIVED)) == sorted(sender.ids(SENT))


def test_deleted_queue_is_redeclared_and_returned_messages_resent(run, broker, queue):
    """A queue deleted under a running sender: the returned message is resent into a new queue."""
    import pika

    sender = run("sender", "--rate", "20")
    sender.wait_count(SENT, 5)
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().queue_delete(queue)
    connection.close()
    deleted_at = len(sender.ids(SENT))
    sender.wait_for_line("returned as unroutable")
    sender.wait_count(SENT, deleted_at + 10)
    sender.signal(signal.SIGTERM)
    assert sender.wait() == 0, sender.output
    after = sender.ids(SENT)[deleted_at + 1:]  # the one in flight at the deletion may have gone with it
    receiver = run("receiver")
    wait_until(lambda: set(after) <= set(receiver.ids(RECEIVED)), 30, "messages sent after the deletion")


def test_handler_slower_than_the_heartbeat_keeps_the_connection(run, broker, queue):
    """A 7 s handler with 2 s heartbeats: the connection survives, each message is handled once."""
    url = broker.url + "?heartbeat=2"
    receiver = run("receiver", "--handler", "slow_handler:longer_than_heartbeats", url=url)
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "2", "--rate", "0")
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 2, timeout=40)
    assert sorted(receiver.ids(RECEIVED)) == sorted(sender.ids(SENT))
    assert "connection to the broker lost" not in receiver.output
    assert "duplicate" not in receiver.output
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "both acked")


def test_a_handler_busy_across_a_broker_restart_never_overlaps_the_next(broker, caplog):
    """The broker restarts while a handler works: the next message waits for that handler (handlers
    never run two at once, even across a reconnect: they may share a publisher), then all are handled."""
    caplog.set_level(logging.INFO, logger="rabbitipc")
    queue = f"test-overlap-{uuid.uuid4().hex[:8]}"
    mq = MessageQueue(queue, broker.url, prefetch=1, queue_type="classic")  # classic: exact counts
    for text in ("first", "second", "third"):
        mq.publish(text)
    running: list[int] = []  # handlers running, as each one starts
    handled: list[str] = []
    started, release, lock = threading.Event(), threading.Event(), threading.Lock()

    def handle(delivery) -> None:
        with lock:
            running.append(running[-1] + 1 if running else 1)
        try:
            if not started.is_set():
                started.set()
                release.wait(60)  # still working when the broker goes away and comes back
            handled.append(delivery.message.payload)
        finally:
            with lock:
                running.append(running[-1] - 1)

    mq.register(handle)
    consumer = threading.Thread(target=mq.start, daemon=True)
    consumer.start()
    try:
        assert started.wait(30), "the first message never reached the handler"
        broker.restart()
        wait_until(lambda: caplog.text.count("consuming from queue") == 2, 90, "the consumer back", lambda: caplog.text)
        # Then the next message is in hand (unacked) and must wait; before the fix it was handled at once.
        wait_until(lambda: max(running) > 1 or (queue_counts(broker, queue) or (0, 0, 0))[1] == 1, 30,
                   "a message delivered on the new link", lambda: f"{queue_counts(broker, queue)}")
        release.set()
        wait_until(lambda: {"first", "second", "third"} <= set(handled), 60, "every message handled",
                   lambda: f"{handled}\n{caplog.text[-3000:]}")
    finally:
        release.set()
        mq.stop()
        consumer.join(15)
        mq.close()
    assert max(running) == 1, f"handlers overlapped: {running}"
    wait_until(lambda: queue_counts(broker, queue)[:2] == (0, 0), 30, "nothing left in the queue")


#: A broker nobody listens at, retried without delays: connect() driven by a scripted opener.
QUICK = Broker("amqp://u:p@127.0.0.1:1/%2F", retry=RetryPolicy(timeout=0, min_delay=0, max_delay=0))


def _scripted(attempts: list):
    """An opener for connect() that raises or returns the next of `attempts` at each try."""
    def opener(_params):
        outcome = attempts.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return opener


def test_handshakes_cut_while_the_broker_restarts_are_not_taken_for_refused_credentials():
    """A broker going down and up cuts handshakes between refused connects: connect() keeps trying
    (before, the fourth cut of the outage was reported as refused credentials, exit 3); cuts with
    nothing between them still end as a refusal."""
    cut = px.ProbableAuthenticationError(px.StreamLostError("Stream connection lost: ConnectionResetError(104)"))
    refused = px.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused"))
    attempts = [cut, refused] * 5 + ["connected"]
    opener = _scripted(attempts)
    assert connect(QUICK, "test", opener=opener) == "connected"
    attempts[:] = [cut] * 5
    with pytest.raises(AuthError, match="closed during the handshake 4 times"):
        connect(QUICK, "test", opener=opener)


def test_a_path_cut_while_tuning_is_retried_not_taken_for_a_refused_vhost():
    """The socket closing after authentication, while the connection is tuned (a network path cut at
    that moment; pika says "probable access denied"), is retried like a cut during authentication
    (before: exit 3, 'refused user', the one failure of a fresh-clone CI's network-cut row)."""
    cut = px.ProbableAccessDeniedError(repr(px.StreamLostError("Transport indicated EOF")))
    refused = px.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused"))
    attempts = [refused, cut, "connected"]
    opener = _scripted(attempts)
    assert connect(QUICK, "test", opener=opener) == "connected"


class _Waits(StopFlag):
    """A StopFlag that records the delays connect() waits, without waiting; stops after `stop_after` waits."""

    def __init__(self, stop_after: int = 1000) -> None:
        super().__init__()
        self.delays: list[float] = []
        self.stop_after = stop_after

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(timeout)
        return len(self.delays) >= self.stop_after


def test_each_connect_counts_its_own_outage_with_one_shared_retry_policy():
    """Two connects with one Broker (as MessageQueue's publisher and consumer): the second outage
    starts again at the first delay (before, a Stopped or unreachable outage left its failure
    count in the Broker's shared Retry, and the next connect started at a longer delay)."""
    refused = px.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused"))

    def opener(_params):
        raise refused

    broker = Broker("amqp://u:p@127.0.0.1:1/%2F", retry=RetryPolicy(timeout=0, min_delay=1.0, max_delay=30.0))
    first = _Waits(stop_after=3)
    with pytest.raises(Stopped):
        connect(broker, "first", first, opener=opener)
    second = _Waits(stop_after=2)
    with pytest.raises(Stopped):
        connect(broker, "second", second, opener=opener)
    assert first.delays == [1.0, 2.0, 3.0] and second.delays == [1.0, 2.0]


def test_a_broker_is_a_value_shared_safely():
    """Broker and its RetryPolicy are frozen values: hashable and equal when built alike (before,
    the Broker held a mutable Retry whose backoff counted failures, so it was not hashable)."""
    one = Broker("amqp://u:p@h1/%2F;amqp://u:p@h2/%2F", retry=RetryPolicy(timeout=5))
    assert one == Broker("amqp://u:p@h1/%2F;amqp://u:p@h2/%2F", retry=RetryPolicy(timeout=5))
    assert hash(one) == hash(Broker("amqp://u:p@h1/%2F;amqp://u:p@h2/%2F", retry=RetryPolicy(timeout=5)))
    assert one.nodes == ("amqp://u:p@h1/%2F", "amqp://u:p@h2/%2F")
    assert Broker.of(one) is one and Broker.of(one, ca_file="ca.pem").ca_file == "ca.pem"
