"""amqpstorm: its maintainer's documented way to publish reliably in bulk, and its documented consumer.

amqpstorm's confirm mode (confirm_deliveries) makes each basic.publish() wait for its own confirm,
and it polls for that reply every 10 ms (amqpstorm.base.IDLE_WAIT): about 100 msgs/s, whatever the
broker does. For publishing many messages its maintainer points to transactions instead
(https://github.com/eandersson/amqpstorm/issues/116): the channel in tx mode, a commit after each batch; tx.commit-ok
comes once the broker has the batch, so a lost batch is republished, as with a window of unconfirmed
publishes. Here a batch is WINDOW messages, the window the streaming clients keep unconfirmed. The
consumer prefetches PREFETCH and acks every ACK_EVERY with multiple=True. Contract:
bench/peers/contract.py.
"""

import sys
import time

import amqpstorm

from bench.peers.contract import PREFETCH, WINDOW, Bodies, Pace, Receipts, main, ready


def publish(url: str, queue: str, count: int, size: int, rate: float) -> None:
    with amqpstorm.UriConnection(url) as connection, connection.channel() as channel:
        channel.queue.declare(queue, durable=True)
        channel.tx.select()
        bodies, pace = Bodies(size), Pace(rate)
        for n in range(count):
            if rate:
                time.sleep(pace.delay(n))
            channel.basic.publish(bodies.next(), queue, properties={"delivery_mode": 2}, mandatory=True)
            if (n + 1) % WINDOW == 0 or n + 1 == count:
                channel.tx.commit()  # raises when the broker refuses the batch


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
