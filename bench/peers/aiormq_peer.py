"""aiormq: the low-level asyncio client under aio-pika, with the same strategy as aiopika.py.

A channel with publisher_confirms=True makes each basic_publish() await its confirm; up to WINDOW
run at once (contract.stream). The consumer prefetches PREFETCH and acks every ACK_EVERY with
multiple=True. Contract: bench/peers/contract.py.
"""

import asyncio
import sys

import aiormq
from pamqp.commands import Basic

from bench.peers.contract import PREFETCH, Receipts, main_async, ready, stream

PERSISTENT = aiormq.spec.Basic.Properties(delivery_mode=2)


async def publish_async(url: str, queue: str, count: int, size: int, rate: float) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.queue_declare(queue, durable=True)

    async def publish_one(body: bytes) -> None:
        confirmation = await channel.basic_publish(body, routing_key=queue, properties=PERSISTENT, mandatory=True)
        if not isinstance(confirmation, Basic.Ack):
            raise RuntimeError(f"aiormq: publish not confirmed: {confirmation!r}")

    await stream(publish_one, count, size, rate)
    await connection.close()


async def consume_async(url: str, queue: str, count: int) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.queue_declare(queue, durable=True)
    await channel.basic_qos(prefetch_count=PREFETCH)
    receipts, finished = Receipts(count), asyncio.Event()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        receipts.add(message.body)
        if receipts.ack_due():
            await channel.basic_ack(message.delivery_tag, multiple=True)
        if receipts.done:
            finished.set()

    await channel.basic_consume(queue, on_message, no_ack=False)
    ready()
    await finished.wait()
    receipts.report()
    await connection.close()


if __name__ == "__main__":
    sys.exit(main_async(publish_async, consume_async))
