"""The pika adapter: frames written during a turn are held, then reach the broker in one write."""

from __future__ import annotations

import time

import pika
from pika.adapters.base_connection import BaseConnection

from rabbitipc.publish.pika_frames import HOOK, CoalescingConnection
from support import queue_depth


def test_pika_still_has_the_private_hook_we_override():
    """The installed pika still routes every outgoing frame through the method the adapter overrides."""
    assert callable(getattr(BaseConnection, HOOK, None)), f"pika {pika.__version__} has no {HOOK}"


def test_held_frames_reach_the_broker_on_release(broker, queue):
    """Publishes are held until release(), then all of them arrive at the queue."""
    state: dict = {}
    connection = CoalescingConnection(pika.URLParameters(broker.url),
                                      on_open_callback=lambda c: state.setdefault("open", True),
                                      on_open_error_callback=lambda c, e: state.setdefault("error", e))

    def turn(until, seconds=30.0):
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            connection.release()
            connection.ioloop.call_later(0.1, lambda: None)
            connection.ioloop.poll()
            connection.ioloop.process_timeouts()
        assert until(), "the broker did not answer"

    connection.ioloop.activate_poller()
    turn(lambda: state)
    assert "open" in state, state
    channel = connection.channel(on_open_callback=lambda ch: state.setdefault("channel", ch))
    turn(lambda: "channel" in state)
    channel.queue_declare(queue, durable=True, callback=lambda frame: state.setdefault("declared", True))
    turn(lambda: "declared" in state)
    for n in range(3):
        channel.basic_publish("", queue, b"held %d" % n)
    assert connection.held_bytes > 0, "frames went to the socket before release()"
    connection.release()
    assert connection.held_bytes == 0
    turn(lambda: queue_depth(broker.url, queue) == 3)
    connection.close()
    turn(lambda: connection.is_closed)
    connection.ioloop.close()
