"""Bounded retries: a failing handler's message waits in a delay queue on the broker and comes back,
up to --max-attempts in all, then is parked in <queue>.dead with every attempt's reason."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

from rabbitipc.names import ATTEMPTS_HEADER, FAILURES_HEADER, REASON_HEADER
from support import RECEIVED, ROOT, SENT, get_all, program_env, queue_depth, wait_until

#: Short backoffs, so the tests wait little: 0.2 s, then 0.4 s.
FAST = ("--min-backoff", "0.2", "--max-backoff", "1")
ATTEMPT = re.compile(r"attempt (\d+) of id=(\S+)")


def ctl(broker, *args):
    return subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", "dead", *args], cwd=ROOT,
                          env=program_env(broker.url), capture_output=True, text=True, timeout=60)


def attempts(program) -> Counter:
    """How many attempts the handler made per id, from its 'attempt N of id=X' lines."""
    return Counter(message_id for _, message_id in program.matches(ATTEMPT))


def delay_queues(broker, queue) -> list[str]:
    result = broker.ctl("list_queues", "-q", "--no-table-headers", "name")
    return sorted(name for name in result.stdout.split() if name.startswith(queue + ".retry."))


def send(run, count: int, *args: str) -> list[str]:
    sender = run("sender", "--count", str(count), "--rate", "0", *args)
    assert sender.wait(60) == 0, sender.output
    return sender.ids(SENT)


def test_a_handler_failing_twice_then_succeeding_handles_every_message_once(run, broker, queue):
    """--max-attempts 3, a handler failing twice: every message is handled at its third attempt, once,
    and nothing reaches <queue>.dead; the waits were in one delay queue per delay."""
    receiver = run("receiver", "--handler", "flaky:fail_until_attempt_3", "--max-attempts", "3", *FAST)
    receiver.wait_for_line("consuming from queue")
    ids = send(run, 10)
    receiver.wait_count(RECEIVED, 10)
    assert sorted(receiver.ids(RECEIVED)) == sorted(ids)
    assert attempts(receiver) == Counter(dict.fromkeys(ids, 3))
    assert delay_queues(broker, queue) == [f"{queue}.retry.200ms", f"{queue}.retry.400ms"]
    assert queue_depth(broker.url, queue + ".dead") == 0
    assert "retrying id=" in receiver.output and "attempt 2 of 3 failed" in receiver.output


def test_an_always_failing_handler_parks_each_message_after_exactly_n_attempts(run, broker, queue):
    """Always failing with --max-attempts 4: each message is parked after exactly 4 attempts, carrying
    attempts=4 and the 4 reasons with their times; `rabbitipc-ctl dead list` shows them."""
    receiver = run("receiver", "--handler", "flaky:always_fails", "--max-attempts", "4", *FAST)
    receiver.wait_for_line("consuming from queue")
    ids = send(run, 5)
    wait_until(lambda: queue_depth(broker.url, queue + ".dead") == 5, 60, "5 parked", lambda: receiver.output[-3000:])
    assert attempts(receiver) == Counter(dict.fromkeys(ids, 4))
    listed = ctl(broker, "list", "--queue", queue)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(" attempts=4 ") == 5, listed.stdout
    assert all(f"  attempt {n}: " in listed.stdout for n in (1, 2, 3, 4)), listed.stdout
    parked = get_all(broker.url, queue + ".dead")
    assert sorted(properties.message_id for properties, _ in parked) == sorted(ids)
    for properties, _ in parked:
        headers = properties.headers
        assert headers[ATTEMPTS_HEADER] == 4
        assert headers[REASON_HEADER] == "handler failed: RuntimeError: broken at attempt 4"
        failures = headers[FAILURES_HEADER]
        assert len(failures) == 4
        assert all(re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ handler failed: RuntimeError: broken at "
                                rf"attempt {n}", failure) for n, failure in enumerate(failures, 1)), failures


def test_reject_parks_at_once_without_a_retry(run, broker, queue):
    """A handler raising rabbitipc.Reject: parked at once with attempts=1 and "rejected: <text>"."""
    receiver = run("receiver", "--handler", "flaky:rejects", "--max-attempts", "5", *FAST)
    receiver.wait_for_line("consuming from queue")
    ids = send(run, 3)
    wait_until(lambda: queue_depth(broker.url, queue + ".dead") == 3, 30, "3 parked")
    assert attempts(receiver) == Counter(dict.fromkeys(ids, 1))
    for properties, _ in get_all(broker.url, queue + ".dead"):
        assert properties.headers[REASON_HEADER] == "rejected: unknown customer"
        assert properties.headers[ATTEMPTS_HEADER] == 1
    assert "retrying" not in receiver.output


def test_max_attempts_1_dead_letters_at_once_as_before(run, broker, queue):
    """--max-attempts 1: a failing handler's message is parked at once, and no delay queue is made."""
    receiver = run("receiver", "--handler", "flaky:always_fails", "--max-attempts", "1")
    receiver.wait_for_line("consuming from queue")
    ids = send(run, 3)
    wait_until(lambda: queue_depth(broker.url, queue + ".dead") == 3, 30, "3 parked")
    assert attempts(receiver) == Counter(dict.fromkeys(ids, 1))
    assert delay_queues(broker, queue) == []
    assert "retrying" not in receiver.output


