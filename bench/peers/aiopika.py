"""aio-pika: its documented reliable publisher, with the confirms awaited concurrently.

A channel with publisher_confirms=True makes each exchange.publish() await its confirm; up to
WINDOW of them run at once (contract.stream). The consumer prefetches PREFETCH and acks every
ACK_EVERY with multiple=True. Contract: bench/peers/contract.py.
"""

import asyncio
import sys

import aio_pika

from bench.peers.contract import PREFETCH, Receipts, main_async, ready, stream


async def publish_async(url: str, queue: str, count: int, size: int, rate: float) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True)
        exchange = channel.default_exchange

        async def publish_one(body: bytes) -> None:
            await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                   routing_key=queue, mandatory=True)

        await stream(publish_one, count, size, rate)


async def consume_async(url: str, queue: str, count: int) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        declared = await channel.declare_queue(queue, durable=True)
        receipts, finished = Receipts(count), asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            receipts.add(message.body)
            if receipts.ack_due():
                await message.ack(multiple=True)
            if receipts.done:
                finished.set()

        await declared.consume(on_message, no_ack=False)
        ready()
        await finished.wait()
        receipts.report()


if __name__ == "__main__":
    sys.exit(main_async(publish_async, consume_async))
