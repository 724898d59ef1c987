"""Pipelines DATA -> Q1 -> P1 -> Q2 -> P2 -> Q3: a stage killed mid-run loses nothing."""

import signal
from collections import Counter

from rabbitipc.consume.effects import REASON_HEADER
from support import RECEIVED, SENT, get_all, queue_counts, wait_alive_until, wait_until


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


def test_stage_refuses_to_forward_to_its_own_input(run, queue):
    """--forward-to equal to --queue (a loop of one stage): exit 2 naming both, before connecting."""
    stage = run("stage", "--forward-to", queue, "--handler", "slow_handler:same")
    assert stage.wait() == 2
    assert f"--forward-to {queue} is the stage's own --queue" in stage.output
    assert "consuming" not in stage.output


def test_stage_help_names_the_hop_limit_and_its_default(run):
    """`stage --help` documents --max-hops, its environment variable and its default of 16."""
    stage = run("stage", "--help")
    assert stage.wait() == 0
    help_text = " ".join(stage.output.split())
    assert "--max-hops N" in help_text and "RABBITIPC_MAX_HOPS; default: 16" in help_text, help_text


def test_a_forwarding_cycle_is_dead_lettered_after_max_hops(run, broker, queue):
    """Stages A->B->A: the message goes round until forwarded --max-hops times, then is parked with the reason."""
    q_a, q_b = f"{queue}.a", f"{queue}.b"
    stage_a = run("stage", "--queue", q_a, "--forward-to", q_b, "--handler", "slow_handler:same", "--max-hops", "4",
                  own_queue=False)
    stage_b = run("stage", "--queue", q_b, "--forward-to", q_a, "--handler", "slow_handler:same", "--max-hops", "4",
                  own_queue=False)
    for program in (stage_a, stage_b):
        program.wait_for_line("consuming from queue")
    sender = run("sender", "--queue", q_a, "--count", "1", "--message", "round and round", own_queue=False)
    assert sender.wait() == 0, sender.output

    def parked():
        return sum((queue_counts(broker, name + ".dead") or (0,))[0] for name in (q_a, q_b))

    wait_alive_until(stage_a, parked, 30, "the cycling message parked")
    # Forwarded 4 times (A, B, A, B), refused by A on its fifth arrival: 4 handler calls in all.
    assert len(stage_a.matches(RECEIVED)) + len(stage_b.matches(RECEIVED)) == 4
    (properties, body), = get_all(broker.url, q_a + ".dead")
    assert b"round and round" in body
    assert "forwarded 4 times" in properties.headers[REASON_HEADER], properties.headers
    assert "dead-lettered" in stage_a.output
    for name in (q_a, q_b):
        assert queue_counts(broker, name)[:2] == (0, 0), f"{name} not empty"


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
