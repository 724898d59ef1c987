"""The RPC client (rabbitipc.rpc): direct reply-to, correlation ids, timeouts, concurrent calls."""

from __future__ import annotations

import signal
import threading
import time

import pika
import pytest
import tutorial_clients as tutorial

from rabbitipc.rpc import RemoteError, RpcClient, RpcError, RpcTimeout, call
from support import admin_channel_call, get_all, publish_raw, queue_counts, queue_depth, wait_until


@pytest.fixture
def server(broker, queue):
    """A tutorial-style responder (plain-text numbers in, fib(n) as text out) on this test's queue."""
    responder = tutorial.RpcServer(broker.url, "current", queue)
    yield responder
    responder.close()


def test_call_returns_the_tutorial_servers_reply(broker, queue, server):
    """A call gets the answer of a tutorial-style server, whose bodies are plain-text numbers."""
    with RpcClient(broker.url, queue) as client:
        assert client.call("30", timeout=10) == "832040"
        assert client.call(10, timeout=10) == "55"  # JSON of an int is the same text
    assert server.requests == [b"30", b"10"]


def test_module_level_call(broker, queue, server):
    """call() opens, calls and closes in one go."""
    assert call("7", url=broker.url, queue=queue, timeout=10) == "13"


def test_concurrent_calls_on_one_client_each_get_their_own_reply(broker, queue, server):
    """Sixteen threads calling at once on one connection each get the reply to their own request."""
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    with RpcClient(broker.url, queue) as client:

        def ask(n: int) -> None:
            try:
                results[n] = client.call(str(n), timeout=30)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert results == {n: str(tutorial.fib(n)) for n in range(16)}


def test_timeout_raises_a_clear_error_and_the_request_expires(broker, queue):
    """Nobody answering: RpcTimeout naming the queue after the timeout; the request does not wait for a late server."""
    connection = tutorial.connect(broker.url)
    connection.channel().queue_declare(queue, **tutorial.QUORUM)
    connection.close()
    with RpcClient(broker.url, queue) as client:
        started = time.monotonic()
        with pytest.raises(RpcTimeout, match=f"no reply from queue '{queue}' within 1s"):
            client.call("5", timeout=1)
        assert 0.9 < time.monotonic() - started < 5
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 15, "the expired request to leave the queue")


def test_call_to_a_missing_queue_fails_at_once(broker, queue):
    """No queue of that name: RpcError at once (the request came back unroutable), not a wait for the timeout."""
    with RpcClient(broker.url, queue) as client:
        started = time.monotonic()
        with pytest.raises(RpcError, match="no queue .* is a responder running"):
            client.call("5", timeout=30)
        assert time.monotonic() - started < 10


def test_a_request_the_broker_refuses_fails_at_once(broker, queue):
    """A queue that refuses publishes when full (here: at once): RpcError naming the refusal, not a wait for the
    timeout, and the client's next call still works."""
    admin_channel_call(broker.url, lambda channel: channel.queue_declare(
        queue, durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}))
    with RpcClient(broker.url, queue) as client:
        for _ in range(2):
            with pytest.raises(RpcError, match=f"the broker refused the request to queue '{queue}'"):
                client.call("5", timeout=60)


def test_client_goes_on_after_a_timeout(broker, queue):
    """After a timed-out call the same client's next call, once a server runs, gets its own reply."""
    connection = tutorial.connect(broker.url)
    connection.channel().queue_declare(queue, **tutorial.QUORUM)
    connection.close()
    with RpcClient(broker.url, queue) as client:
        with pytest.raises(RpcTimeout):
            client.call("1", timeout=0.5)
        server = tutorial.RpcServer(broker.url, "current", queue)
        try:
            assert client.call("12", timeout=10) == "144"
        finally:
            server.close()
    assert server.requests == [b"12"]  # the expired request was never worked on


def test_closed_client_refuses_calls(broker, queue, server):
    """After close(), call() raises RpcError instead of hanging."""
    client = RpcClient(broker.url, queue)
    client.close()
    with pytest.raises(RpcError, match="closed"):
        client.call("1", timeout=5)


def test_client_reconnects_after_a_broker_restart(broker, queue):
    """The same client keeps working after the broker restarted (the server reconnects on its own here)."""
    with RpcClient(broker.url, queue) as client:
        server = tutorial.RpcServer(broker.url, "current", queue)
        assert client.call("3", timeout=10) == "2"
        server.close()
        broker.restart()
        server = tutorial.RpcServer(broker.url, "current", queue)
        try:
            assert client.call("20", timeout=60) == "6765"
        finally:
            server.close()


