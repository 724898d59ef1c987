"""--dedupe-store: the handled ids kept in the stream <queue>.handled survive a receiver's SIGKILL.

A receiver acks in batches, so when it dies, the messages it handled since its last ack come back.
With the store each id is confirmed in the stream before its ack may go out, and read back by the
next receiver (or by another replica, as it is written): at most the message in hand runs twice.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pika

from rabbitipc.consume.dedupe import RecentIds
from rabbitipc.consume.dedupe_store import DedupeStore
from rabbitipc.consume.handlers import Delivery
from rabbitipc.defaults import DEDUPE_WINDOW
from rabbitipc.message import Message
from rabbitipc.shutdown import StopFlag
from support import SENT, queue_depth, wait_alive_until, wait_until
from tcp_proxy import TcpProxy

COUNT = 300
RECORD = ("--handler", "slow_handler:record_handled")


def handled_ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def read_back(url: str, queue: str) -> DedupeStore:
    """A store attached on a connection of its own, as the next receiver's: what it read from <queue>.handled."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        store = DedupeStore(RecentIds(DEDUPE_WINDOW), DEDUPE_WINDOW)
        store.attach(connection, queue, StopFlag())
    finally:
        connection.close()
    return store


def killed_while_its_acks_are_held(run, broker, queue, tmp_path, *options: str) -> Counter:
    """A backlog handled by a receiver whose acks (and publishes) stop reaching the broker; it is
    SIGKILLed and a new receiver finishes: how many times each message was handled."""
    handled = tmp_path / "handled.txt"
    # 5 ms of work a message: the hold comes with most of the backlog still in hand, whatever the machine's load
    # (ci15: the first receiver had handled and acked nearly all 300 before it, and the control saw 1 twice)
    env = {"TEST_HANDLED_FILE": str(handled), "TEST_HANDLE_SECONDS": "0.005"}
    sender = run("sender", "--count", str(COUNT), "--rate", "0")
    assert sender.wait(60) == 0, sender.output
    accepted = set(sender.ids(SENT))
    proxy = TcpProxy(broker.amqp_port)
    try:
        url = broker.url.replace(f":{broker.amqp_port}/", f":{proxy.port}/")
        first = run("receiver", "--prefetch", "400", *RECORD, *options, url=url, env=env)
        wait_alive_until(first, lambda: len(handled_ids(handled)) >= 50, 60, "50 messages handled")
        proxy.hold()
        # Not a synchronisation: the time a receiver that does not wait for its store needs to handle
        # the rest of its prefetched messages (without the store it does: the test below sees it).
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(handled_ids(handled)) < COUNT:
            time.sleep(0.05)
        first.signal(signal.SIGKILL)
        first.wait()
        proxy.cut()
    finally:
        proxy.close()
    second = run("receiver", *RECORD, *options, env=env)
    wait_until(lambda: accepted <= set(handled_ids(handled)) and queue_depth(broker.url, queue) == 0, 60,
               "every message handled and acked", lambda: second.output[-3000:])
    return Counter(handled_ids(handled))


def test_receiver_killed_before_its_batched_ack_has_at_most_the_message_in_hand_handled_twice(
        run, broker, queue, tmp_path):
    """With --dedupe-store, a receiver SIGKILLed while its acks are unsent: the next one handles at most one again."""
    counts = killed_while_its_acks_are_held(run, broker, queue, tmp_path, "--dedupe-store")
    twice = [message_id for message_id, n in counts.items() if n > 1]
    assert len(twice) <= 1 and max(counts.values()) <= 2, f"handled more than once: {twice}"


def test_without_the_store_the_next_receiver_handles_the_unacked_batch_again(run, broker, queue, tmp_path):
    """Without --dedupe-store, the same crash has the next receiver handle every unacked message again."""
    counts = killed_while_its_acks_are_held(run, broker, queue, tmp_path)
    assert sum(1 for n in counts.values() if n > 1) > 1


def test_a_redelivery_another_replica_stored_is_recognised(run, broker, queue, tmp_path):
    """A message another replica handled and stored but never acked comes to this one: acked, not handled."""
    handled = tmp_path / "handled.txt"
    sender = run("sender", "--count", "1", "--rate", "0")
    assert sender.wait(60) == 0, sender.output
    [message_id] = sender.ids(SENT)
    other = pika.BlockingConnection(pika.URLParameters(broker.url))  # the other replica
    try:
        method, properties, body = other.channel().basic_get(queue)
        assert method is not None
        receiver = run("receiver", *RECORD, "--dedupe-store", env={"TEST_HANDLED_FILE": str(handled)})
        receiver.wait_for_line("consuming from queue")
        store = DedupeStore(RecentIds(DEDUPE_WINDOW), DEDUPE_WINDOW)  # the library's own, as the other replica's
        store.attach(other, queue, StopFlag())
        store.record(Delivery(body, properties, False, Message.parse(body), None))
    finally:
        other.close()  # dies before its ack: the message goes to the receiver
    receiver.wait_for_line(f"duplicate seq=1 id={message_id} already handled")
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "the copy acked")
    assert handled_ids(handled) == []


