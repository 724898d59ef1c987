"""The request/reply pairs bench.rpc compares: each a responder and a caller program, on one contract.

    python -m bench.rpc_peers serve CLIENT URL QUEUE                      ("ready", then serves until killed)
    python -m bench.rpc_peers call CLIENT URL QUEUE CALLS CONCURRENCY SIZE  (one JSON line: latencies_ms, wall_s)

CLIENT is one of:
  rabbitipc   our RpcClient (one client shared by CONCURRENCY threads) against our responder (the
              receiver with --pattern rpc --handler bench.rpc_peers:echo, run by bench.rpc itself)
  tutorial    the RabbitMQ tutorials' sixth part: a pika BlockingConnection client with an exclusive
              callback queue (one client per calling thread: the tutorial's client is not thread-safe),
              a server with prefetch 1 that acks after replying
  aio-pika    aio_pika.patterns.RPC, caller and callee as its documentation writes them, CONCURRENCY
              calls awaited at once
A body is SIZE bytes; each responder answers with the request's body.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid

import pika


def echo(delivery) -> bytes:
    """Our responder's handler: the reply is the request's body."""
    return delivery.body


def split(calls: int, concurrency: int) -> list[int]:
    """CALLS shared out between CONCURRENCY callers."""
    return [calls // concurrency + (1 if n < calls % concurrency else 0) for n in range(concurrency)]


def timed_threads(calls: int, concurrency: int, make_caller) -> dict:
    """Run CONCURRENCY threads, each making its share of the calls with its own caller; latencies and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def work(share: int) -> None:
        call = make_caller()
        mine = []
        for _ in range(share):
            start = time.perf_counter()
            call()
            mine.append((time.perf_counter() - start) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(share,)) for share in split(calls, concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies_ms": latencies, "wall_s": time.perf_counter() - started}


# -- rabbitipc -------------------------------------------------------------------------------------
def rabbitipc_call(url: str, queue: str, calls: int, concurrency: int, size: int) -> dict:
    from rabbitipc.rpc import RpcClient

    body = b"x" * size
    with RpcClient(url, queue) as client:
        client.call(body, timeout=60)  # connected and the responder answering before the clock starts
        return timed_threads(calls, concurrency, lambda: lambda: client.call(body, timeout=60))


# -- the tutorial ------------------------------------------------------------------------------------
class TutorialClient:
    """The tutorial's FibonacciRpcClient, with a body in place of the number."""

    def __init__(self, url: str, queue: str) -> None:
        self.queue = queue
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        result = self.channel.queue_declare(queue="", exclusive=True)
        self.callback_queue = result.method.queue
        self.channel.basic_consume(queue=self.callback_queue, on_message_callback=self.on_response, auto_ack=True)
        self.response = self.corr_id = None

    def on_response(self, _ch, _method, props, body) -> None:
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, body: bytes) -> bytes:
        self.response, self.corr_id = None, str(uuid.uuid4())
        self.channel.basic_publish(exchange="", routing_key=self.queue, body=body, properties=pika.BasicProperties(
            reply_to=self.callback_queue, correlation_id=self.corr_id))
        while self.response is None:
            self.connection.process_data_events(time_limit=None)
        return self.response


def tutorial_serve(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue=queue)

    def on_request(ch, method, props, body) -> None:
        ch.basic_publish(exchange="", routing_key=props.reply_to, body=body,
                         properties=pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(delivery_tag=method.delivery_tag)

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=queue, on_message_callback=on_request)
    print("ready", flush=True)
    channel.start_consuming()


def tutorial_call(url: str, queue: str, calls: int, concurrency: int, size: int) -> dict:
    body = b"x" * size

    def caller():
        client = TutorialClient(url, queue)
        return lambda: client.call(body)

    TutorialClient(url, queue).call(body)  # the server is answering before the clock starts
    return timed_threads(calls, concurrency, caller)


# -- aio-pika ----------------------------------------------------------------------------------------
async def aiopika_serve_async(url: str, queue: str) -> None:
    import aio_pika
    from aio_pika.patterns import RPC

    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    rpc = await RPC.create(channel)

    async def answer(*, body: bytes) -> bytes:
        return body

    await rpc.register(queue, answer, auto_delete=True)
    print("ready", flush=True)
    await asyncio.Future()


async def aiopika_call_async(url: str, queue: str, calls: int, concurrency: int, size: int) -> dict:
    import aio_pika
    from aio_pika.patterns import RPC

    body = b"x" * size
    async with await aio_pika.connect_robust(url) as connection:
        rpc = await RPC.create(await connection.channel())
        await rpc.call(queue, kwargs={"body": body})
        latencies: list[float] = []

        async def caller(share: int) -> None:
            for _ in range(share):
                start = time.perf_counter()
                await rpc.call(queue, kwargs={"body": body})
                latencies.append((time.perf_counter() - start) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(caller(share) for share in split(calls, concurrency)))
        return {"latencies_ms": latencies, "wall_s": time.perf_counter() - started}


CALLERS = {"rabbitipc": rabbitipc_call, "tutorial": tutorial_call,
           "aio-pika": lambda *args: asyncio.run(aiopika_call_async(*args))}
SERVERS = {"tutorial": tutorial_serve, "aio-pika": lambda *args: asyncio.run(aiopika_serve_async(*args))}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 4 and args[0] == "serve" and args[1] in SERVERS:
        SERVERS[args[1]](args[2], args[3])
    elif len(args) == 7 and args[0] == "call" and args[1] in CALLERS:
        result = CALLERS[args[1]](args[2], args[3], int(args[4]), int(args[5]), int(args[6]))
        print(json.dumps(result), flush=True)
    else:
        print("usage: serve tutorial|aio-pika URL QUEUE | call rabbitipc|tutorial|aio-pika URL QUEUE CALLS "
              "CONCURRENCY SIZE", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
