"""The pika adapter: the wire codec under pika's connections, and the private pika names it needs."""

from __future__ import annotations

import importlib.util
import inspect
import time
from pathlib import Path

import pika
import pytest

from rabbitipc import wire
from rabbitipc.wire import pika_adapter
from rabbitipc.wire.pika_adapter import WireConnection
from support import RECEIVED, SENT, get_all, queue_depth


def test_pika_still_has_the_private_names_the_adapter_uses():
    """The installed pika still has every private method and attribute the adapter hooks, and the I/O loop and
    connection-workflow names it turns a connection with (checked on 1.4.4)."""
    missing = [f"{cls.__name__}.{name}" for cls, name in pika_adapter.PRIVATE_NAMES if not hasattr(cls, name)]
    missing += [f"{cls.__name__}.{name}" for cls, name in pika_adapter.PRIVATE_INSTANCE_NAMES
                if f"self.{name} =" not in inspect.getsource(cls) and f"self.{name}:" not in inspect.getsource(cls)]
    missing += [f"{getattr(owner, '__name__', owner)}.{name}" for owner, name in pika_adapter.LOOP_NAMES
                if not hasattr(owner, name)]
    if pika_adapter.BLOCKING_IMPL_KEYWORD not in inspect.signature(pika.BlockingConnection).parameters:
        missing.append(f"BlockingConnection({pika_adapter.BLOCKING_IMPL_KEYWORD}=...)")
    assert not missing, f"pika {pika.__version__} lacks {missing}: re-check rabbitipc/wire/pika_adapter.py"


class _Link:
    """A WireConnection turned by hand, as the publishing engine turns it."""

    def __init__(self, url: str, hold_output: bool = True) -> None:
        self.state: dict = {}
        self.connection = WireConnection(pika.URLParameters(url), hold_output=hold_output,
                                         on_open_callback=lambda c: self.state.setdefault("open", True),
                                         on_open_error_callback=lambda c, e: self.state.setdefault("error", e))
        self.connection.ioloop.activate_poller()
        self.turn(lambda: self.state)
        assert "open" in self.state, self.state

    def turn(self, until, seconds: float = 30.0) -> None:
        connection = self.connection
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            connection.release()
            timer = connection.ioloop.call_later(0.1, lambda: None)
            connection.ioloop.poll()
            connection.ioloop.process_timeouts()
            connection.ioloop.remove_timeout(timer)
        assert until(), "the broker did not answer"

    def channel(self, queue: str):
        opened: list = []
        channel = self.connection.channel(on_open_callback=opened.append)
        self.turn(lambda: opened)
        declared: list = []
        channel.queue_declare(queue, durable=True, callback=declared.append)
        self.turn(lambda: declared)
        return channel

    def close(self) -> None:
        self.connection.close()
        self.turn(lambda: self.connection.is_closed)
        self.connection.ioloop.close()


def test_held_frames_reach_the_broker_on_release(broker, queue):
    """Publishes (ours and pika's) are held until release(), then all of them arrive at the queue."""
    link = _Link(broker.url)
    channel = link.channel(queue)
    properties = pika.BasicProperties(content_type="text/plain", delivery_mode=2, message_id="m")
    for n in range(3):
        link.connection.publish(channel, "", queue, b"held %d" % n, properties)
    channel.basic_publish("", queue, b"pika's own")
    assert link.connection.held_bytes > 0, "frames went to the socket before release()"
    link.connection.release()
    assert link.connection.held_bytes == 0
    link.turn(lambda: queue_depth(broker.url, queue) == 4)
    link.close()