def test_a_lone_caller_turns_the_connection_itself(monkeypatch, broker, queue, server):
    """One caller at a time: after the first call, the caller publishes and reads its reply on its own thread, no
    hand-over to the client's I/O thread and back (two thread switches a call)."""
    readers: list[threading.Thread] = []
    original = RpcClient._on_reply

    def recording(self, *args):
        readers.append(threading.current_thread())
        original(self, *args)

    monkeypatch.setattr(RpcClient, "_on_reply", recording)
    with RpcClient(broker.url, queue) as client:
        assert [client.call(str(n), timeout=20) for n in range(1, 21)][-1] == "6765"
    assert threading.current_thread() in readers[1:]


def test_reply_marked_as_error_raises_remote_error(broker, queue):
    """A reply with the x-rabbitipc-error header raises RemoteError with the responder's reason."""
    server = tutorial.RpcServer(broker.url, "current", queue, headers={"x-rabbitipc-error": "ValueError: no"})
    try:
        with RpcClient(broker.url, queue) as client, pytest.raises(RemoteError, match="failed: ValueError: no"):
            client.call("4", timeout=10)
    finally:
        server.close()


# -- our responder: receiver --pattern rpc --------------------------------------------------------
def responder(run, *args, url=None):
    program = run("receiver", "--pattern", "rpc", *args, url=url)
    program.wait_for_line("consuming from queue")
    return program


def test_our_responder_answers_our_client_with_the_handlers_return_value(run, broker, queue):
    """receiver --pattern rpc replies with the handler's value to reply_to, under the request's correlation_id."""
    responder(run, "--handler", "tutorial_handlers:fib")
    with RpcClient(broker.url, queue) as client:
        assert [client.call(str(n), timeout=20) for n in (10, 20)] == ["55", "6765"]
    assert queue_depth(broker.url, queue) == 0  # each request acked once answered


@pytest.mark.parametrize("inline", [False, True], ids=["handler-thread", "inline-handler"])
def test_the_handler_runs_on_its_own_thread_unless_inline_handler_is_given(run, broker, queue, inline):
    """By default the handler has a thread of its own (a slow one never starves heartbeats); --inline-handler runs it
    on the connection's thread (one hop less per round trip), and a failing handler is still answered and parked."""
    responder(run, "--handler", "tutorial_handlers:thread_name", *(["--inline-handler"] if inline else []))
    with RpcClient(broker.url, queue) as client:
        assert client.call("1", timeout=20) == ("MainThread" if inline else "rabbitipc-handler")
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "the request acked")
    if inline:
        failing = f"{queue}-failing"
        server = run("receiver", "--pattern", "rpc", "--handler", "tutorial_handlers:refuse", "--inline-handler",
                     "--max-attempts", "1", "--queue", failing, own_queue=False)
        server.wait_for_line("consuming from queue")
        with RpcClient(broker.url, failing) as client, pytest.raises(RemoteError, match="ValueError: cannot answer"):
            client.call("7", timeout=20)
        server.wait_for_line("dead-lettered")


def test_inline_handler_with_a_dedupe_store_is_a_usage_error(run, queue):
    """The store is read back on the connection's thread: the two cannot go together; exit 2, one line."""
    program = run("receiver", "--pattern", "rpc", "--handler", "tutorial_handlers:fib", "--inline-handler",
                  "--dedupe-store")
    assert program.wait(30) == 2
    assert "--inline-handler cannot be used with --dedupe-store" in program.output
    assert "Traceback" not in program.output


def test_a_failing_handler_answers_with_the_reason_and_parks_the_request(run, broker, queue):
    """The handler raises: the caller gets RemoteError at once, the request goes to <queue>.dead."""
    server = responder(run, "--handler", "tutorial_handlers:refuse")
    with RpcClient(broker.url, queue) as client, pytest.raises(RemoteError, match="ValueError: cannot answer"):
        client.call("7", timeout=20)
    server.wait_for_line("dead-lettered")
    wait_until(lambda: queue_depth(broker.url, queue + ".dead") == 1, 10, "the request in the dead-letter queue")


def test_a_reply_the_broker_refuses_answers_with_the_reason_and_parks_the_request(run, limited_broker, queue):
    """A reply over the broker's max_message_size: the caller gets RemoteError at once, the request is parked."""
    server = responder(run, "--handler", "tutorial_handlers:oversized", url=limited_broker.url)
    with RpcClient(limited_broker.url, queue) as client, pytest.raises(RemoteError, match="max size"):
        client.call("7", timeout=20)
    wait_until(lambda: queue_depth(limited_broker.url, queue + ".dead") == 1, 20,
               "the request in the dead-letter queue", lambda: server.output[-2000:])
    assert queue_depth(limited_broker.url, queue) == 0
    assert "acked again" not in server.output