def test_a_message_waiting_for_its_retry_holds_no_prefetch_slot(run, broker, queue):
    """--prefetch 1: while 'boom' waits 8 s in its delay queue, the messages behind it are handled."""
    receiver = run("receiver", "--handler", "flaky:fails_boom_once", "--prefetch", "1", "--min-backoff", "8")
    receiver.wait_for_line("consuming from queue")
    [boom] = send(run, 1, "--message", "boom")
    receiver.wait_for_line("retrying id=")
    others = send(run, 5, "--message", "fine")
    receiver.wait_count(RECEIVED, 5)
    assert boom not in receiver.ids(RECEIVED), "the others waited for boom's retry"
    assert queue_depth(broker.url, f"{queue}.retry.8000ms") == 1, "boom is not waiting in its delay queue"
    receiver.wait_count(RECEIVED, 6)
    assert receiver.ids(RECEIVED) == [*others, boom]


def test_replay_after_retries_starts_again_at_attempt_1(run, broker, queue):
    """Parked after 3 attempts, then `rabbitipc-ctl dead replay`: back without the attempts and the
    broker's x-death, so a handler failing twice handles each once, at its third attempt again."""
    first = run("receiver", "--handler", "flaky:always_fails", "--max-attempts", "3", *FAST)
    first.wait_for_line("consuming from queue")
    ids = send(run, 4)
    wait_until(lambda: queue_depth(broker.url, queue + ".dead") == 4, 60, "4 parked")
    assert all("x-death" in properties.headers for properties, _ in get_all_kept(broker, queue + ".dead"))
    first.stop()
    replayed = ctl(broker, "replay", "--queue", queue)
    assert replayed.returncode == 0 and "4 replayed" in replayed.stdout, replayed.stdout + replayed.stderr
    second = run("receiver", "--handler", "flaky:fail_until_attempt_3", "--max-attempts", "3", *FAST)
    second.wait_count(RECEIVED, 4)
    assert sorted(second.ids(RECEIVED)) == sorted(ids)
    assert attempts(second) == Counter(dict.fromkeys(ids, 3))
    assert queue_depth(broker.url, queue + ".dead") == 0


def get_all_kept(broker, queue):
    """Every message of a queue, left in it: read through `rabbitipc-ctl dead list`'s reader."""
    from rabbitipc.connection import Broker
    from rabbitipc.deadletters import DeadLetters

    with DeadLetters(Broker(broker.url), queue.removesuffix(".dead")) as dead:
        return [(letter.properties, letter.body) for letter in dead.list().letters]


def test_a_stage_retries_its_handler_too(run, broker, queue):
    """rabbitipc-stage with a handler failing once: each input is forwarded once, at its second attempt."""
    stage = run("stage", "--forward-to", queue + ".out", "--handler", "flaky:upper_until_attempt_2", *FAST)
    stage.wait_for_line("consuming from queue")
    end = run("receiver", "--queue", queue + ".out", own_queue=False)
    end.wait_for_line("consuming from queue")
    send(run, 5, "--message", "shout")
    end.wait_count(RECEIVED, 5)
    assert [line for line in end.lines if "received seq=" in line and "SHOUT" in line].__len__() == 5
    assert set(attempts(stage).values()) == {2}
    assert queue_depth(broker.url, queue + ".dead") == 0


def test_an_exclusive_queue_says_at_start_that_it_does_not_retry(run, broker, queue):
    """A broadcast receiver without --queue: one line at start says failures are parked at once, and they are."""
    exchange = f"{queue}-fanout"
    receiver = run("receiver", "--pattern", "broadcast", "--exchange", exchange, "--handler", "flaky:always_fails",
                   own_queue=False)
    receiver.wait_for_line("consuming from queue")
    assert receiver.output.count("no retries on an exclusive queue") == 1
    sender = run("sender", "--pattern", "broadcast", "--exchange", exchange, "--count", "2", "--rate", "0",
                 own_queue=False)
    assert sender.wait(60) == 0, sender.output
    wait_until(lambda: queue_depth(broker.url, exchange + ".dead") == 2, 30, "2 parked")
    assert set(attempts(receiver).values()) == {1}
