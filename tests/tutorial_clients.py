"""Clients that declare and use queues the way the official RabbitMQ python tutorials do.

Written here from the tutorials' declarations (rabbitmq/rabbitmq-tutorials, python/*.py), not
copied from them. CURRENT is the tutorials since "Modernize executable tutorials" (2026-03-16):
durable quorum queues for tutorials 1, 2 and 6. PREVIOUS is what they declared before.
Tutorials 3-5 declare their exchanges with pika's defaults (not durable) in both versions, and
their consumers use exclusive server-named queues.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import pika

QUORUM = {"durable": True, "arguments": {"x-queue-type": "quorum"}}
#: queue name -> queue_declare keyword arguments, per tutorial version.
DECLARATIONS = {
    "current": {"hello": QUORUM, "task_queue": QUORUM, "rpc_queue": QUORUM},
    "previous": {"hello": {}, "task_queue": {"durable": True}, "rpc_queue": {}},
}
#: exchange name -> type, in tutorials 3, 4, 5 (declared not durable, in both versions).
EXCHANGES = {"logs": "fanout", "direct_logs": "direct", "topic_logs": "topic"}
#: Every name the tutorials use, with the dead-letter queues ours adds beside queues.
QUEUE_NAMES = [name + suffix for name in ("hello", "task_queue", "rpc_queue") for suffix in ("", ".dead")]


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def clean(url: str) -> None:
    """Delete the tutorials' queues and exchanges (and ours beside them), so every test starts afresh."""
    connection = connect(url)
    try:
        channel = connection.channel()
        for name in QUEUE_NAMES:
            channel.queue_delete(name)
        for name in [*EXCHANGES, *(f"{name}.dead" for name in EXCHANGES)]:
            channel.exchange_delete(name)
            channel.queue_delete(f"{name}.dead")
    finally:
        connection.close()


def declare_queue(channel, name: str, version: str) -> None:
    channel.queue_declare(queue=name, **DECLARATIONS[version][name])


def send(url: str, queue: str, version: str, bodies: list[str], persistent: bool = False) -> None:
    """send.py / new_task.py: declare the queue, publish through the default exchange."""
    connection = connect(url)
    try:
        channel = connection.channel()
        declare_queue(channel, queue, version)
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent) if persistent else None
        for body in bodies:
            channel.basic_publish(exchange="", routing_key=queue, body=body, properties=properties)
    finally:
        connection.close()


def work(url: str, queue: str, version: str, count: int, timeout: float = 20, ack: bool = True) -> list[bytes]:
    """receive.py (auto-ack) / worker.py (prefetch 1, ack after work): declare, then take count messages."""
    connection = connect(url)
    bodies: list[bytes] = []
    try:
        channel = connection.channel()
        declare_queue(channel, queue, version)
        channel.basic_qos(prefetch_count=1)
        deadline = time.monotonic() + timeout
        for method, _properties, body in channel.consume(queue, auto_ack=not ack, inactivity_timeout=0.2):
            if method is not None:
                bodies.append(body)
                if ack:
                    channel.basic_ack(method.delivery_tag)
            if len(bodies) >= count or time.monotonic() > deadline:
                break
        channel.cancel()
    finally:
        connection.close()
    return bodies


def emit(url: str, exchange: str, routing_key: str, bodies: list[str]) -> None:
    """emit_log*.py: declare the exchange (not durable) and publish."""
    connection = connect(url)
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange=exchange, exchange_type=EXCHANGES[exchange])
        for body in bodies:
            channel.basic_publish(exchange=exchange, routing_key=routing_key, body=body)
    finally:
        connection.close()


class _InThread:
    """A tutorial client running in a thread of the test: started at construction, returning once it
    declared what it uses (an error before that is raised in the test); close() stops it."""

    url: str
    error: BaseException | None

    def _start(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(20)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        connection = None
        try:
            connection = connect(self.url)
            self._serve(connection.channel())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self._ready.set()
        finally:
            if connection is not None and connection.is_open:
                connection.close()

    def _serve(self, channel) -> None:
        """Declare, set self._ready, then work until self._stop is set."""
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class LogReceiver(_InThread):
    """receive_logs*.py: declare the exchange (not durable), bind an exclusive queue, print what comes."""

    url: str
    exchange: str
    keys: tuple[str, ...] = ("",)
    bodies: list[bytes] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._start()

    def _serve(self, channel) -> None:
        channel.exchange_declare(exchange=self.exchange, exchange_type=EXCHANGES[self.exchange])
        queue = channel.queue_declare(queue="", exclusive=True).method.queue
        for key in self.keys:
            channel.queue_bind(exchange=self.exchange, queue=queue, routing_key=key)
        self._ready.set()
        for method, _properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.2):
            if method is not None:
                self.bodies.append(body)
            if self._stop.is_set():
                break


def fib(n: int) -> int:
    """The n-th Fibonacci number, what the tutorial's server answers (fib(30) = 832040)."""
    pair = (0, 1)
    for _ in range(n):
        pair = (pair[1], pair[0] + pair[1])
    return pair[0]


class RpcServer(_InThread):
    """rpc_server.py: declare rpc_queue, prefetch 1, answer int(body) with str(fib(n)) to reply_to, then ack."""

    def __init__(self, url: str, version: str = "current", queue: str = "rpc_queue", headers=None) -> None:
        self.url, self.version, self.queue = url, version, queue
        self.headers = headers  # added to every reply (the tutorial adds none)
        self.requests: list[bytes] = []
        self.error = None
        self._start()

    def _serve(self, channel) -> None:
        channel.queue_declare(queue=self.queue, **DECLARATIONS[self.version]["rpc_queue"])
        channel.basic_qos(prefetch_count=1)
        self._ready.set()
        for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.1):
            if self._stop.is_set():
                break
            if method is None:
                continue
            self.requests.append(body)
            channel.basic_publish(exchange="", routing_key=properties.reply_to, body=str(fib(int(body))),
                                  properties=pika.BasicProperties(correlation_id=properties.correlation_id,
                                                                  headers=self.headers))
            channel.basic_ack(method.delivery_tag)


def rpc_call(url: str, n: int, timeout: float = 20) -> bytes | None:
    """rpc_client.py: an exclusive reply queue, a correlation id, publish str(n) to rpc_queue, await the reply."""
    connection = connect(url)
    try:
        channel = connection.channel()
        reply_queue = channel.queue_declare(queue="", exclusive=True).method.queue
        correlation_id = str(uuid.uuid4())
        channel.basic_publish(exchange="", routing_key="rpc_queue", body=str(n),
                              properties=pika.BasicProperties(reply_to=reply_queue, correlation_id=correlation_id))
        deadline = time.monotonic() + timeout
        for method, properties, body in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=0.2):
            if method is not None and properties.correlation_id == correlation_id:
                return body
            if time.monotonic() > deadline:
                return None
    finally:
        connection.close()
    return None
