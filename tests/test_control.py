"""Stopping many consumers: one control command stops them all; a poison pill stops one."""

import subprocess
import sys

from support import RECEIVED, ROOT, SENT, program_env, queue_depth, wait_until


def ctl(broker, *args):
    return subprocess.run([sys.executable, "-m", "rabbitipc.control", *args], cwd=ROOT,
                          env=program_env(broker.url), capture_output=True, text=True, timeout=30)


def test_one_command_stops_every_receiver_of_a_queue(run, broker, queue):
    """rabbitipc-ctl stop --queue Q: all three receivers finish, ack, exit 0; the rest stays queued."""
    receivers = [run("receiver", "--prefetch", "5", "--handler", "slow_handler:handle") for _ in range(3)]
    for receiver in receivers:
        receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "300", "--rate", "0")
    assert sender.wait(60) == 0, sender.output
    wait_until(lambda: sum(len(r.ids(RECEIVED)) for r in receivers) >= 10, 30, "some messages handled")
    result = ctl(broker, "stop", "--queue", queue)
    assert result.returncode == 0, result.stderr
    for receiver in receivers:
        assert receiver.wait(15) == 0, receiver.output
        assert "requested through the control exchange" in receiver.output
    handled = sum(len(r.ids(RECEIVED)) for r in receivers)
    assert handled < 300
    wait_until(lambda: queue_depth(broker.url, queue) == 300 - handled, 10, "the unhandled rest in the queue")
    assert len(sender.ids(SENT)) == 300


def test_stop_for_a_queue_nobody_consumes_says_so(broker, queue):
    """A command no receiver listens to is reported with exit 1, not silently lost."""
    result = ctl(broker, "stop", "--queue", queue)
    assert result.returncode == 1
    assert "no receiver of" in result.stderr


def test_poison_pill_stops_only_the_receiver_that_gets_it(run, broker, queue):
    """--poison-pill: the one receiver that takes the pill acks it and exits 0; the other goes on."""
    first = run("receiver", "--poison-pill", "STOP", "--prefetch", "1")
    second = run("receiver", "--poison-pill", "STOP", "--prefetch", "1")
    first.wait_for_line("consuming from queue")
    second.wait_for_line("consuming from queue")
    sender = run("sender", "--message", "STOP", "--count", "1")
    assert sender.wait() == 0
    wait_until(lambda: first.proc.poll() is not None or second.proc.poll() is not None, 15, "one receiver stopped")
    stopped, running = (first, second) if first.proc.poll() is not None else (second, first)
    assert stopped.wait() == 0 and "poison pill received" in stopped.output
    assert running.proc.poll() is None
    assert queue_depth(broker.url, queue) == 0
