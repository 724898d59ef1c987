"""The command-line contract every peer program follows, so the bench drives them all alike.

    python -m bench.peers.NAME publish URL QUEUE COUNT SIZE [RATE]   (RATE msgs/s; 0: as fast as it goes)
    python -m bench.peers.NAME consume URL QUEUE COUNT               ("ready", then one JSON line)

A body starts with its send time (a little-endian double), padded to SIZE; the consumer prints
"ready" once it is consuming, then {"count", "first_recv", "last_recv", "latencies_ms"}. The
settings the streaming clients share are those of the C and Node limits (bench/c, bench/node).
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from collections.abc import Awaitable, Callable

WINDOW = 1000      # publishes awaiting their confirm
PREFETCH = 1000    # unacked deliveries the broker may push
ACK_EVERY = 100    # deliveries covered by one multiple ack
STAMP = struct.Struct("<d")


class Bodies:
    """Message bodies of one size, each stamped with the time it is made."""

    def __init__(self, size: int) -> None:
        self.padding = b"x" * max(0, size - STAMP.size)

    def next(self) -> bytes:
        return STAMP.pack(time.time()) + self.padding


class Pace:
    """How long to wait before message n at `rate` msgs/s (0: never)."""

    def __init__(self, rate: float) -> None:
        self.rate, self.start = rate, time.time()

    def delay(self, n: int) -> float:
        return max(0.0, self.start + n / self.rate - time.time()) if self.rate else 0.0


class Receipts:
    """What a consumer records: when each message arrived and how long it took; printed at the end."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.times: list[float] = []
        self.latencies_ms: list[float] = []
        self.unacked = 0

    def add(self, body: bytes) -> bool:
        """Record one delivery; True once the last one is in."""
        now = time.time()
        self.times.append(now)
        self.latencies_ms.append((now - STAMP.unpack_from(body)[0]) * 1000)
        self.unacked += 1
        return len(self.times) >= self.count

    def ack_due(self) -> bool:
        """True every ACK_EVERY deliveries and on the last: then the caller acks with multiple=True."""
        if self.unacked >= ACK_EVERY or len(self.times) >= self.count:
            self.unacked = 0
            return True
        return False

    @property
    def done(self) -> bool:
        return len(self.times) >= self.count

    def report(self) -> None:
        print(json.dumps({"count": len(self.times), "first_recv": self.times[0], "last_recv": self.times[-1],
                          "latencies_ms": self.latencies_ms}), flush=True)


def ready() -> None:
    print("ready", flush=True)


async def stream(publish_one: Callable[[bytes], Awaitable[object]], count: int, size: int, rate: float) -> None:
    """For asyncio clients whose publish awaits its own confirm: up to WINDOW of them in flight."""
    window = asyncio.Semaphore(WINDOW)
    pending: set[asyncio.Task] = set()
    failed: list[BaseException] = []

    def finished(task: asyncio.Task) -> None:
        pending.discard(task)
        window.release()
        if not task.cancelled() and task.exception() is not None:
            failed.append(task.exception())

    bodies, pace = Bodies(size), Pace(rate)
    for n in range(count):
        if rate:
            await asyncio.sleep(pace.delay(n))
        await window.acquire()
        if failed:
            raise failed[0]
        task = asyncio.ensure_future(publish_one(bodies.next()))
        pending.add(task)
        task.add_done_callback(finished)
    await asyncio.gather(*pending)
    if failed:
        raise failed[0]


def main(publish: Callable[[str, str, int, int, float], None], consume: Callable[[str, str, int], None],
         argv: list[str] | None = None) -> int:
    """Parse the contract's arguments and run one side."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 5 and args[0] == "publish":
        publish(args[1], args[2], int(args[3]), int(args[4]), float(args[5]) if len(args) > 5 else 0.0)
    elif len(args) == 4 and args[0] == "consume":
        consume(args[1], args[2], int(args[3]))
    else:
        print("usage: publish URL QUEUE COUNT SIZE [RATE] | consume URL QUEUE COUNT", file=sys.stderr)
        return 2
    return 0


def main_async(publish: Callable[[str, str, int, int, float], Awaitable[None]],
               consume: Callable[[str, str, int], Awaitable[None]]) -> int:
    """main() for the asyncio clients: the chosen side runs in an event loop of its own."""
    return main(lambda *args: asyncio.run(publish(*args)), lambda *args: asyncio.run(consume(*args)))
