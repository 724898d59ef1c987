"""How a late joiner gets the room's last N messages: the history stream against a bounded queue.

    python -m bench.chat_history [--messages 1000,20000] [--last 20] [--joiners 5]

On one private broker, for a room that already holds --messages chat lines (100 B JSON):
  stream   what rabbitipc-chat does: the fanout exchange feeds a stream (10 MB retention); a
           joiner attaches at "last", learns the newest offset, re-attaches N back and reads N
  queue    the alternative: the exchange feeds a durable classic queue with x-max-length N
           (overflow drop-head); a joiner basic_gets N without acking, then closes its channel so
           they are requeued for the next one
Reported: the median time for one joiner to have the N lines (connection included), how many
of --joiners starting together each saw all N, and the publish time per confirmed message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time

import pika

from devtools.localbroker import LocalBroker
from rabbitipc.names import CHAT_STREAM_ARGUMENTS


def body(n: int) -> bytes:
    return json.dumps({"id": f"{n:016x}", "kind": "text", "username": "bench", "message": f"line {n:06d} " + "x" * 20,
                       "sent_at": time.time()}).encode()


def setup(url: str, room: str, kind: str, last: int, messages: int) -> float:
    """Create the room with its history of `kind`, fill it; return seconds per confirmed publish."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(room, "fanout", durable=True)
    arguments = CHAT_STREAM_ARGUMENTS if kind == "stream" else {"x-max-length": last, "x-overflow": "drop-head"}
    channel.queue_declare(f"{room}.history", durable=True, arguments=arguments)
    channel.queue_bind(f"{room}.history", room)
    channel.confirm_delivery()
    started = time.perf_counter()
    for n in range(messages):
        channel.basic_publish(room, "", body(n), pika.BasicProperties(delivery_mode=2))
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed / messages


def join_stream(url: str, room: str, last: int) -> list[bytes]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    got: list = []
    channel = connection.channel()
    channel.basic_qos(prefetch_count=200)
    channel.basic_consume(f"{room}.history", lambda ch, m, p, b: got.append(p.headers["x-stream-offset"]),
                          arguments={"x-stream-offset": "last"})
    while not got:
        connection.process_data_events(0.01)
    channel.close()
    newest, lines = got[0], []
    channel = connection.channel()
    channel.basic_qos(prefetch_count=200)
    channel.basic_consume(f"{room}.history", lambda ch, m, p, b: lines.append(b),
                          arguments={"x-stream-offset": max(0, newest - last + 1)})
    while len(lines) < last:
        connection.process_data_events(0.01)
    connection.close()
    return lines[:last]


def join_queue(url: str, room: str, last: int) -> list[bytes]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    lines = []
    for _ in range(last):
        method, _, payload = channel.basic_get(f"{room}.history", auto_ack=False)
        if method is None:
            break
        lines.append(payload)
    channel.close()  # unacked: requeued in order for the next joiner
    connection.close()
    return lines


def measure(url: str, kind: str, messages: int, last: int, joiners: int, repeats: int = 7) -> dict:
    room = f"bench-{kind}-{messages}"
    per_publish = setup(url, room, kind, last, messages)
    join = join_stream if kind == "stream" else join_queue
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        lines = join(url, room, last)
        times.append(time.perf_counter() - started)
        assert len(lines) == last, (kind, len(lines))
    results: list[int] = []

    def one() -> None:
        results.append(len(join(url, room, last)))

    threads = [threading.Thread(target=one) for _ in range(joiners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"kind": kind, "messages": messages, "join_ms": statistics.median(times) * 1000,
            "complete": sum(n == last for n in results), "joiners": joiners, "publish_us": per_publish * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_history", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", default="1000,20000")
    parser.add_argument("--last", type=int, default=20)
    parser.add_argument("--joiners", type=int, default=5)
    args = parser.parse_args(argv)
    node = LocalBroker(tempfile.mkdtemp(prefix="chat-history-"))
    node.start()
    try:
        print(f"{'history':8} {'room size':>9} {'join (ms)':>9} {'complete':>9} {'publish (us)':>12}")
        for messages in (int(m) for m in args.messages.split(",")):
            for kind in ("stream", "queue"):
                row = measure(node.url, kind, messages, args.last, args.joiners)
                print(f"{row['kind']:8} {row['messages']:9d} {row['join_ms']:9.1f} "
                      f"{row['complete']:>4d} of {row['joiners']:<2d} {row['publish_us']:12.0f}")
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
