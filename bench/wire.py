"""Micro-benchmark of the wire codec: ns per message, C extension vs pure Python vs pika's own codec.

    python -m bench.wire [--messages N] [--rounds N]

No broker, no sockets: the per-message CPU of turning a publish into bytes and incoming bytes
into deliveries and confirms, which is what the compiled path replaces under pika. Cases:
  encode 100 B / 64 KiB   one Basic.Publish + header + body frames with our four properties
                          (content_type, delivery_mode, message_id, timestamp); pika: the
                          marshal of Connection._send_message (channel bookkeeping not included)
  decode deliver 100 B    Basic.Deliver + header + body as the broker sends them, fed in 4 KiB
                          reads (pika's read size) and in 256 KiB reads; pika: decode_frame on
                          its frame buffer, trimmed after each frame, as _on_data_available does,
                          plus assembling the content (what its channel does)
  decode deliver 64 KiB   the same with 64 KiB bodies (frame_max 131072: one body frame)
  decode deliver 8 MiB    8 MiB bodies at frame_max 4096 (2,053 frames each) in 256 KiB reads: a
                          message arriving in many reads is walked once (rabbitipc.wire.Decoder),
                          where walking it from its first frame at every read is quadratic
  decode ack              Basic.Ack frames (publisher confirms), in 4 KiB reads
The codecs decode through a Decoder, one per stream, as the connection does.
Best of --rounds; the machine may be shared, so read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from functools import partial

from pika import frame, spec
from pika.connection import Connection

FRAME_MAX = 131072
PROPS = dict(content_type="application/json", delivery_mode=2)


class _Capture:
    def __init__(self) -> None:
        self._body_max_length = FRAME_MAX - 8
        self.frames: list[bytes] = []

    def _output_marshaled_frames(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)


def pika_encoder(body_size: int):
    """pika's publish marshal: Method + Header + Body frames joined (as our coalescing adapter sends them)."""
    capture = _Capture()
    publish = spec.Basic.Publish(exchange="", routing_key="work")
    send = Connection._send_message

    def encode(body: bytes, message_id: str, timestamp: int) -> bytes:
        properties = spec.BasicProperties(message_id=message_id, timestamp=timestamp, **PROPS)
        send(capture, 1, publish, (properties, body))
        data = b"".join(capture.frames)
        capture.frames.clear()
        return data

    return encode


def pika_decoder(data: bytes, read_size: int) -> int:
    """Deliveries and confirms decoded as pika's connection and channel do; returns the events seen."""
    buffer = b""
    count = 0
    pending = None
    parts: list[bytes] = []
    size = 0
    for at in range(0, len(data), read_size):
        buffer += data[at:at + read_size]
        while buffer:
            used, value = frame.decode_frame(buffer)
            if not value:
                break
            buffer = buffer[used:]
            if isinstance(value, frame.Method):
                if isinstance(value.method, spec.Basic.Deliver):
                    pending = value
                else:
                    count += 1
            elif isinstance(value, frame.Header):
                pending = (pending, value.properties)
                parts, size = [], value.body_size
            elif isinstance(value, frame.Body):
                parts.append(value.fragment)
                if sum(map(len, parts)) == size:
                    body = b"".join(parts)  # noqa: F841 (what the channel hands the consumer)
                    count += 1
    return count


def codec_decoder(codec, data: bytes, read_size: int) -> int:
    """The codec's Decoder fed by reads of read_size bytes, keeping the unconsumed tail for the next read."""
    buffer = bytearray()
    count = 0
    decode = codec.Decoder().decode
    for at in range(0, len(data), read_size):
        buffer += data[at:at + read_size]
        events, end, _status = decode(buffer)
        count += len(events)
        del buffer[:end]
    return count


def deliveries(n: int, body_size: int, frame_max: int = FRAME_MAX) -> bytes:
    capture = _Capture()
    capture._body_max_length = frame_max - 8
    body = os.urandom(body_size)
    for tag in range(1, n + 1):
        properties = spec.BasicProperties(message_id=os.urandom(16).hex(), timestamp=1700000000, **PROPS)
        Connection._send_message(capture, 1, spec.Basic.Deliver("ctag-1", tag, False, "", "work"),
                                 (properties, body))
    return b"".join(capture.frames)


