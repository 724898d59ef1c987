"""Seed 002's scripts (producer, consumer1-3, workflow) run on rabbitipc.rabbit and print what the seed shows.

The scripts are the seed's, written out here with Python 3's print(...) and the import line
`from rabbitipc.rabbit import ...`; nothing else is changed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pika
import pytest

from rabbitipc.rabbit import MessageQueue
from support import ROOT, Program, get_all, program_env, publish_raw, queue_depth, wait_until

PRODUCER = """\
import sys
from rabbitipc.rabbit import MessageQueue

mq = MessageQueue('my_queue')

for arg in sys.argv[1:]:
    mq.publish(arg)
"""

CONSUMER = """\
from rabbitipc.rabbit import MessageQueue

mq = MessageQueue('my_queue')

{handler}
mq.register(message_handler)
print("Starting consumer.")
mq.start()
print("Consumer has terminated.")
"""

HANDLERS = {
    "consumer1.py": """\
def message_handler(channel, method, properties, message):
    print(message)
""",
    "consumer2.py": """\
def message_handler(channel, method, properties, message):
    print(message)
    mq.ack(method)
""",
    "consumer3.py": """\
def message_handler(channel, method, properties, message):
    if message == 'HALT':
        print("Halting the consumer.")
        mq.stop()
    else:
        print(message)
    mq.ack(method)
""",
}

WORKFLOW = """\
import threading
from rabbitipc.rabbit import Consumer, Worker

class ToUpper(Worker):
    def __init__(self, name='ToUpper'):
        super(ToUpper, self).__init__(name, 'my_queue', 'upper')

    def work(self, message):
        self.write(message.upper())

class Printer(Consumer):
    def __init__(self, name='Printer'):
        super(Printer, self).__init__(name, 'upper')

    def work(self, message):
        print(message)

def launch(cls):
    thread = threading.Thread(target=cls().start)
    thread.start()
    return thread

for thread in [launch(Printer), launch(ToUpper)]:
    thread.join()
"""

SEED_QUEUES = ("my_queue", "my_queue.dead", "upper", "upper.dead")


@pytest.fixture
def seed(broker, tmp_path):
    """The seed's scripts in a directory, the seed's queues empty; yields a runner of script + args."""
    (tmp_path / "producer.py").write_text(PRODUCER)
    for name, handler in HANDLERS.items():
        (tmp_path / name).write_text(CONSUMER.format(handler=handler))
    (tmp_path / "workflow.py").write_text(WORKFLOW)
    delete_queues(broker.url)
    env = program_env(broker.url)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env["PYTHONPATH"]])
    started: list[Program] = []

    class Seed:
        dir = tmp_path

        @staticmethod
        def run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, script, *args], cwd=tmp_path, env=env, text=True,
                                  capture_output=True, timeout=timeout)

        @staticmethod
        def start(script: str, *args: str) -> Program:
            program = Program([sys.executable, str(tmp_path / script), *args], env)
            started.append(program)
            return program

    yield Seed
    for program in started:
        program.stop()
    delete_queues(broker.url)


def delete_queues(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in SEED_QUEUES:
            channel.queue_delete(name)
    finally:
        connection.close()


def test_producer_then_consumer3_prints_what_the_seed_shows(seed):
    """`producer.py Hello world HALT` then `consumer3.py`: the seed's five lines, exit 0, queue empty."""
    produced = seed.run("producer.py", "Hello", "world", "HALT")
    assert (produced.returncode, produced.stdout, produced.stderr) == (0, "", "")
    consumed = seed.run("consumer3.py")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == "Starting consumer.\nHello\nworld\nHalting the consumer.\nConsumer has terminated.\n"
    assert consumed.stderr == ""


def consume_hello_world(seed, script: str, stop: signal.Signals) -> Program:
    """Run the seed's consumer `script` while producer.py sends Hello and world, then stop it with `stop`
    once it printed them; it exits 0."""
    consumer = seed.start(script)
    consumer.wait_for_line("Starting consumer.")
    assert seed.run("producer.py", "Hello", "world").returncode == 0
    consumer.wait_for_line("world")
    consumer.signal(stop)
    assert consumer.wait() == 0
    return consumer


def test_consumer2_acks_so_nothing_comes_again(broker, seed):
    """consumer2 prints what arrives; after Ctrl-C it ends cleanly and the handled messages are gone."""
    consumer = consume_hello_world(seed, "consumer2.py", signal.SIGINT)
    assert consumer.lines == ["Starting consumer.", "Hello", "world", "Consumer has terminated."]
    assert queue_depth(broker.url, "my_queue") == 0


def test_consumer1_without_ack_still_loses_nothing_and_repeats_nothing(broker, seed):
    """Our guarantee, where the seed's consumer1 shows a redelivery: acked once the callback returned."""
    consumer = consume_hello_world(seed, "consumer1.py", signal.SIGTERM)
    assert consumer.lines[-1] == "Consumer has terminated."
    assert queue_depth(broker.url, "my_queue") == 0


