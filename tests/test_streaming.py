"""Streamed confirms: the sender keeps up to --window messages in flight and loses none.

The receiver-side ledger (--jsonl, fsynced before each ack) shows what arrived; the sender's
"sent" lines show what the broker confirmed.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter

from support import FAULT_MATRIX, RECEIVED, SENT, get_all, jsonl_records, queue_depth, wait_until


def test_full_speed_stream_arrives_complete_once_and_in_order(run):
    """3000 messages as fast as confirms allow: each confirmed once, received once, in order."""
    receiver = run("receiver", "--prefetch", "500")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "3000", "--rate", "0")
    assert sender.wait(120) == 0, sender.output[-3000:]
    receiver.wait_count(RECEIVED, 3000, timeout=60)
    sent = sender.ids(SENT)
    assert len(sent) == len(set(sent)) == 3000
    assert [int(seq) for seq, _ in receiver.matches(RECEIVED)] == list(range(1, 3001))
    assert "sender done: 3000 messages accepted by the broker" in sender.output


def test_window_of_one_waits_for_every_confirm(run, broker, queue):
    """--window 1 is the tutorial's one-at-a-time publishing: same messages, same result."""
    sender = run("sender", "--count", "25", "--rate", "0", "--window", "1")
    assert sender.wait(60) == 0, sender.output
    assert len(set(sender.ids(SENT))) == 25
    assert queue_depth(broker.url, queue) == 25


def test_transient_messages_are_confirmed_and_delivered(run, broker, queue):
    """Fast mode (--transient) still confirms and still delivers; only broker restarts lose them."""
    sender = run("sender", "--count", "200", "--rate", "0", "--transient")
    assert sender.wait(60) == 0, sender.output
    receiver = run("receiver")
    receiver.wait_count(RECEIVED, 200)
    assert sorted(receiver.ids(RECEIVED)) == sorted(sender.ids(SENT))


def test_broker_killed_with_a_full_window_loses_nothing(run, broker, queue, tmp_path):
    """SIGKILL the broker while 1000 messages are unconfirmed: the window is published again."""
    ledger = tmp_path / "handled.jsonl"
    receiver = run("receiver", "--jsonl", str(ledger), "--prefetch", "200")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "6000", "--rate", "0", "--window", "1000")
    sender.wait_count(SENT, 1500, timeout=60)
    broker.kill()
    broker.start()
    assert sender.wait(180) == 0, sender.output[-3000:]
    accepted = set(sender.ids(SENT))
    assert len(accepted) == 6000

    def handled() -> Counter:
        return Counter(record["id"] for record in jsonl_records(ledger))

    wait_until(lambda: accepted <= set(handled()), 120, "every accepted message in the ledger",
               lambda: receiver.output[-3000:])
    counts = handled()
    duplicated = sum(count - 1 for count in counts.values())
    FAULT_MATRIX.append(("broker SIGKILL, window of 1000", len(accepted), len(counts),
                         len(accepted - set(counts)), duplicated, len(set(counts) - accepted)))
    assert duplicated == 0, "a message was handled twice"
    assert "published again" in sender.output or "connection lost" in sender.output


def test_transient_mode_marks_messages_non_persistent(run, broker, queue):
    """--transient sends delivery mode 1; without it every message is persistent (mode 2)."""
    transient = run("sender", "--count", "5", "--rate", "0", "--transient")
    assert transient.wait(60) == 0, transient.output
    assert {props.delivery_mode for props, _ in get_all(broker.url, queue)} == {1}
    persistent = run("sender", "--count", "5", "--rate", "0")
    assert persistent.wait(60) == 0, persistent.output
    assert {props.delivery_mode for props, _ in get_all(broker.url, queue)} == {2}


UNCONFIRMED = re.compile(r"stopped with (\d+) messages not confirmed by the broker \(seq ([\d,.-]+)\)")


def test_stop_while_the_broker_is_down_names_the_unconfirmed_messages(run, broker, queue):
    """SIGTERM while reconnecting: exit 0, and the messages the broker never confirmed are listed by seq.

    The broker is frozen (SIGSTOP) until the sender says confirms are overdue, so messages are surely
    waiting for a confirm, then killed: a clean shutdown would confirm what it has before closing.
    """
    sender = run("sender", "--rate", "0", "--retry-timeout", "0")
    sender.wait_count(SENT, 500, timeout=60)
    os.kill(broker.pid(), signal.SIGSTOP)
    try:
        sender.wait_for_line("no confirm from the broker for", timeout=60)
    finally:
        broker.kill()  # SIGKILL ends a stopped process too
    try:
        sender.wait_for_line("connection lost while publishing")
        sender.signal(signal.SIGTERM)
        assert sender.wait(20) == 0, sender.output[-3000:]
    finally:
        broker.start()
    match = UNCONFIRMED.search(sender.output)
    assert match, sender.output[-3000:]
    confirmed = {int(seq) for seq, _ in sender.matches(SENT)}
    first_named = int(re.split(r"[-,]", match.group(2))[0])
    assert int(match.group(1)) >= 1 and first_named not in confirmed
