"""pika-select: raw pika at its fastest reliable pace, the way pika's asynchronous examples write it.

SelectConnection; the publisher keeps up to WINDOW publishes unconfirmed and tops the window up
from the Basic.Ack callback (the broker acks with multiple=True); the consumer prefetches
PREFETCH and acks every ACK_EVERY deliveries with multiple=True. Contract: bench/peers/contract.py.
"""

import sys

import pika
from pika.spec import Basic

from bench.peers.contract import PREFETCH, WINDOW, Bodies, Pace, Receipts, main, ready

PERSISTENT = pika.BasicProperties(delivery_mode=2)


class Publisher:
    """Publishes `count` messages; each callback says when pika calls it."""

    def __init__(self, url: str, queue: str, count: int, size: int, rate: float) -> None:
        self.queue, self.count, self.rate = queue, count, rate
        self.bodies, self.pace = Bodies(size), Pace(rate)
        self.published = self.confirmed = 0
        self.channel = self.timer = None
        self.connection = pika.SelectConnection(pika.URLParameters(url), on_open_callback=self.on_open,
                                                on_open_error_callback=self.on_error)

    def on_open(self, connection):
        """The connection is up: open a channel."""
        connection.channel(on_open_callback=self.on_channel)

    def on_error(self, _connection, error):
        """The connection failed to open."""
        raise SystemExit(f"pika-select: cannot connect: {error}")

    def on_channel(self, channel):
        """The channel is open: turn confirms on, then declare the queue."""
        self.channel = channel
        channel.confirm_delivery(self.on_confirm)
        channel.queue_declare(self.queue, durable=True, callback=lambda _frame: self.publish())

    def publish(self):
        """Fill the window (when paced: send what is due, then wait on a timer for the next)."""
        self.timer = None
        while self.published < self.count and self.published - self.confirmed < WINDOW:
            delay = self.pace.delay(self.published)
            if delay > 0:
                self.timer = self.connection.ioloop.call_later(delay, self.publish)
                return
            self.channel.basic_publish("", self.queue, self.bodies.next(), PERSISTENT, mandatory=True)
            self.published += 1

    def on_confirm(self, frame):
        """Basic.Ack (or Nack) for one or many publishes."""
        if isinstance(frame.method, Basic.Nack):
            raise SystemExit("pika-select: the broker nacked a publish")
        tag = frame.method.delivery_tag
        self.confirmed = tag if frame.method.multiple else max(self.confirmed, tag)
        if self.confirmed >= self.count:
            self.connection.close()
        elif self.timer is None:
            self.publish()


class Consumer:
    """Consumes `count` messages; each callback says when pika calls it."""

    def __init__(self, url: str, queue: str, count: int) -> None:
        self.queue, self.receipts = queue, Receipts(count)
        self.channel = None
        self.connection = pika.SelectConnection(pika.URLParameters(url), on_open_callback=self.on_open)

    def on_open(self, connection):
        """The connection is up: open a channel."""
        connection.channel(on_open_callback=self.on_channel)

    def on_channel(self, channel):
        """The channel is open: declare, set the prefetch, consume."""
        self.channel = channel
        channel.queue_declare(self.queue, durable=True, callback=lambda _frame: channel.basic_qos(
            prefetch_count=PREFETCH, callback=lambda _frame: channel.basic_consume(
                self.queue, self.on_message, callback=lambda _frame: ready())))

    def on_message(self, channel, method, _properties, body):
        """One delivery: record it, ack the batch when due, stop after the last."""
        self.receipts.add(body)
        if self.receipts.ack_due():
            channel.basic_ack(method.delivery_tag, multiple=True)
        if self.receipts.done:
            self.connection.close()


def run(connection) -> None:
    """Turn pika's loop until the connection closes."""
    connection.add_on_close_callback(lambda *_: connection.ioloop.stop())
    connection.ioloop.start()


def publish(url: str, queue: str, count: int, size: int, rate: float) -> None:
    run(Publisher(url, queue, count, size, rate).connection)


def consume(url: str, queue: str, count: int) -> None:
    consumer = Consumer(url, queue, count)
    run(consumer.connection)
    consumer.receipts.report()


if __name__ == "__main__":
    sys.exit(main(publish, consume))