def test_a_responder_killed_mid_request_loses_nothing(run, broker, queue):
    """SIGKILL while the handler works: the request goes back to the queue and the next responder answers it."""
    first = responder(run, "--handler", "tutorial_handlers:slow_fib")
    answers: list[str] = []
    with RpcClient(broker.url, queue) as client:
        caller = threading.Thread(target=lambda: answers.append(client.call("25", timeout=60)))
        caller.start()
        wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "the request taken by the first responder")
        first.stop()  # SIGKILL, in the middle of its 3 s of work
        responder(run, "--handler", "tutorial_handlers:slow_fib")
        caller.join(60)
    assert answers == ["75025"]


def test_a_call_the_caller_waits_for_in_its_own_turn_survives_a_broker_restart(monkeypatch, run, broker, queue):
    """Quick calls first (the caller then turns the connection itself), then one the responder works on for 3 s,
    and the broker restarts while the responder holds it: the client reconnects, sends the request again, and
    the call returns the answer."""
    led: list[bool] = []
    original = RpcClient._lead

    def recording(self, call, deadline):
        led.append(original(self, call, deadline))
        return led[-1]

    monkeypatch.setattr(RpcClient, "_lead", recording)
    server = responder(run, "--handler", "tutorial_handlers:slow_above_20")
    outcome: list = []

    def slow_call(client: RpcClient) -> None:
        try:
            outcome.append(client.call("25", timeout=120))
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            outcome.append(exc)

    with RpcClient(broker.url, queue) as client:
        assert [client.call(str(n), timeout=20) for n in range(1, 6)] == ["1", "1", "2", "3", "5"]
        caller = threading.Thread(target=slow_call, args=(client,))
        caller.start()
        server.wait_for_line("working on 25")  # its 3 s of work begin
        assert led[-1], "the slow call was handed to the I/O thread, not published by its caller"
        broker.restart()
        caller.join(120)
    assert outcome == ["75025"]


def test_ctl_call_prints_the_reply(run, broker, queue):
    """`rabbitipc-ctl call --queue Q PAYLOAD` prints the responder's reply and exits 0."""
    import subprocess
    import sys

    from support import ROOT, program_env

    responder(run, "--handler", "tutorial_handlers:fib")
    result = subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", "call", "--queue", queue, "12"], cwd=ROOT,
                            env=program_env(broker.url), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "144\n"), result.stderr


def test_ctl_call_escapes_the_responders_error_text(broker, queue):
    """A responder's error text with terminal escapes: `rabbitipc-ctl call` prints them visibly (exit 1), never raw."""
    import subprocess
    import sys

    from support import ROOT, program_env

    server = tutorial.RpcServer(broker.url, "current", queue,
                                headers={"x-rabbitipc-error": "\x1b]0;PWNED\x07\x1b[2Jwiped\rforged"})
    try:
        result = subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", "call", "--queue", queue, "5"],
                                cwd=ROOT, env=program_env(broker.url), capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    assert result.returncode == 1, result.stderr
    assert "failed: \\x1b]0;PWNED\\x07\\x1b[2Jwiped\\rforged" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr + result.stdout and result.stderr.count("\n") == 1, repr(result.stderr)


def test_rpc_responder_needs_a_handler(run):
    """--pattern rpc without --handler: exit 2, one line."""
    program = run("receiver", "--pattern", "rpc")
    assert program.wait() == 2
    assert "--pattern rpc needs --handler" in program.output


def _raw_request(url: str, queue: str, reply_to: str, body: bytes = b"5") -> None:
    """A request from a client of its own choosing: reply_to names whatever it likes."""
    publish_raw(url, queue, body, reply_to=reply_to, correlation_id="c1", message_id="req-1")


def _dead_reasons(url: str, queue: str) -> list[str]:
    return [properties.headers["x-rabbitipc-reason"] for properties, _ in get_all(url, queue + ".dead")]


