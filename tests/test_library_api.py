"""MessageQueue, the small library API: publish, register, start, stop, without pika in sight."""

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
