"""The benchmark's tutorial-style baseline: pika as the RabbitMQ tutorials write it.

BlockingConnection, confirm_delivery (each publish waits for its confirm), persistent
messages, prefetch 1, one ack per message.
    python bench/tutorial.py publish URL QUEUE COUNT SIZE [RATE]   (msgs/s; 0: as fast as confirms allow)
    python bench/tutorial.py consume URL QUEUE COUNT     (prints one JSON line of results)
"""

import json
import struct
import sys
import time

import pika


def publish(url: str, queue: str, count: int, size: int, rate: float = 0) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    start = time.time()
    for n in range(count):
        if rate:
            connection.sleep(max(0.0, start + n / rate - time.time()))
        body = struct.pack("<d", time.time()).ljust(size, b"x")
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()


def consume(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.basic_qos(prefetch_count=1)
    latencies: list[float] = []
    times: list[float] = []

    def on_message(ch, method, _properties, body):
        now = time.time()
        times.append(now)
        latencies.append((now - struct.unpack("<d", body[:8])[0]) * 1000)
        ch.basic_ack(method.delivery_tag)
        if len(latencies) == count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    print("ready", flush=True)
    channel.start_consuming()
    print(json.dumps({"count": count, "first_recv": times[0], "last_recv": times[-1], "latencies_ms": latencies}))
    connection.close()


if __name__ == "__main__":
    mode, url, queue, count = sys.argv[1:5]
    if mode == "publish":
        publish(url, queue, int(count), int(sys.argv[5]), float(sys.argv[6]) if len(sys.argv) > 6 else 0)
    else:
        consume(url, queue, int(count))