def test_a_request_naming_a_shared_queue_as_reply_to_is_refused_unhandled(run, broker, queue):
    """reply_to names a queue anyone may read (a work queue): nothing is published there, the handler never
    runs, and the request goes to <queue>.dead with the reason."""
    victim = queue + ".victim"
    admin_channel_call(broker.url, lambda channel: channel.queue_declare(victim, durable=True))
    server = responder(run, "--handler", "tutorial_handlers:fib")
    _raw_request(broker.url, queue, victim)
    server.wait_for_line("dead-lettered id=req-1")
    assert queue_depth(broker.url, victim) == 0
    assert "received text" not in server.output  # the handler's work is reported with this line
    (reason,) = _dead_reasons(broker.url, queue)
    assert f"reply_to '{victim}' is a queue other connections may read" in reason


def test_a_request_naming_a_missing_queue_as_reply_to_is_dead_lettered(run, broker, queue):
    """reply_to names no queue (the caller is gone, or never had one): dead-lettered with the reason, unhandled."""
    server = responder(run, "--handler", "tutorial_handlers:fib")
    _raw_request(broker.url, queue, queue + ".nobody")
    server.wait_for_line("dead-lettered id=req-1")
    (reason,) = _dead_reasons(broker.url, queue)
    assert "is no such queue" in reason


def test_a_request_naming_the_callers_exclusive_queue_is_answered(run, broker, queue):
    """reply_to is a queue exclusive to the caller's connection (the tutorial client's way): the reply lands there."""
    server = responder(run, "--handler", "tutorial_handlers:fib")
    caller = tutorial.connect(broker.url)
    try:
        channel = caller.channel()
        own = channel.queue_declare("", exclusive=True).method.queue
        _raw_request(broker.url, queue, own, b"10")
        wait_until(lambda: queue_depth_on(channel, own) == 1, 20, "the reply in the caller's queue",
                   lambda: server.output)
        method, properties, body = channel.basic_get(own, auto_ack=True)
        assert (body, properties.correlation_id) == (b"55", "c1")
    finally:
        caller.close()
    assert "dead-lettered" not in server.output


def queue_depth_on(channel, queue_name: str) -> int:
    return channel.queue_declare(queue_name, passive=True).method.message_count


def test_direct_reply_to_replies_are_not_reported_unroutable(run, broker, queue):
    """Every correct direct reply-to reply arrives without an 'unroutable' line (RabbitMQ 3.10 returns each one
    published with mandatory set, delivered or not)."""
    server = responder(run, "--handler", "tutorial_handlers:fib")
    with RpcClient(broker.url, queue) as client:
        assert [client.call(str(n), timeout=20) for n in range(20)] == [str(tutorial.fib(n)) for n in range(20)]
        # The caller stays until the responder has stopped: a caller closing right after its last answer can
        # beat the responder's probe, and 3.10's return cannot tell that apart from a caller that left first.
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0, server.output
    assert server.output.count("the caller is gone") == 0, server.output


def test_a_reply_to_a_caller_gone_is_still_reported(run, broker, queue):
    """The direct reply-to caller closed its connection before the answer: one "the caller is gone" line, acked."""
    responder(run, "--handler", "tutorial_handlers:fib").stop()  # declares the queue, then goes
    caller = tutorial.connect(broker.url)
    channel = caller.channel()
    channel.basic_consume("amq.rabbitmq.reply-to", lambda *_: None, auto_ack=True)
    channel.basic_publish("", queue, b"6", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                                  correlation_id="gone-1", message_id="gone-1"))
    caller.close()
    server = responder(run, "--handler", "tutorial_handlers:fib")
    server.wait_for_line("the caller is gone")
    wait_until(lambda: queue_counts(broker, queue)[:2] == (0, 0), 10, "the request acked",
               lambda: server.output)
    assert server.output.count("the caller is gone") == 1


def test_a_responder_whose_handler_hangs_stops_within_its_grace_period_and_the_next_answers(run, broker, queue):
    """SIGTERM to a responder whose handler hangs: exit 9 after --grace-period; the request goes back and the
    next responder answers it, the caller gets exactly that one reply."""
    hung = responder(run, "--handler", "slow_handler:hang", "--grace-period", "1")
    answers: list[str] = []
    with RpcClient(broker.url, queue) as client:
        caller = threading.Thread(target=lambda: answers.append(client.call("15", timeout=60)))
        caller.start()
        hung.wait_for_line("hanging on id=")
        hung.signal(signal.SIGTERM)
        assert hung.wait(15) == 9, hung.output
        assert "within the 1s grace period" in hung.output
        second = responder(run, "--handler", "tutorial_handlers:fib")
        caller.join(60)
    assert answers == ["610"]
    wait_until(lambda: queue_counts(broker, queue)[:2] == (0, 0), 10, "the request acked", lambda: second.output)
