"""Pipelines DATA -> Q1 -> P1 -> Q2 -> P2 -> Q3: a stage killed mid-run loses nothing."""

import signal
from collections import Counter

from support import RECEIVED, SENT, queue_counts, wait_alive_until, wait_until


def test_two_stage_pipeline_with_a_killed_stage_delivers_every_input_once(run, queue):
    """Upper-case then reverse; stage 1 is SIGKILLed mid-run and restarted; the end sees each input once."""
    q1, q2, q3 = f"{queue}.in", f"{queue}.mid", f"{queue}.out"
    stage1 = run("stage", "--queue", q1, "--forward-to", q2, "--handler", "slow_handler:upper", own_queue=False)
    stage2 = run("stage", "--queue", q2, "--forward-to", q3, "--handler", "slow_handler:reverse", own_queue=False)
    end = run("receiver", "--queue", q3, own_queue=False)
    for program in (stage1, stage2, end):
        program.wait_for_line("consuming from queue")
    sender = run("sender", "--queue", q1, "--count", "200", "--rate", "200", own_queue=False)
    stage1.wait_count(RECEIVED, 30)
    stage1.signal(signal.SIGKILL)
    stage1.wait()
    assert sender.wait(60) == 0, sender.output
    again = run("stage", "--queue", q1, "--forward-to", q2, "--handler", "slow_handler:upper", own_queue=False)
    wait_until(lambda: len(set(end.ids(RECEIVED))) >= 200, 60, "200 distinct outputs", lambda: again.output[-2000:])
    outputs = Counter(end.ids(RECEIVED))
    assert len(outputs) == 200 and max(outputs.values()) == 1, "an input arrived twice at the end"
    seqs = sorted(int(seq) for seq, _ in end.matches(RECEIVED))
    assert seqs == list(range(1, 201)), "the output keeps each input's sequence number"
    line = next(line for line in end.lines if " received seq=7 " in line)
    assert line.endswith("payload=7 OLLEH"), line
    assert len(sender.ids(SENT)) == 200


def test_stage_needs_a_handler_and_a_next_queue(run):
    """A stage without --handler or --forward-to exits 2 naming what is missing."""
    stage = run("stage")
    assert stage.wait() == 2
    assert "--handler and --forward-to required" in stage.output


def test_stage_handler_returning_bytes_does_not_stop_the_stage(run, broker, queue):
    """A handler returning bytes: they are forwarded as they are, or the input is dead-lettered with the reason."""
    q1, q2 = f"{queue}.in", f"{queue}.out"
    stage = run("stage", "--queue", q1, "--forward-to", q2, "--handler", "slow_handler:as_bytes", own_queue=False)
    end = run("receiver", "--queue", q2, own_queue=False)
    for program in (stage, end):
        program.wait_for_line("consuming from queue")
    sender = run("sender", "--queue", q1, "--count", "2", "--rate", "0", "--message", "bytes out", own_queue=False)
    assert sender.wait() == 0, sender.output

    def settled():
        forwarded = sum("bytes out" in line for line in end.lines if " received " in line)
        parked = (queue_counts(broker, q1 + ".dead") or (0,))[0]
        return forwarded + parked >= 2

    wait_alive_until(stage, settled, 30, "both inputs forwarded or dead-lettered")
    assert queue_counts(broker, q1)[:2] == (0, 0), "no input left unacked"
