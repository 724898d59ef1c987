"""amqpstorm: its documented reliable publisher and consumer.

confirm_deliveries() makes each basic.publish() wait for its confirm (amqpstorm has no streamed
mode); the consumer prefetches PREFETCH and acks every ACK_EVERY with multiple=True.
Contract: bench/peers/contract.py.
"""

import sys
import time

import amqpstorm

from bench.peers.contract import PREFETCH, Bodies, Pace, Receipts, main, ready


def publish(url: str, queue: str, count: int, size: int, rate: float) -> None:
    with amqpstorm.UriConnection(url) as connection, connection.channel() as channel:
        channel.queue.declare(queue, durable=True)
        channel.confirm_deliveries()
        bodies, pace = Bodies(size), Pace(rate)
        for n in range(count):
            if rate:
                time.sleep(pace.delay(n))
            if not channel.basic.publish(bodies.next(), queue, properties={"delivery_mode": 2}, mandatory=True):
                raise SystemExit("amqpstorm: the broker nacked a publish")


def consume(url: str, queue: str, count: int) -> None:
    with amqpstorm.UriConnection(url) as connection, connection.channel() as channel:
        channel.queue.declare(queue, durable=True)
        channel.basic.qos(PREFETCH)
        receipts = Receipts(count)

        def on_message(message: amqpstorm.Message) -> None:
            receipts.add(message.body)
            if receipts.ack_due():
                channel.basic.ack(message.delivery_tag, multiple=True)
            if receipts.done:
                channel.stop_consuming()

        channel.basic.consume(on_message, queue, no_ack=False)
        ready()
        channel.start_consuming(auto_decode=False)
        receipts.report()


if __name__ == "__main__":
    sys.exit(main(publish, consume))