@pytest.mark.parametrize("size", [0, 100, 65_536, 200_000, 1_500_000])
def test_templated_and_pika_publishes_arrive_identical_in_order(broker, queue, size):
    """Messages encoded by the template and by pika interleave in order; a consumer on the adapter gets
    bodies, properties and the counters pika's heartbeat checker reads right (64 KiB bodies go out in a
    gathered write, bodies past frame_max in several frames, and one larger than the input buffer
    makes it grow)."""
    link = _Link(broker.url)
    channel = link.channel(queue)
    confirmed: list = []
    channel.confirm_delivery(ack_nack_callback=confirmed.append, callback=lambda _f: confirmed.append("on"))
    link.turn(lambda: confirmed)
    confirmed.clear()
    sent_before = link.connection.bytes_sent
    sent = []
    for n in range(20):
        body = bytes([n]) * size
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=f"id-{n}",
                                          timestamp=1_700_000_000 + n, headers={"n": n} if n % 3 == 0 else None,
                                          app_id="odd" if n % 5 == 0 else None)  # app_id: pika encodes it
        link.connection.publish(channel, "", queue, body, properties)
        sent.append((body, properties))
    wrote = link.connection.bytes_sent - sent_before
    assert wrote == link.connection.held_bytes, "bytes_sent disagrees with what was written"
    link.turn(lambda: confirmed and confirmed[-1].method.delivery_tag == 20)
    assert all(isinstance(f.method, pika.spec.Basic.Ack) for f in confirmed), confirmed
    received: list = []
    channel.basic_qos(prefetch_count=50)
    channel.basic_consume(queue, lambda ch, method, props, body: received.append((method, props, body)))
    received_before = link.connection.bytes_received
    link.turn(lambda: len(received) == 20)
    assert link.connection.bytes_received > received_before + 20 * size
    for n, ((body, properties), (method, props, got)) in enumerate(zip(sent, received)):
        assert got == body, n
        assert method.delivery_tag == n + 1 and not method.redelivered and method.routing_key == queue
        assert (props.message_id, props.timestamp, props.headers, props.app_id, props.content_type,
                props.delivery_mode) == (properties.message_id, properties.timestamp, properties.headers,
                                         properties.app_id, properties.content_type, properties.delivery_mode)
    link.close()


def test_a_message_of_many_frames_is_walked_once(broker, queue):
    """A 4 MiB body at frame_max 4096 (1,027 frames) arriving in many socket reads: the connection's decoder
    reads each body frame's head about once (at most one more per read), not once per read from the first."""
    link = _Link(broker.url + ("&" if "?" in broker.url else "?") + "frame_max=4096")
    assert link.connection.params.frame_max == 4096
    channel = link.channel(queue)
    body = bytes(range(256)) * (4 << 12)
    frames = -(-len(body) // 4088)
    channel.basic_publish("", queue, body, pika.BasicProperties(message_id="big"))
    received: list = []
    channel.basic_consume(queue, lambda ch, method, props, got: received.append(got), auto_ack=True)
    before = link.connection._decoder.frames_walked
    link.turn(lambda: received)
    assert received == [body]
    assert frames <= link.connection._decoder.frames_walked - before < 3 * frames
    link.close()


def test_blocking_connection_consumes_through_the_adapter(broker, queue):
    """pika.BlockingConnection with the adapter underneath: publish confirmed, consume, ack, all as pika does."""
    connection = pika_adapter.blocking_connection(pika.URLParameters(broker.url))
    assert isinstance(connection._impl, WireConnection)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    for n in range(5):
        channel.basic_publish("", queue, b"blocking %d" % n, pika.BasicProperties(message_id=str(n)))
    got = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=10):
        assert method is not None, "no delivery within 10 s"
        got.append((properties.message_id, body))
        channel.basic_ack(method.delivery_tag)
        if len(got) == 5:
            break
    channel.cancel()
    assert got == [(str(n), b"blocking %d" % n) for n in range(5)]
    assert connection._impl._fast_in, "the adapter never took over the input"
    connection.close()
    assert queue_depth(broker.url, queue) == 0


def test_the_active_codec_is_named():
    """describe() names the codec in use; RABBITIPC_PURE_PYTHON picks the fallback (see test_wire.py)."""
    assert wire.describe().startswith("wire codec: ")


@pytest.mark.parametrize("pure", ["1", "0"], ids=["pure-python", "compiled-if-built"])
def test_programs_deliver_exactly_once_on_each_codec(run, pure):
    """Sender and receiver on the pure-Python fallback (and on the C extension where built) deliver every
    message once and log which codec is active."""
    built = importlib.util.find_spec("rabbitipc.wire._speedups") is not None
    expected = "C extension" if pure == "0" and built else "pure Python"
    receiver = run("receiver", env={wire.PURE_PYTHON_ENV: pure})
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "300", "--rate", "0", "--size", "3000", env={wire.PURE_PYTHON_ENV: pure})
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 300)
    for program in (sender, receiver):
        assert f"wire codec: {expected}" in program.output, program.output[:2000]
    sent = sender.ids(SENT)
    assert len(set(sent)) == 300 and sorted(receiver.ids(RECEIVED)) == sorted(sent)


