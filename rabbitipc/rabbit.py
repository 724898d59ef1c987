"""The seed's `rabbit.py` API (MessageQueue, Consumer, Worker, the HALT pill) with rabbitipc's guarantees.

Scripts written for the seed run unchanged but for the import line (and Python 3's print):

    from rabbitipc.rabbit import MessageQueue, Consumer, Worker

    mq = MessageQueue("my_queue")
    mq.publish("Hello")                                  # confirmed by the broker before it returns
    def handler(channel, method, properties, message):   # message is the payload as text
        print(message)
        mq.ack(method)
    mq.register(handler)
    mq.start()                                           # blocks until mq.stop(), Ctrl-C or SIGTERM

What differs from the seed, on purpose: a message is acked once its callback returns, never
before, whether or not the callback calls mq.ack(method) (which is accepted and kept for the
seed's scripts); a callback that raises sends its message to `<queue>.dead` with the reason;
both sides reconnect after a broker restart. All of that comes from rabbitipc.MessageQueue,
which this module only adapts to the seed's callback signature.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import MessageQueue as _LibraryQueue
from .backoff import RetryPolicy
from .consume.handlers import Delivery

#: The seed's poison pill: a Consumer stops on it, a Worker passes it downstream, then stops.
HALT = "HALT"


@dataclass(frozen=True)
class Method:
    """What a callback gets as `method`: enough to ack it (mq.ack(method)) and to spot a redelivery."""

    delivery_tag: int
    redelivered: bool
    message_id: str | None


class CallbackChannel:
    """What a callback gets as `channel`: only basic_ack, as the tutorials call it.

    The real channel belongs to the connection's own thread (callbacks run on a worker thread,
    so slow work never starves heartbeats); acking is done there once the callback returned.
    """

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        """Accepted for tutorial-style callbacks; the ack is sent when the callback returns."""


Callback = Callable[[CallbackChannel, Method, Any, str], object]


class MessageQueue:
    """One named work queue: publish(string), register(callback), start(), stop(), ack(method)."""

    def __init__(self, name: str, url: str | None = None, *, prefetch: int = 1,
                 queue_type: str | None = None, retry: RetryPolicy | None = None) -> None:
        options: dict[str, Any] = {"prefetch": prefetch, "retry": retry}
        if queue_type is not None:
            options["queue_type"] = queue_type
        self.name = name
        # prefetch 1 by default, as in the tutorial's workers: consumers of one queue take turns.
        self._queue = _LibraryQueue(name, url, **options)
        self._channel = CallbackChannel()
        self._tags = itertools.count(1)
        self._callback: Callback | None = None

    def publish(self, message: str) -> str:
        """Send one message (text); returns its id once the broker confirmed it."""
        return self._queue.publish(str(message))

    def register(self, callback: Callback) -> None:
        """Call callback(channel, method, properties, message) for each message, message as text."""
        self._callback = callback
        self._queue.register(self._deliver)

    def _deliver(self, delivery: Delivery) -> None:
        if delivery.message is not None:
            text = delivery.message.payload
        else:  # another client's plain body (e.g. the tutorials' scripts)
            text = delivery.body.decode("utf-8", errors="replace")
        method = Method(next(self._tags), delivery.redelivered, delivery.id)
        self._callback(self._channel, method, delivery.properties, text)

    def ack(self, method: Method) -> None:
        """Accepted for the seed's scripts: the message is acked when its callback returns."""

    def start(self) -> int:
        """Consume until stop() (from a callback or any thread), Ctrl-C or SIGTERM; return how many were handled.

        In the main thread, Ctrl-C and SIGTERM stop it cleanly (the message in hand is finished
        and acked); their previous handlers are restored when start() returns. A queue that
        was stopped stays stopped: start() then returns at once.
        """
        if self._callback is None:
            raise RuntimeError(f"register(callback) before start(): nothing would handle the messages of {self.name!r}")
        if threading.current_thread() is not threading.main_thread():
            return self._queue.start()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda _signum, _frame: self.stop())
        try:
            return self._queue.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Ask start() to finish the message in hand and return; safe from callbacks and other threads."""
        self._queue.stop()

    def close(self) -> None:
        """Close the publishing connection (every publish() that returned was confirmed)."""
        self._queue.close()


class Consumer:
    """A workflow process: consumes `queue`, calls work(message) for each, stops on HALT.

    It prints "<name> starting", "Halting consumer <name>" and "<name> halted.", as the seed does.
    """

    def __init__(self, name: str, queue: str, url: str | None = None) -> None:
        self.name = name
        self.url = url
        self.mq = MessageQueue(queue, url)
        self.mq.register(self._on_message)

    def _on_message(self, _channel, _method, _properties, message: str) -> None:
        if message == HALT:
            self.halt()
        else:
            self.work(message)

    def work(self, message: str) -> None:
        """Handle one message; override it. Raising sends the message to `<queue>.dead`."""
        raise NotImplementedError(f"{type(self).__name__}.work(message) is not implemented")

    def halt(self) -> None:
        """The poison pill arrived: stop after it (it is acked, so it is not seen again)."""
        print(f"Halting consumer {self.name}", flush=True)
        self.stop()

    def start(self) -> None:
        """Consume until HALT or stop(); blocks, so workflows run each process in its own thread."""
        print(f"{self.name} starting", flush=True)
        try:
            self.mq.start()
        finally:
            self.mq.close()
        print(f"{self.name} halted.", flush=True)

    def stop(self) -> None:
        self.mq.stop()


class Worker(Consumer):
    """A Consumer with an output queue: work(message) calls write(result); HALT is passed downstream."""

    def __init__(self, name: str, input_queue: str, output_queue: str, url: str | None = None) -> None:
        super().__init__(name, input_queue, url)
        self.output = MessageQueue(output_queue, url)

    def write(self, message: str) -> None:
        """Publish to the output queue; returns once the broker confirmed it."""
        self.output.publish(message)

    def halt(self) -> None:
        """Pass HALT downstream (confirmed before our own HALT is acked, so it cannot get lost), then stop."""
        print(f"Halting worker {self.name}", flush=True)
        self.write(HALT)
        self.stop()

    def start(self) -> None:
        try:
            super().start()
        finally:
            self.output.close()
