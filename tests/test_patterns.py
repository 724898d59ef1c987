"""Exchange patterns through the programs: broadcast, direct and topic routing."""

import uuid

from support import RECEIVED, SENT, queue_depth, wait_until


def exchange_args(pattern):
    return ["--pattern", pattern, "--exchange", f"test-{pattern}-{uuid.uuid4().hex[:8]}"]


def bound_receivers(run, args, *bindings):
    """One receiver per binding (each with its own exclusive queue), returned once all are consuming."""
    receivers = [run("receiver", *args, "--bind", keys, own_queue=False) for keys in bindings]
    for receiver in receivers:
        receiver.wait_for_line("consuming from queue")
    return receivers


def test_broadcast_reaches_every_receiver(run):
    """fanout: three receivers with their own exclusive queues each get every message."""
    args = exchange_args("broadcast")
    receivers = [run("receiver", *args, own_queue=False) for _ in range(3)]
    for receiver in receivers:
        receiver.wait_for_line("consuming from queue amq.gen-")
    sender = run("sender", *args, "--count", "10", "--rate", "0", own_queue=False)
    assert sender.wait() == 0, sender.output
    sent = sorted(sender.ids(SENT))
    for receiver in receivers:
        receiver.wait_count(RECEIVED, 10)
        assert sorted(receiver.ids(RECEIVED)) == sent


def test_broadcast_with_no_subscriber_reports_unrouted_messages(run):
    """A broadcast nobody listens to is reported as unrouted, not logged as sent, and the sender goes on."""
    sender = run("sender", *exchange_args("broadcast"), "--count", "2", "--rate", "0", own_queue=False)
    assert sender.wait() == 0, sender.output
    assert sender.output.count("unrouted seq=") == 2
    assert sender.ids(SENT) == []


def test_direct_routes_by_exact_key(run):
    """direct: a receiver bound to 'error' gets only error messages; one bound to both keys gets all."""
    args = exchange_args("direct")
    errors, both = bound_receivers(run, args, "error", "error,info")
    info_sender = run("sender", *args, "--routing-key", "info", "--count", "3", "--rate", "0")
    error_sender = run("sender", *args, "--routing-key", "error", "--count", "2", "--rate", "0")
    assert info_sender.wait() == 0 and error_sender.wait() == 0
    both.wait_count(RECEIVED, 5)
    errors.wait_count(RECEIVED, 2)
    assert sorted(errors.ids(RECEIVED)) == sorted(error_sender.ids(SENT))


def test_topic_wildcards_match_words(run):
    """topic: '*.critical' matches one word before, 'kern.#' any words after."""
    args = exchange_args("topic")
    critical, kernel = bound_receivers(run, args, "*.critical", "kern.#")
    senders = {key: run("sender", *args, "--routing-key", key, "--count", "1", "--rate", "0")
               for key in ("kern.critical", "app.critical", "kern.disk.full", "app.info")}
    for sender in senders.values():
        assert sender.wait() == 0, sender.output
    critical.wait_count(RECEIVED, 2)
    kernel.wait_count(RECEIVED, 2)
    assert set(critical.ids(RECEIVED)) == set(senders["kern.critical"].ids(SENT) + senders["app.critical"].ids(SENT))
    assert set(kernel.ids(RECEIVED)) == set(senders["kern.critical"].ids(SENT) + senders["kern.disk.full"].ids(SENT))


def test_named_subscription_keeps_messages_while_its_receiver_is_down(run, broker, queue):
    """A broadcast receiver with --queue has a durable subscription: messages wait for it."""
    args = exchange_args("broadcast")
    first = run("receiver", *args)
    first.wait_for_line("consuming from queue")
    first.stop()
    sender = run("sender", *args, "--count", "5", "--rate", "0")
    assert sender.wait() == 0, sender.output
    assert queue_depth(broker.url, queue) == 5
    again = run("receiver", *args)
    again.wait_count(RECEIVED, 5)
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "the subscription drained")