def test_gathered_bodies_survive_partial_writes_in_order(broker, queue):
    """Far more held than the socket takes at once (partial gathered writes), bodies of every size around the
    gather threshold and frame_max, pika's own publishes between them: every body arrives whole, in order."""
    link = _Link(broker.url)
    channel = link.channel(queue)
    assert link.connection._gather, "the plain TCP transport should write with sendmsg"
    frame_body = link.connection.params.frame_max - 8
    sizes = [pika_adapter.GATHER_MIN - 1, pika_adapter.GATHER_MIN, 65_536, frame_body, frame_body + 1, 7, 300_000]
    sent = []
    for n in range(210):
        size = sizes[n % len(sizes)]
        body = (b"%06d" % n) * (size // 6) + b"x" * (size % 6)
        if n % 11 == 0:
            channel.basic_publish("", queue, body, pika.BasicProperties(app_id="pika", delivery_mode=2))
        else:
            link.connection.publish(channel, "", queue, body, pika.BasicProperties(delivery_mode=2))
        sent.append(body)
    held = link.connection.held_bytes
    assert held > 8 * 2**20, "expected more than a socket buffer's worth held"
    link.connection.release()
    received: list = []
    channel.basic_qos(prefetch_count=20)
    channel.basic_consume(queue, lambda ch, method, props, body: (received.append(body),
                                                                  ch.basic_ack(method.delivery_tag)))
    link.turn(lambda: len(received) == len(sent), seconds=60)
    assert [len(body) for body in received] == [len(body) for body in sent]
    assert received == sent
    transport = link.connection._transport
    assert transport._produce == link.connection._produce_gathered, "pika's per-buffer send is still in use"
    assert not transport._tx_buffers and transport._tx_buffered_byte_count == 0, "the write queue's count drifted"
    link.close()


def test_a_confirm_callback_that_publishes_into_a_full_window_reads_the_stream_once(broker, queue):
    """A publisher's on_confirmed callback runs while confirms are decoded; publishing from it into a full
    window turns the I/O loop again, which reads more from the socket in the middle of that decode. Every
    confirm is still taken once (no confirm decoded twice, none lost) and every message lands once."""
    from rabbitipc.publish.engine import StreamPublisher
    from rabbitipc.topology import Route

    count = 24  # each even confirm nests one more turn: a chain of callbacks deepens the stack
    confirmed: list[int] = []

    sent: list[int] = []  # in the order publish() handed them to the socket (nested calls send first)

    def publish(item: int) -> None:
        publisher.publish(b"%d" % item, pika.BasicProperties(delivery_mode=2), item)
        sent.append(item)

    def publish_next(item: int) -> None:
        confirmed.append(item)
        if item % 2 == 0 and item + 3 < count:  # the second of the two waits for room: a turn inside the decode
            publish(item + 2)
            publish(item + 3)

    publisher = StreamPublisher(broker.url, Route("work", queue), window=2, on_confirmed=publish_next)
    publish(0)
    publish(1)
    assert publisher.flush(), publisher.unconfirmed()
    while len(confirmed) < count and publisher.in_flight:
        publisher.flush()
    publisher.close()
    # Once each (a nested turn may settle later confirms before the rest of an earlier multiple ack: the
    # engine's order, not the stream's), and every message in the queue once, in the order it was sent.
    assert sorted(confirmed) == list(range(count)), confirmed
    assert sorted(sent) == list(range(count))
    assert [body for _properties, body in get_all(broker.url, queue)] == [b"%d" % n for n in sent]


def test_input_buffer_takes_appended_data_larger_than_half_of_it():
    """Data handed over by pika itself (its read before the take-over) goes in whole, whatever its size."""
    connection = WireConnection.__new__(WireConnection)
    connection._in = bytearray()
    connection._in_view = memoryview(connection._in)
    connection._in_start = connection._in_end = 0
    connection._new_input_buffer(pika_adapter.IN_BUFFER, 0)
    connection._append(b"a" * 200_000)
    connection._append(b"b" * pika_adapter.IN_BUFFER)
    assert bytes(connection._in_view[connection._in_start:connection._in_end]) == \
        b"a" * 200_000 + b"b" * pika_adapter.IN_BUFFER


def test_only_the_adapter_reaches_into_pika_internals():
    """No rabbitipc module but wire/pika_adapter.py imports pika's connection workflow or turns an I/O loop itself."""
    package = Path(pika_adapter.__file__).parents[1]
    found = [f"{path.relative_to(package)}: {word}" for path in sorted(package.rglob("*.py"))
             if path.name != "pika_adapter.py"
             for word in ("connection_workflow", "pika.adapters.utils", ".ioloop", "process_timeouts")
             if word in path.read_text()]
    assert not found, f"pika internals outside the adapter: {found}"
