"""py-amqp: the fastest reliable way its API allows.

py-amqp's own confirm mode (confirm_publish=True) waits for each publish's confirm; instead the
channel is put in confirm mode with confirm_select() and the broker's Basic.Ack frames arrive as
'basic_ack' events, read between publishes (without waiting) and waited for when WINDOW publishes
are unconfirmed. The consumer prefetches PREFETCH and acks every ACK_EVERY with multiple=True.
Contract: bench/peers/contract.py.
"""

import sys
import time
from urllib.parse import unquote, urlsplit

import amqp

from bench.peers.contract import PREFETCH, WINDOW, Bodies, Pace, Receipts, main, ready

READ_EVERY = 100  # publishes between reads of the confirms already in


def connect(url: str) -> amqp.Connection:
    parts = urlsplit(url)
    connection = amqp.Connection(f"{parts.hostname}:{parts.port or 5672}", userid=unquote(parts.username or "guest"),
                                 password=unquote(parts.password or "guest"),
                                 virtual_host=unquote(parts.path[1:]) or "/")
    connection.connect()
    return connection


def publish(url: str, queue: str, count: int, size: int, rate: float) -> None:
    connection = connect(url)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, auto_delete=False)
    confirmed = 0

    def on_ack(delivery_tag, multiple):
        nonlocal confirmed
        confirmed = delivery_tag if multiple else max(confirmed, delivery_tag)

    def on_nack(_delivery_tag, _multiple):
        raise SystemExit("py-amqp: the broker nacked a publish")

    channel.events["basic_ack"].add(on_ack)
    channel.events["basic_nack"].add(on_nack)
    channel.confirm_select()
    bodies, pace = Bodies(size), Pace(rate)
    for n in range(count):
        if rate:
            time.sleep(pace.delay(n))
        while n - confirmed >= WINDOW:
            connection.drain_events()
        channel.basic_publish(amqp.Message(bodies.next(), delivery_mode=2), "", queue, mandatory=True)
        if n % READ_EVERY == 0:
            drain_ready(connection)
    while confirmed < count:
        connection.drain_events()
    connection.close()


def drain_ready(connection: amqp.Connection) -> None:
    """Handle the frames already received, without waiting for more."""
    try:
        while True:
            connection.drain_events(timeout=0)
    except TimeoutError:
        pass


def consume(url: str, queue: str, count: int) -> None:
    connection = connect(url)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, auto_delete=False)
    channel.basic_qos(0, PREFETCH, False)
    receipts = Receipts(count)

    def on_message(message):
        receipts.add(message.body)
        if receipts.ack_due():
            channel.basic_ack(message.delivery_tag, multiple=True)

    channel.basic_consume(queue, callback=on_message, no_ack=False)
    ready()
    while not receipts.done:
        connection.drain_events()
    receipts.report()
    connection.close()


if __name__ == "__main__":
    sys.exit(main(publish, consume))