def test_stop_while_the_store_is_unreachable_loses_nothing(run, broker, queue, tmp_path):
    """SIGTERM while the store's confirm cannot come: the receiver says why and exits; none lost, one at most twice."""
    handled = tmp_path / "handled.txt"
    # 5 ms of work a message: the hold comes with most of the backlog still in hand, whatever the machine's load
    # (ci15: the first receiver had handled and acked nearly all 300 before it, and the control saw 1 twice)
    env = {"TEST_HANDLED_FILE": str(handled), "TEST_HANDLE_SECONDS": "0.005"}
    sender = run("sender", "--count", "100", "--rate", "0")
    assert sender.wait(60) == 0, sender.output
    accepted = set(sender.ids(SENT))
    proxy = TcpProxy(broker.amqp_port)
    try:
        url = broker.url.replace(f":{broker.amqp_port}/", f":{proxy.port}/") + "?heartbeat=2"
        first = run("receiver", *RECORD, "--dedupe-store", url=url, env=env)
        wait_alive_until(first, lambda: len(handled_ids(handled)) >= 20, 60, "20 messages handled")
        proxy.hold()  # the store's confirm (and the acks) never come: the receiver waits in hand
        first.signal(signal.SIGTERM)
        assert first.wait(30) in (0, 9), first.output  # the broker drops the silent link within heartbeats
        assert "could not record id=" in first.output or "connection to the broker lost" in first.output
        proxy.cut()
    finally:
        proxy.close()
    second = run("receiver", *RECORD, "--dedupe-store", env=env)
    wait_until(lambda: accepted <= set(handled_ids(handled)) and queue_depth(broker.url, queue) == 0, 60,
               "every message handled and acked", lambda: second.output[-3000:])
    counts = Counter(handled_ids(handled))
    assert sum(1 for n in counts.values() if n > 1) <= 1, counts.most_common(3)


def test_library_consumer_option_records_each_handled_id(broker, queue):
    """Consumer(..., dedupe_store=True) records every handled id in <queue>.handled, where the next one reads it."""
    from rabbitipc import Consumer, MessageQueue, Subscription

    mq = MessageQueue(queue, broker.url)
    try:
        ids = [mq.publish(f"job {n}") for n in range(3)]
    finally:
        mq.close()
    handled = []
    consumer = Consumer(broker.url, Subscription("work", queue), handled.append, dedupe_store=True, count=3)
    assert consumer.run() == 3
    assert [delivery.id for delivery in handled] == ids
    store = read_back(broker.url, queue)
    assert store.read == 3 and all(message_id in store.recent for message_id in ids)


def test_a_store_without_a_window_or_a_named_queue_is_a_usage_error(run):
    """--dedupe-store with --dedupe-window 0, on an exclusive queue, or on a queue too long for <queue>.handled
    (248-250 bytes): exit 2 and one line saying why."""
    no_window = run("receiver", "--dedupe-store", "--dedupe-window", "0")
    exclusive = run("receiver", "--dedupe-store", "--pattern", "broadcast", own_queue=False)
    too_long = run("receiver", "--dedupe-store", "--queue", "q" * 248, own_queue=False)
    for program, why in ((no_window, "needs a --dedupe-window above 0"), (exclusive, "needs a named --queue"),
                         (too_long, "needs a --queue of at most 247 bytes")):
        assert program.wait() == 2, program.output
        assert why in program.output and "Traceback" not in program.output, program.output


def test_stage_records_an_input_once_its_forward_is_confirmed(run, broker, queue):
    """rabbitipc-stage --dedupe-store: each input's id reaches <queue>.handled (after its result was forwarded)."""
    stage = run("stage", "--forward-to", f"{queue}-out", "--handler", "slow_handler:upper", "--dedupe-store",
                "--count", "3")
    stage.wait_for_line("consuming from queue")
    assert f"(window {DEDUPE_WINDOW})" in stage.output, stage.output  # the window's size, not the ids read
    sender = run("sender", "--count", "3", "--rate", "0")
    assert sender.wait() == 0, sender.output
    assert stage.wait() == 0, stage.output
    assert queue_depth(broker.url, f"{queue}-out") == 3
    store = read_back(broker.url, queue)
    assert all(message_id in store.recent for message_id in sender.ids(SENT))


