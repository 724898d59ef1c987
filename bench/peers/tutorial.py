"""tutorial-pika: pika as the RabbitMQ tutorials write it, the baseline users start from.

BlockingConnection, confirm_delivery (each publish waits for its confirm), persistent messages,
prefetch 1, one ack per message. Contract: bench/peers/contract.py.
"""

import sys

import pika

from bench.peers.contract import Bodies, Pace, Receipts, main, ready


def publish(url: str, queue: str, count: int, size: int, rate: float) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    bodies, pace = Bodies(size), Pace(rate)
    for n in range(count):
        if rate:
            connection.sleep(pace.delay(n))
        channel.basic_publish("", queue, bodies.next(), pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()


def consume(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.basic_qos(prefetch_count=1)
    receipts = Receipts(count)

    def on_message(ch, method, _properties, body):
        done = receipts.add(body)
        ch.basic_ack(method.delivery_tag)
        if done:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    ready()
    channel.start_consuming()
    receipts.report()
    connection.close()


if __name__ == "__main__":
    sys.exit(main(publish, consume))
