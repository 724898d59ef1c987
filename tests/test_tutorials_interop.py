"""Our sender and receiver work with what users of the official RabbitMQ tutorials (python, 1-6) run.

The tutorial side is tests/tutorial_clients.py: our own pika code that declares queues and
exchanges exactly as the tutorials do, in their current version (durable quorum `hello`,
`task_queue`, `rpc_queue`) and their previous one (plain `hello` and `rpc_queue`, durable
classic `task_queue`); exchanges `logs`, `direct_logs`, `topic_logs` are not durable in both.
Every pattern runs in both start orders (issue 12).
"""

from __future__ import annotations

import pika
import pytest
import tutorial_clients as tutorial

from rabbitipc.rpc import RpcClient
from support import wait_until

VERSIONS = ("current", "previous")
#: The flag with which ours creates an exchange the tutorials can declare (not durable): issue 12
#: allows "at most one documented flag when ours created an exchange first".
NON_DURABLE_EXCHANGE = ("--exchange-durable", "false")


def queue_flags(version: str, queue: str) -> tuple[str, ...]:
    """The one flag ours needs, when it starts first, to create the queue as this tutorial version declares it.

    None for the current tutorials (durable quorum queues, our default); the previous ones declared
    hello and rpc_queue not durable, and task_queue as a durable classic queue.
    """
    declared = tutorial.DECLARATIONS[version][queue]
    if not declared.get("durable", False):
        return ("--queue-durable", "false")
    if declared.get("arguments", {}).get("x-queue-type") != "quorum":
        return ("--queue-type", "classic")
    return ()


#: pattern, exchange, our receiver's binding flags, our sender's routing-key flags, tutorial keys.
EXCHANGE_CASES = [
    pytest.param("broadcast", "logs", (), (), ("",), id="3-fanout-logs"),
    pytest.param("direct", "direct_logs", ("--bind", "info"), ("--routing-key", "info"), ("info",),
                 id="4-direct-direct_logs"),
    pytest.param("topic", "topic_logs", ("--bind", "kern.*"), ("--routing-key", "kern.critical"), ("kern.*",),
                 id="5-topic-topic_logs"),
]
TUTORIAL_KEY = {"logs": "", "direct_logs": "info", "topic_logs": "kern.critical"}


def consuming(program, queue: str = "") -> None:
    """Wait until our receiver consumes (or fails: then say how, at once)."""
    line = f"consuming from queue {queue}"
    wait_until(lambda: line in program.output or program.proc.poll() is not None, 30,
               f"{line!r} in the receiver's output", lambda: program.output)
    assert line in program.output, f"exit {program.proc.poll()}: {program.output}"


def hears_the_tutorial(url, receiver, exchange: str) -> None:
    """Once our receiver (--count 1) consumes, the message emit_log*.py sends to the exchange is its one."""
    consuming(receiver)
    tutorial.emit(url, exchange, TUTORIAL_KEY[exchange], ["info: from the tutorial"])
    assert receiver.wait(60) == 0, receiver.output
    assert "body=info: from the tutorial" in receiver.output


@pytest.fixture
def url(broker):
    """The broker, without the tutorials' queues and exchanges left by another test."""
    tutorial.clean(broker.url)
    yield broker.url
    tutorial.clean(broker.url)


#: (version, queue) pairs of tutorials 1 and 2.
WORK_CASES = [pytest.param(version, queue, id=f"{version}-{queue}") for version in VERSIONS
              for queue in ("hello", "task_queue")]


# -- tutorials 1 and 2: hello, task_queue ------------------------------------------------------
@pytest.mark.parametrize(("version", "queue_name"), WORK_CASES)
def test_work_queue_tutorial_first(url, run, version, queue_name):
    """send.py/new_task.py declared and filled the queue; our receiver takes the messages from it."""
    tutorial.send(url, queue_name, version, ["Hello World!", "Second task..."], persistent=queue_name == "task_queue")
    receiver = run("receiver", "--queue", queue_name, "--count", "2", own_queue=False)
    assert receiver.wait(60) == 0, receiver.output
    assert "received text id=- bytes=12 body=Hello World!" in receiver.output
    assert "received text id=- bytes=14 body=Second task..." in receiver.output


@pytest.mark.parametrize(("version", "queue_name"), WORK_CASES)
def test_work_queue_ours_first(url, run, version, queue_name):
    """Our sender created and filled the queue; the tutorial's receive.py/worker.py declares it and gets them."""
    sender = run("sender", "--queue", queue_name, *queue_flags(version, queue_name), "--count", "2", "--rate", "0",
                 "--message", "from ours", own_queue=False)
    assert sender.wait(60) == 0, sender.output
    bodies = tutorial.work(url, queue_name, version, 2, ack=queue_name == "task_queue")
    assert len(bodies) == 2
    assert all(b'"payload":"from ours"' in body for body in bodies)


# -- tutorials 3, 4, 5: logs (fanout), direct_logs, topic_logs ------------------------------------
@pytest.mark.parametrize(("pattern", "exchange", "bind", "key", "tutorial_keys"), EXCHANGE_CASES)
def test_exchange_tutorial_receiver_first(url, run, pattern, exchange, bind, key, tutorial_keys):
    """receive_logs*.py runs (exchange and its queue declared); our sender's message reaches it."""
    receiver = tutorial.LogReceiver(url, exchange, tutorial_keys)
    try:
        sender = run("sender", "--pattern", pattern, "--exchange", exchange, *key, "--count", "1", "--rate", "0",
                     "--message", "from ours", own_queue=False)
        assert sender.wait(60) == 0, sender.output
        wait_until(lambda: receiver.bodies, 10, "the message at the tutorial's receiver")
    finally:
        receiver.close()
    assert len(receiver.bodies) == 1 and b'"payload":"from ours"' in receiver.bodies[0]


