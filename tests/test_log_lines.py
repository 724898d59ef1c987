"""Log volume: a line per message at human rates, a summary per second beyond --log-rate.

The figures a user reads off the summaries (counts, rate, latency percentiles) must add up
to what was really sent and received.
"""

from __future__ import annotations

import logging
import re

import pytest

from rabbitipc.consume.latency import Latencies
from rabbitipc.loglines import LineBudget
from support import RECEIVED, SENT

SUMMARY = re.compile(r"\b(sent|received) (\d+) more messages in [\d.]+s without a line each")
DONE = re.compile(r"receiver done: (\d+) messages handled; first to last [\d.]+s \(\d+ msgs/s\), "
                  r"latency_ms p50=([\d.]+) p99=([\d.]+) max=([\d.]+)")


def summarised(program, verb: str) -> int:
    return sum(int(count) for kind, count in program.matches(SUMMARY) if kind == verb)


def test_fast_traffic_is_summarised_and_the_counts_add_up(run):
    """2000 messages at full speed with --log-rate 20: few lines, but every message counted."""
    receiver = run("receiver", "--log-rate", "20", "--count", "2000", "--prefetch", "500")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "2000", "--rate", "0", "--log-rate", "20")
    assert sender.wait(120) == 0, sender.output[-3000:]
    assert receiver.wait(60) == 0, receiver.output[-3000:]
    own_sent, own_received = len(sender.matches(SENT)), len(receiver.matches(RECEIVED))
    assert own_sent < 2000 and own_received < 2000
    assert own_sent + summarised(sender, "sent") == 2000
    assert own_received + summarised(receiver, "received") == 2000
    done = DONE.search(receiver.output)
    assert done, receiver.output[-2000:]
    handled, p50, p99, worst = int(done.group(1)), *map(float, done.groups()[1:])
    assert handled == 2000 and 0 <= p50 <= p99 <= worst
    assert "stopped by --count 2000 reached" in receiver.output


def test_log_rate_zero_prints_summaries_only(run):
    """--log-rate 0: no per-message lines at all, the summary still reports every message."""
    sender = run("sender", "--count", "300", "--rate", "0", "--log-rate", "0")
    assert sender.wait(60) == 0, sender.output
    assert not sender.matches(SENT)
    assert summarised(sender, "sent") == 300


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_budget_allows_n_per_interval_then_summarises(caplog):
    clock = FakeClock()
    budget = LineBudget(logging.getLogger("test"), "sent", per_second=5, clock=clock)
    with caplog.at_level(logging.INFO):
        decisions = [budget.allow() for _ in range(12)]
        assert decisions == [True] * 5 + [False] * 7
        clock.now = 1.5
        assert budget.allow() is True  # a new interval: the summary of the last one is out
    assert [record.getMessage() for record in caplog.records] == [
        "sent 7 more messages in 1.5s without a line each (8 msgs/s)"]


def test_line_budget_tick_flushes_a_quiet_interval(caplog):
    clock = FakeClock()
    budget = LineBudget(logging.getLogger("test"), "received", per_second=1, clock=clock,
                        detail=lambda: "; detail")
    with caplog.at_level(logging.INFO):
        budget.allow(), budget.allow(), budget.allow()
        budget.tick()
        assert not caplog.records  # the interval is not over yet
        clock.now = 1.0
        budget.tick()
    assert [r.getMessage() for r in caplog.records] == ["received 2 more messages in 1.0s without a line each "
                                                        "(3 msgs/s); detail"]


@pytest.mark.parametrize("samples", [[5.0] * 99 + [500.0], [float(n) for n in range(1, 1001)]])
def test_latency_percentiles_within_two_percent(samples):
    latencies = Latencies()
    for sample in samples:
        latencies.add(sample)
    exact = sorted(samples)
    for p in (50, 99):
        true = exact[int(len(exact) * p / 100) - 1]
        assert true <= latencies.percentile(p) <= true * 1.02 + 1e-9
    assert latencies.max == max(samples)


def test_latency_since_a_mark_covers_only_the_newer_samples():
    latencies = Latencies()
    for sample in (100.0, 200.0):
        latencies.add(sample)
    mark = latencies.copy()
    for sample in (1.0, 2.0, 3.0):
        latencies.add(sample)
    recent = latencies.since(mark)
    assert recent.total == 3
    assert 3.0 <= recent.max <= 3.06 and 2.0 <= recent.percentile(50) <= 2.04
    assert latencies.total == 5 and latencies.max == 200.0
