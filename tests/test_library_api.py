"""MessageQueue, the small library API: publish, register, start, stop, without pika in sight."""

import json
import threading

import pika
import pytest

from rabbitipc import MessageQueue
from rabbitipc.errors import UndeliverableError
from support import get_all, wait_until


def test_publish_and_consume_in_one_process(broker, queue):
    """Published payloads (text and JSON) reach the registered handler; stop() ends start()."""
    mq = MessageQueue(queue, broker.url)
    ids = [mq.publish("hello"), mq.publish({"n": 2})]
    got = []
    mq.register(lambda delivery: got.append((delivery.id, delivery.message.payload)))
    thread = threading.Thread(target=mq.start)
    thread.start()
    wait_until(lambda: len(got) == 2, 30, "both messages handled")
    mq.stop()
    thread.join(10)
    assert not thread.is_alive()
    mq.close()
    assert got == [(ids[0], "hello"), (ids[1], '{"n": 2}')]


def test_handler_exception_dead_letters_and_consumption_goes_on(broker, queue):
    """With max_attempts=1 a handler that raises sends that message to <queue>.dead at once; later ones are
    still handled."""
    mq = MessageQueue(queue, broker.url, max_attempts=1)
    mq.publish("bad")
    mq.publish("good")
    seen = []

    def handle(delivery):
        if delivery.message.payload == "bad":
            raise ValueError("no")
        seen.append(delivery.message.payload)

    mq.register(handle)
    thread = threading.Thread(target=mq.start)
    thread.start()
    wait_until(lambda: seen == ["good"], 30, "the good message handled")
    mq.stop()
    thread.join(10)
    dead = wait_until(lambda: get_all(broker.url, queue + ".dead"), 10, "the dead letter")
    assert [props.headers["x-rabbitipc-reason"] for props, _ in dead] == ["handler failed: ValueError: no"]


def test_consumer_retries_a_failing_handler_with_its_attempt_and_reject_parks_at_once(broker, queue):
    """Consumer(max_attempts=3): a handler failing at attempt 1 and 2 succeeds at 3 (Delivery.attempt
    counts them); raising rabbitipc.Reject parks a message at once with "rejected: <text>"."""
    from rabbitipc import Consumer, Reject, StopFlag, Subscription

    mq = MessageQueue(queue, broker.url)
    flaky, final = mq.publish("flaky"), mq.publish("refused")
    mq.close()
    attempts, stop = [], StopFlag()

    def handle(delivery):
        attempts.append((delivery.message.payload, delivery.attempt))
        if delivery.message.payload == "refused":
            raise Reject("not ours to do")
        if delivery.attempt < 3:
            raise ConnectionError("try later")
        stop.set("done")

    consumer = Consumer(broker.url, Subscription(queue=queue), handle, stop=stop, max_attempts=3,
                        min_backoff=0.1, max_backoff=0.2)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert attempts == [("flaky", 1), ("refused", 1), ("flaky", 2), ("flaky", 3)]
    [(properties, _)] = get_all(broker.url, queue + ".dead")
    assert (properties.message_id, properties.headers["x-rabbitipc-reason"]) == (final, "rejected: not ours to do")
    assert flaky != final


def test_broadcast_publish_without_subscribers_raises(broker):
    """In an exchange pattern, publishing with nobody bound raises instead of vanishing."""
    mq = MessageQueue(None, broker.url, pattern="broadcast", exchange="test-nobody-listens")
    with pytest.raises(UndeliverableError, match="no queue is bound"):
        mq.publish("anyone?")
    mq.close()


def payloads(url: str, queue: str) -> list[str]:
    """What the queue holds (taken out of it), as the payloads the publisher gave."""
    return [json.loads(body)["payload"] for _, body in get_all(url, queue)]


