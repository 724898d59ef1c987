"""kombu: its documented reliable producer and consumer (over py-amqp).

transport_options={"confirm_publish": True} makes each publish wait for its confirm (kombu's
only confirm mode); the consumer prefetches PREFETCH and acks every ACK_EVERY with multiple=True.
Contract: bench/peers/contract.py.
"""

import sys
import time

import kombu

from bench.peers.contract import PREFETCH, Bodies, Pace, Receipts, main, ready


def publish(url: str, queue: str, count: int, size: int, rate: float) -> None:
    target = kombu.Queue(queue, routing_key=queue, durable=True)
    with kombu.Connection(url, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        target(connection.default_channel).declare()
        bodies, pace = Bodies(size), Pace(rate)
        for n in range(count):
            if rate:
                time.sleep(pace.delay(n))
            producer.publish(bodies.next(), routing_key=queue, delivery_mode=2, mandatory=True,
                             content_type="application/octet-stream", content_encoding="binary")


def consume(url: str, queue: str, count: int) -> None:
    source = kombu.Queue(queue, routing_key=queue, durable=True)
    receipts = Receipts(count)

    def on_message(message: kombu.Message) -> None:
        receipts.add(message.body)
        if receipts.ack_due():
            message.ack(multiple=True)

    with kombu.Connection(url) as connection, \
            connection.Consumer(source, on_message=on_message, prefetch_count=PREFETCH):
        ready()
        while not receipts.done:
            connection.drain_events()
    receipts.report()


if __name__ == "__main__":
    sys.exit(main(publish, consume))
