"""MessageQueue, the small library API: publish, register, start, stop, without pika in sight."""

import json
import threading

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
    """A handler that raises sends that message to <queue>.dead; later ones are still handled."""
    mq = MessageQueue(queue, broker.url)
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