@pytest.fixture
def full_queue(broker, queue):
    """A policy on this test's queue: one message at most, more refused (x-overflow reject-publish),
    so the broker nacks what does not fit."""
    policy = f"test-full-{queue}"
    definition = '{"max-length": 1, "overflow": "reject-publish"}'
    result = broker.ctl("set_policy", "--apply-to", "queues", policy, f"^{queue}$", definition)
    assert result.returncode == 0, result.stderr
    yield queue
    broker.ctl("clear_policy", policy)


def test_a_nacked_message_is_published_again_after_a_pause_until_it_fits(broker, full_queue, caplog):
    """The broker nacks a message the full queue refuses; it goes again, pausing between tries, and
    is in the queue once, as soon as room is made."""
    queue = full_queue
    mq = MessageQueue(queue, broker.url, queue_type="classic")  # a quorum queue lets its limit overshoot
    mq.publish("first")
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(mq.publish("second")))
    thread.start()
    wait_until(lambda: "nacked by the broker; publishing it again (1/5)" in caplog.text, 30, "the first nack")
    assert payloads(broker.url, queue) == ["first"]  # room for one more
    thread.join(30)
    assert outcome and len(outcome[0]) == 32, caplog.text
    assert payloads(broker.url, queue) == ["second"]
    mq.close()


def test_a_message_nacked_every_time_is_given_up_after_paced_tries(broker, full_queue, caplog):
    """Nacked again and again: UndeliverableError after the fifth refusal, the tries spread over
    seconds (a pause that doubles), not spent in one burst."""
    queue = full_queue
    mq = MessageQueue(queue, broker.url, queue_type="classic")  # a quorum queue lets its limit overshoot
    mq.publish("fills it")
    with pytest.raises(UndeliverableError, match="nacked by the broker 5 times"):
        mq.publish("never fits")
    tries = [record.created for record in caplog.records if "publishing it again" in record.getMessage()]
    assert len(tries) == 4
    assert tries[-1] - tries[0] >= 1.0, "the four re-publications were not paced"
    assert payloads(broker.url, queue) == ["fills it"]
    mq.close()


def test_wake_ends_a_publishers_idle_wait_from_another_thread(broker, queue):
    """StreamPublisher.wake() (the one thread-safe call) ends idle() at once: the HTTP front's request
    threads use it so their message is published now, not after the publisher thread's pause."""
    from rabbitipc.publish.engine import StreamPublisher
    from rabbitipc.topology import Route

    publisher = StreamPublisher(broker.url, Route("work", queue))
    publisher.connect()
    idling = threading.Thread(target=publisher.idle, args=(600,))
    idling.start()
    publisher.wake()
    idling.join(30)
    assert not idling.is_alive(), "idle(600) did not end on wake()"
    publisher.close()


def test_one_broker_value_goes_whole_to_every_constructor(broker, queue):
    """A Broker (URL and retry policy in one value) is taken whole by MessageQueue, StreamPublisher with
    its PublisherSettings, and the RpcClient, as a URL is (before, each took a URL string and unpacked
    the rest into parameters of its own)."""
    from rabbitipc import Broker, PublisherSettings, RetryPolicy, StreamPublisher
    from rabbitipc.topology import Route

    where = Broker(broker.url, retry=RetryPolicy(timeout=30, max_delay=1))
    confirmed = []
    publisher = StreamPublisher(where, Route("work", queue), PublisherSettings("test-whole-broker", window=10,
                                                                              on_confirmed=confirmed.append))
    publisher.publish(b"from the stream publisher", pika.BasicProperties(message_id="one", delivery_mode=2), item="one")
    assert publisher.flush(grace=10) and confirmed == ["one"]
    publisher.close()
    mq = MessageQueue(queue, where)
    assert mq.broker is where
    mq.publish("from the message queue")
    got = []
    mq.register(lambda delivery: got.append(delivery.body))
    thread = threading.Thread(target=mq.start)
    thread.start()
    wait_until(lambda: len(got) == 2, 30, "both messages handled")
    mq.stop()
    thread.join(10)
    mq.close()
    assert b"from the message queue" in got[1]