@pytest.mark.parametrize(("pattern", "exchange", "bind", "key", "tutorial_keys"), EXCHANGE_CASES)
def test_exchange_tutorial_emitter_first(url, run, pattern, exchange, bind, key, tutorial_keys):
    """emit_log*.py declared the exchange; our receiver joins it and logs what the tutorial emits next."""
    tutorial.emit(url, exchange, TUTORIAL_KEY[exchange], ["before anyone listens"])
    receiver = run("receiver", "--pattern", pattern, "--exchange", exchange, *bind, "--count", "1", own_queue=False)
    hears_the_tutorial(url, receiver, exchange)


@pytest.mark.parametrize(("pattern", "exchange", "bind", "key", "tutorial_keys"), EXCHANGE_CASES)
def test_exchange_ours_first(url, run, pattern, exchange, bind, key, tutorial_keys):
    """Our receiver created the exchange (with one documented flag); the tutorial's emitter declares it and is heard."""
    receiver = run("receiver", "--pattern", pattern, "--exchange", exchange, *bind, *NON_DURABLE_EXCHANGE,
                   "--count", "1", own_queue=False)
    hears_the_tutorial(url, receiver, exchange)


@pytest.mark.parametrize(("pattern", "exchange", "bind", "key", "tutorial_keys"), EXCHANGE_CASES)
def test_exchange_our_sender_first(url, run, pattern, exchange, bind, key, tutorial_keys):
    """Our sender created the exchange (one documented flag); receive_logs*.py declares it and gets the next message."""
    args = ("--pattern", pattern, "--exchange", exchange, *key, *NON_DURABLE_EXCHANGE, "--count", "1", "--rate", "0",
            "--message", "from ours")
    first = run("sender", *args, own_queue=False)
    assert first.wait(60) == 0, first.output  # nobody bound yet: reported unrouted
    receiver = tutorial.LogReceiver(url, exchange, tutorial_keys)
    try:
        second = run("sender", *args, own_queue=False)
        assert second.wait(60) == 0, second.output
        wait_until(lambda: receiver.bodies, 10, "the message at the tutorial's receiver")
    finally:
        receiver.close()
    assert len(receiver.bodies) == 1 and b'"payload":"from ours"' in receiver.bodies[0]


# -- tutorial 6: rpc_queue ----------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_rpc_tutorial_server_first_our_client(url, version):
    """rpc_server.py runs (its rpc_queue declared its way); our client's calls get its plain-text answers."""
    server = tutorial.RpcServer(url, version)
    try:
        with RpcClient(url) as client:
            assert client.call("30", timeout=20) == "832040"
    finally:
        server.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_rpc_tutorial_queue_first_our_server(url, run, version):
    """rpc_queue exists as the tutorial's server declared it; our receiver answers the tutorial's rpc_client.py."""
    connection = tutorial.connect(url)
    tutorial.declare_queue(connection.channel(), "rpc_queue", version)
    connection.close()
    server = run("receiver", "--pattern", "rpc", "--queue", "rpc_queue", "--handler", "tutorial_handlers:fib",
                 own_queue=False)
    consuming(server, "rpc_queue")
    assert tutorial.rpc_call(url, 30, timeout=20) == b"832040"


@pytest.mark.parametrize("version", VERSIONS)
def test_rpc_ours_first(url, run, version):
    """Our receiver created rpc_queue; the tutorial's server declares it without error, its client gets our answer."""
    server = run("receiver", "--pattern", "rpc", "--queue", "rpc_queue", *queue_flags(version, "rpc_queue"),
                 "--handler", "tutorial_handlers:fib", own_queue=False)
    consuming(server, "rpc_queue")
    connection = tutorial.connect(url)
    tutorial.declare_queue(connection.channel(), "rpc_queue", version)
    connection.close()
    assert tutorial.rpc_call(url, 30, timeout=20) == b"832040"


# -- a start that fails leaves nothing behind, and says which flag fixes it -----------------------
def test_retry_with_other_flags_after_a_failed_start(url, run):
    """After a start with default flags, the obvious retry with --queue-type quorum gets the tutorial's messages."""
    tutorial.send(url, "hello", "current", ["Hello World!", "Hello again!"])
    first = run("receiver", "--queue", "hello", "--count", "1", own_queue=False)
    first.wait(60)
    retry = run("receiver", "--queue", "hello", "--queue-type", "quorum", "--count", "1", own_queue=False)
    assert retry.wait(60) == 0, retry.output
    assert "received text" in retry.output


def test_queue_held_exclusively_fails_at_once_and_leaves_nothing(url, run, queue):
    """A queue another connection holds exclusively: exit 5 with one line naming a flag; no <queue>.dead left."""
    holder = tutorial.connect(url)
    holder.channel().queue_declare(queue, exclusive=True)
    try:
        receiver = run("receiver", "--count", "1")
        assert receiver.wait(15) == 5, receiver.output
    finally:
        holder.close()
    assert "--queue" in receiver.lines[-1]
    checker = tutorial.connect(url)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            checker.channel().queue_declare(queue + ".dead", passive=True)
    finally:
        if checker.is_open:
            checker.close()
