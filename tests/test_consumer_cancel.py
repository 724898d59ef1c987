"""A consumer the broker cancels (queue deleted, quorum leader moved, node maintenance) is not left a zombie.

The broker cancels a consumer whose queue goes away. The receiver must then declare the queue
again and consume again, or exit non-zero; never sit connected, consuming nothing, while its
readiness probe says all is well and messages pile up with no consumer.
"""

import subprocess
import sys

from support import RECEIVED, SENT, admin_channel_call, queue_counts, wait_alive_until, wait_until


def probe_ready(health) -> bool:
    return subprocess.run([sys.executable, "-m", "rabbitipc.health", str(health), "--connected"],
                          capture_output=True, timeout=30).returncode == 0


def test_receiver_consumes_again_after_its_queue_is_deleted(run, broker, queue):
    """Queue deleted under a running receiver: it declares it again, consumes again, gets what is sent next."""
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    admin_channel_call(broker.url, lambda channel: channel.queue_delete(queue))
    sender = run("sender", "--count", "5", "--rate", "0")
    assert sender.wait() == 0, sender.output
    wait_alive_until(receiver, lambda: set(sender.ids(SENT)) <= set(receiver.ids(RECEIVED)), 20,
                     "the messages sent after the deletion")
    # A quorum queue's figures in rabbitmqctl are a few seconds behind.
    wait_until(lambda: (queue_counts(broker, queue) or (0, 0, 0))[2] == 1, 20,
               "the receiver as the queue's consumer again", lambda: receiver.output[-3000:])


def test_cancelled_receiver_that_cannot_consume_again_exits_or_fails_its_probe(run, broker, queue, tmp_path):
    """Queue deleted and re-created with other settings: the receiver exits non-zero or its probe says not ready."""
    health = tmp_path / "health"
    receiver = run("receiver", "--health-file", str(health))
    receiver.wait_for_line("consuming from queue")
    wait_until(lambda: probe_ready(health), 10, "ready")

    def replace_queue(channel):
        channel.queue_delete(queue)
        channel.queue_declare(queue, durable=False)  # as the RabbitMQ tutorial does: ours cannot use it

    admin_channel_call(broker.url, replace_queue)
    try:
        # Since existing queues are adopted, consuming again from the re-created queue is the third
        # way out of the zombie state (and between cancel and re-consume the probe fails briefly).
        wait_until(lambda: receiver.proc.poll() is not None or not probe_ready(health)
                   or receiver.output.count("consuming from queue") >= 2, 20,
                   "an exit, a failing readiness probe or consuming again", lambda: receiver.output[-2000:])
        if receiver.proc.poll() is not None:
            assert receiver.wait() not in (0, 1), receiver.output  # a distinct code, not a crash
            assert "Traceback" not in receiver.output
    finally:
        admin_channel_call(broker.url, lambda channel: channel.queue_delete(queue))


def test_slow_failing_handler_past_the_consumer_timeout_is_dead_lettered_once(run, limited_broker, queue):
    """A handler that outlasts the broker's consumer timeout and then fails: one dead letter, the queue empties."""
    # A classic queue: rabbitmqctl's counts of a quorum queue lag by seconds, and this test counts exactly.
    receiver = run("receiver", "--prefetch", "1", "--handler", "slow_handler:slow_then_fail", "--queue-type", "classic",
                   "--max-attempts", "1",
                   url=limited_broker.url)
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "1", "--queue-type", "classic", url=limited_broker.url)
    assert sender.wait() == 0, sender.output

    def dead_count():
        return (queue_counts(limited_broker, queue + ".dead") or (0,))[0]

    wait_alive_until(receiver, lambda: queue_counts(limited_broker, queue)[:2] == (0, 0) or dead_count() > 1, 40,
                     "the message settled")
    assert dead_count() == 1, f"dead-lettered {dead_count()} times:\n{receiver.output[-2000:]}"
    assert queue_counts(limited_broker, queue)[:2] == (0, 0), "settled: neither ready nor unacked"


def test_slow_failing_handler_past_the_consumer_timeout_is_retried_once_per_attempt(run, limited_broker, queue):
    """The same handler with --max-attempts 2: each failure is sent to its delay queue once, when the message
    comes back after the timeout, without running the handler again; two attempts, then one dead letter."""
    receiver = run("receiver", "--prefetch", "1", "--handler", "flaky:slow_then_fail", "--queue-type", "classic",
                   "--max-attempts", "2", "--min-backoff", "0.2", url=limited_broker.url)
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "1", "--queue-type", "classic", url=limited_broker.url)
    assert sender.wait() == 0, sender.output
    [message_id] = sender.ids(SENT)
    receiver.wait_for_line(f"dead-lettered id={message_id}", 60)
    assert receiver.output.count(f"of id={message_id}") == 2, receiver.output[-3000:]
    assert receiver.output.count(f"retrying id={message_id} ") == 1
    assert "consumer_timeout expired" in receiver.output, "the broker's timeout did not strike: the test proves nothing"
    wait_until(lambda: (queue_counts(limited_broker, queue + ".dead") or (0,))[0] == 1, 10, "one dead letter")