def test_workflow_prints_what_the_seed_shows(seed):
    """`producer.py hello world HALT` then `workflow.py`: ToUpper -> upper -> Printer, HALT passed on, both halt."""
    assert seed.run("producer.py", "hello", "world", "HALT").returncode == 0
    result = seed.run("workflow.py")
    assert result.returncode == 0, result.stderr
    seed_output = ["Printer starting", "ToUpper starting", "HELLO", "WORLD", "Halting worker ToUpper",
                   "ToUpper halted.", "Halting consumer Printer", "Printer halted."]
    # Two threads print: their lines interleave by timing, and Python's print writes a line and its
    # newline in two writes, so another thread's line may come between them. Read lines as tokens.
    known = re.compile("|".join(re.escape(line) for line in sorted(seed_output, key=len, reverse=True)))
    lines = known.findall(result.stdout)
    assert known.sub("", result.stdout) == "\n" * len(seed_output), result.stdout
    assert sorted(lines) == sorted(seed_output), result.stdout
    # What one thread causes in the other comes in order.
    for before, after in [("HELLO", "WORLD"), ("WORLD", "Halting consumer Printer"),
                          ("Halting worker ToUpper", "Halting consumer Printer"),
                          ("Halting worker ToUpper", "ToUpper halted."),
                          ("Halting consumer Printer", "Printer halted."),
                          ("Printer starting", "HELLO"), ("ToUpper starting", "HELLO")]:
        assert lines.index(before) < lines.index(after), result.stdout
    assert result.stderr == ""


def test_halt_from_another_client_stops_the_consumer(broker, seed):
    """A plain-text HALT (the seed's `MessageQueue('upper').publish('HALT')`, or any client) stops consumer3."""
    assert seed.run("producer.py", "Hello").returncode == 0
    consumer = seed.start("consumer3.py")
    consumer.wait_for_line("Hello")
    publish_raw(broker.url, "my_queue", b"HALT")
    assert consumer.wait() == 0
    assert consumer.lines == ["Starting consumer.", "Hello", "Halting the consumer.", "Consumer has terminated."]


def test_stop_from_another_thread_ends_start(broker, queue):
    """stop() from another thread makes start() return; what was handled is acked."""
    mq = MessageQueue(queue, broker.url)
    got = []
    mq.register(lambda channel, method, properties, message: got.append(message))
    mq.publish("one")
    thread = threading.Thread(target=mq.start)
    thread.start()
    wait_until(lambda: got == ["one"], 30, "the message handled")
    mq.stop()
    thread.join(10)
    assert not thread.is_alive()
    mq.close()
    assert queue_depth(broker.url, queue) == 0


def test_callback_that_raises_is_retried_then_dead_letters_its_message(broker, queue):
    """A callback that raises gets its message again after a backoff, 3 attempts in all (the library's
    default), then it goes to <queue>.dead with the reason; the next one is handled meanwhile."""
    mq = MessageQueue(queue, broker.url)
    seen = []

    def handler(channel, method, properties, message):
        seen.append(message)
        if message == "bad":
            raise ValueError("cannot")
        if message == "HALT":
            mq.stop()

    mq.register(handler)
    for text in ("bad", "good"):
        mq.publish(text)
    thread = threading.Thread(target=mq.start)
    thread.start()
    wait_until(lambda: "good" in seen, 30, "the good message handled (<queue>.dead declared before)")
    dead = wait_until(lambda: get_all(broker.url, queue + ".dead"), 30, "the dead letter")
    mq.publish("HALT")
    thread.join(30)
    mq.close()
    assert seen == ["bad", "good", "bad", "bad", "HALT"]
    assert [props.headers["x-rabbitipc-reason"] for props, _ in dead] == ["handler failed: ValueError: cannot"]


def test_consumer_survives_a_broker_restart(broker, seed):
    """consumer3 keeps running through a broker restart and handles what is published after it."""
    consumer = seed.start("consumer3.py")
    consumer.wait_for_line("Starting consumer.")
    assert seed.run("producer.py", "before").returncode == 0
    consumer.wait_for_line("before")
    broker.restart()
    produced = seed.run("producer.py", "after", "HALT")
    assert produced.returncode == 0, produced.stderr
    assert consumer.wait(90) == 0, consumer.output
    printed = ["Starting consumer.", "before", "after", "Halting the consumer.", "Consumer has terminated."]
    assert [line for line in consumer.lines if line in printed] == printed  # the rest: warnings on stderr
    assert any("reconnecting" in line for line in consumer.lines)


def test_start_without_a_callback_refuses_instead_of_acking_everything(broker, queue):
    """start() before register() raises at once: nothing is consumed (and acked) unhandled."""
    mq = MessageQueue(queue, broker.url)
    mq.publish("kept")
    with pytest.raises(RuntimeError, match=r"register\(callback\) before start\(\)"):
        mq.start()
    mq.close()
    assert queue_depth(broker.url, queue) == 1