def acks(n: int) -> bytes:
    return b"".join(frame.Method(1, spec.Basic.Ack(tag, False)).marshal() for tag in range(1, n + 1))


def encode_each(encode, body: bytes, ids: list[str]) -> None:
    for message_id in ids:
        encode(body, message_id, 1700000000)


def encode_batch(encode_into, body: bytes, ids: list[str]) -> bytes:
    out = bytearray()
    for message_id in ids:
        encode_into(out, body, message_id, 1700000000)
    return bytes(out)


def best(rounds: int, n: int, run) -> float:
    """Best ns per message over rounds of run() (which handles n messages)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - start)
    return min(times) / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000, help="messages per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case; the best is kept (default 5)")
    args = parser.parse_args(argv)
    n, rounds = args.messages, args.rounds
    codecs = {"pure-python": importlib.import_module("rabbitipc.wire._pure")}
    try:
        codecs = {"C": importlib.import_module("rabbitipc.wire._speedups"), **codecs}
    except ImportError as exc:
        print(f"(the C extension is not built: {exc})")
    ids = [os.urandom(16).hex() for _ in range(n)]
    rows: list[tuple[str, dict[str, float]]] = []

    for label, size in (("encode 100 B", 100), ("encode 64 KiB", 65536)):
        body = os.urandom(size)
        m = n if size <= 100 else max(n // 20, 100)
        row = {}
        for name, codec in codecs.items():
            template = codec.PublishTemplate(1, "", "work", frame_max=FRAME_MAX, **PROPS)
            row[name] = best(rounds, m, partial(encode_each, template.encode, body, ids[:m]))
        row["pika"] = best(rounds, m, partial(encode_each, pika_encoder(size), body, ids[:m]))
        rows.append((label, row))

    body = os.urandom(100)
    row = {}
    for name, codec in codecs.items():
        template = codec.PublishTemplate(1, "", "work", frame_max=FRAME_MAX, **PROPS)
        row[name] = best(rounds, n, partial(encode_batch, template.encode_into, body, ids))
    rows.append(("encode_into 100 B, one buffer", row))

    few = max(n // 20, 100)
    cases = [("decode deliver 100 B, 4 KiB reads", deliveries(n, 100), 4096, n),
             ("decode deliver 100 B, 256 KiB reads", deliveries(n, 100), 262144, n),
             ("decode deliver 64 KiB, 4 KiB reads", deliveries(few, 65536), 4096, few),
             ("decode deliver 64 KiB, 256 KiB reads", deliveries(few, 65536), 262144, few),
             ("decode deliver 8 MiB, frame_max 4096, 256 KiB reads", deliveries(2, 8 << 20, 4096), 262144, 2),
             ("decode ack, 4 KiB reads", acks(n), 4096, n)]
    for label, data, read_size, m in cases:
        row = {}
        for name, codec in codecs.items():
            assert codec_decoder(codec, data, read_size) == m
            row[name] = best(rounds, m, partial(codec_decoder, codec, data, read_size))
        if read_size == 4096:  # pika reads 4 KiB at a time: its larger-read numbers would not be pika's
            assert pika_decoder(data, read_size) == m
            row["pika"] = best(rounds, m, partial(pika_decoder, data, read_size))
        rows.append((label, row))

    names = [*codecs, "pika"]
    print(f"ns per message, best of {rounds} rounds of {n} (fewer for 64 KiB); load on this machine skews these")
    print("%-52s" % "case" + "".join("%14s" % name for name in names) + "%14s" % "pika / C")
    for label, row in rows:
        ratio = row["pika"] / row["C"] if "pika" in row and "C" in row else None
        print("%-52s" % label + "".join("%14s" % (f"{row[name]:,.0f}" if name in row else "-") for name in names)
              + "%14s" % (f"{ratio:.1f}x" if ratio else "-"))


if __name__ == "__main__":
    main()