def test_catch_up_returns_once_the_ids_stored_before_it_are_read(broker, queue):
    """A redelivery's catch_up: an id another replica stored just before is known when it returns, not by luck."""
    from rabbitipc.message import Stamper

    mine, theirs = (pika.BlockingConnection(pika.URLParameters(broker.url)) for _ in range(2))
    try:
        store = DedupeStore(RecentIds(DEDUPE_WINDOW), DEDUPE_WINDOW)
        store.attach(mine, queue, StopFlag())
        other = DedupeStore(RecentIds(DEDUPE_WINDOW), DEDUPE_WINDOW)
        other.attach(theirs, queue, StopFlag())
        message = Stamper()("handled over there")
        other.record(Delivery(message.body(), message.properties(), False, message, None))
        # `mine` is not turned between that record and the catch-up: only the catch-up can bring it in.
        caught_up = []
        worker = threading.Thread(target=lambda: caught_up.append(store.catch_up(timeout=30)))
        worker.start()
        while worker.is_alive():
            mine.process_data_events(time_limit=0.05)
        assert caught_up == [True] and message.id in store.recent
    finally:
        mine.close()
        theirs.close()


def stamped(text: str) -> Delivery:
    """A delivery of one of our messages, as a handler got it."""
    from rabbitipc.message import Stamper

    message = Stamper()(text)
    return Delivery(message.body(), message.properties(), False, message, None)


def caught_up(store: DedupeStore, connection, timeout: float) -> tuple[bool, float]:
    """store.catch_up on a worker thread while this one turns the connection: (its result, seconds taken)."""
    result, started = [], time.monotonic()
    worker = threading.Thread(target=lambda: result.append(store.catch_up(timeout=timeout)))
    worker.start()
    while worker.is_alive():
        connection.process_data_events(time_limit=0.05)
    return result[0], time.monotonic() - started


def test_a_deleted_store_is_read_again_without_a_stall(broker, queue):
    """<queue>.handled deleted while a receiver reads it: its next catch_up declares and reads it again at once
    (no wait for a marker that cannot come back), the ids it had read stay known, new ones are read."""
    mine, theirs = (pika.BlockingConnection(pika.URLParameters(broker.url)) for _ in range(2))
    try:
        store = DedupeStore(RecentIds(DEDUPE_WINDOW), DEDUPE_WINDOW)
        store.attach(mine, queue, StopFlag())
        before = stamped("stored before the delete")
        store.record(before)
        assert caught_up(store, mine, timeout=30)[0]  # read back: `before` is among the ids read
        theirs.channel().queue_delete(store.name)
        result, took = caught_up(store, mine, timeout=30)
        assert result and took < 15, (result, took)
        assert before.message.id in store.recent
        other = DedupeStore(RecentIds(DEDUPE_WINDOW), DEDUPE_WINDOW)
        other.attach(theirs, queue, StopFlag())
        after = stamped("stored by another replica after the delete")
        other.record(after)
        assert caught_up(store, mine, timeout=30)[0] and after.message.id in store.recent
    finally:
        mine.close()
        theirs.close()


def test_a_store_name_taken_by_a_queue_that_is_not_a_stream_exits_5(run, broker, queue):
    """<queue>.handled exists as a classic queue: the receiver exits 5 with one line, no reconnect loop."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        connection.channel().queue_declare(f"{queue}.handled", durable=True)
    finally:
        connection.close()
    receiver = run("receiver", "--dedupe-store")
    assert receiver.wait(60) == 5, receiver.output
    assert "not a stream" in receiver.output and "Traceback" not in receiver.output, receiver.output
    assert "reconnecting" not in receiver.output, receiver.output


def test_a_long_store_is_read_while_records_keep_coming(broker, queue, monkeypatch):
    """Reading <queue>.handled back may take longer than CATCH_UP_TIMEOUT: only a read that stops moving for
    that long gives up (a big --dedupe-window must start)."""
    from rabbitipc.consume import dedupe_store

    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        DedupeStore(RecentIds(10), 10).attach(connection, queue, StopFlag())  # declares the stream
        channel = connection.channel()
        channel.confirm_delivery()
        for number in range(300):
            channel.basic_publish("", f"{queue}.handled", b"", pika.BasicProperties(message_id=f"id-{number}"))
    finally:
        connection.close()
    # A slow link: the reader's acks (so the next records) pass 50 ms in every 350, and it takes 5 ms a
    # record, 8 at a time: reading it all takes a few times the timeout while records keep coming.
    slow = DedupeStore._on_record

    def slowly(self, *args) -> None:
        time.sleep(0.005)
        slow(self, *args)

    monkeypatch.setattr(DedupeStore, "_on_record", slowly)
    monkeypatch.setattr(dedupe_store, "READ_PREFETCH", 8)
    monkeypatch.setattr(dedupe_store, "CATCH_UP_TIMEOUT", 3.0)
    proxy, done = TcpProxy(broker.amqp_port), threading.Event()

    def throttle() -> None:
        while not done.is_set():
            proxy.hold()
            done.wait(0.3)
            proxy.release()
            done.wait(0.05)

    throttler = threading.Thread(target=throttle)
    throttler.start()
    try:
        started = time.monotonic()
        store = read_back(broker.url.replace(f":{broker.amqp_port}/", f":{proxy.port}/"), queue)
        took = time.monotonic() - started
    finally:
        done.set()
        throttler.join()
        proxy.close()
    assert store.read == 300 and took > 3.0, (store.read, took)
