"""Ordering and priority: a single active consumer that another takes over from, and priority queues."""

import json
import signal
import subprocess
import sys

import pytest

from rabbitipc.mq import MessageQueue
from rabbitipc.topology import QueueSettings, Subscription
from support import RECEIVER, ROOT, SENDER, admin_channel_call, get_all, jsonl_records, program_env, wait_until


def seqs(path):
    return [record["seq"] for record in jsonl_records(path)]


def payloads(path):
    return [record["payload"] for record in jsonl_records(path)]


# -- single active consumer ----------------------------------------------------------------------
@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_single_active_consumer_takes_over_after_a_kill_in_order(run, tmp_path, queue_type):
    """Two receivers with --single-active-consumer: one gets everything, the other stands by; after a SIGKILL
    of the active one the other takes over: nothing lost, each in queue order (the killed one's unacked first)."""
    first_file, second_file = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first = run("receiver", "--queue-type", queue_type, "--single-active-consumer", "--prefetch", "10",
                "--jsonl", str(first_file))
    first.wait_for_line("active consumer of queue")  # alone on the queue once it registered
    second = run("receiver", "--queue-type", queue_type, "--single-active-consumer", "--prefetch", "10",
                 "--jsonl", str(second_file))
    second.wait_for_line("consuming from queue")
    assert "standing by: another consumer is active on queue" in second.output
    sender = run("sender", "--queue-type", queue_type, "--count", "300", "--rate", "150")  # no SAC: used as it is
    wait_until(lambda: len(jsonl_records(first_file)) >= 60, 30, "60 messages handled by the active receiver",
               lambda: first.output[-3000:])
    assert jsonl_records(second_file) == [], "the standing-by receiver got messages"
    first.signal(signal.SIGKILL)
    first.wait()
    second.wait_for_line("active consumer of queue", timeout=30)
    assert sender.wait(60) == 0, sender.output
    wait_until(lambda: set(seqs(first_file)) | set(seqs(second_file)) >= set(range(1, 301)), 30,
               "all 300 handled", lambda: second.output[-3000:])
    before, after = seqs(first_file), seqs(second_file)
    assert before == sorted(set(before)), "the active receiver handled out of order"
    assert after == sorted(set(after)), "the receiver that took over handled out of order"
    assert after[0] <= before[-1] + 1, "a gap at the takeover"  # it starts where the killed one stopped acking
    assert sender.output.count("it has a single active consumer") == 1, sender.output


def test_receiver_without_the_flag_uses_a_single_active_consumer_queue(run, broker, queue):
    """A receiver without --single-active-consumer consumes a queue that has one, saying so in one warning."""
    admin_channel_call(broker.url, lambda ch: ch.queue_declare(
        queue, durable=True, arguments=QueueSettings(single_active_consumer=True).arguments()))
    sender = run("sender", "--single-active-consumer", "--count", "3", "--rate", "0")
    assert sender.wait() == 0, sender.output
    assert "already exists" not in sender.output  # asked for what it has: no warning
    receiver = run("receiver", "--count", "3")
    assert receiver.wait() == 0, receiver.output
    assert receiver.output.count("it has a single active consumer") == 1


def test_single_active_consumer_cannot_be_added_to_an_existing_queue(run, broker, queue):
    """--single-active-consumer on a queue that exists without it: exit 5, one line saying what to do."""
    admin_channel_call(broker.url, lambda ch: ch.queue_declare(queue, durable=True,
                                                               arguments=QueueSettings().arguments()))
    receiver = run("receiver", "--single-active-consumer")
    assert receiver.wait() == 5, receiver.output
    last = receiver.lines[-1]
    assert "without a single active consumer (--single-active-consumer)" in last
    assert f"rabbitmqctl delete_queue {queue}" in last and "Traceback" not in receiver.output


# -- priority ------------------------------------------------------------------------------------
def test_higher_priority_messages_are_handled_first(run, tmp_path):
    """Sent low first, then high, to a classic priority queue while no receiver runs: the receiver gets the
    high ones first; a --priority above the queue's --max-priority counts as its maximum."""
    priority_queue = ("--queue-type", "classic", "--max-priority", "10")
    for priority, message in (("1", "low"), ("9", "high"), ("200", "capped")):
        sender = run("sender", *priority_queue, "--priority", priority, "--message", message,
                     "--count", "3", "--rate", "0")
        assert sender.wait() == 0, sender.output
    path = tmp_path / "handled.jsonl"
    receiver = run("receiver", *priority_queue, "--jsonl", str(path), "--count", "9")
    assert receiver.wait() == 0, receiver.output
    assert payloads(path) == ["capped"] * 3 + ["high"] * 3 + ["low"] * 3


def test_a_sender_without_priorities_uses_a_priority_queue(run, broker, queue, tmp_path):
    """A sender without --max-priority publishes to an existing priority queue (one warning naming flags that
    work; its messages have 0)."""
    receiver = run("receiver", "--queue-type", "classic", "--max-priority", "5", "--count", "1")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "1", "--rate", "0")
    assert sender.wait() == 0, sender.output
    assert receiver.wait() == 0, receiver.output
    assert sender.output.count("it is a classic priority queue (x-max-priority 5)") == 1
    # The flags it advises are enough on their own (--max-priority alone needs --queue-type classic).
    assert "(--queue-type classic --max-priority 5 says so" in sender.output, sender.output


def test_other_max_priority_than_the_existing_queue_is_refused(run, broker, queue):
    """--max-priority on a queue that exists with other priorities (or none): exit 5, one line naming the flag."""
    admin_channel_call(broker.url, lambda ch: ch.queue_declare(
        queue, durable=True, arguments=QueueSettings("classic", max_priority=3).arguments()))
    receiver = run("receiver", "--queue-type", "classic", "--max-priority", "10")
    assert receiver.wait() == 5, receiver.output
    assert "already exists with x-max-priority 3, not --max-priority 10" in receiver.lines[-1]


def run_program(script, *args):
    environment = program_env("amqp://guest:guest@127.0.0.1:1/%2F")  # never reached: the flags are refused first
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("script,args,needle", [
    (RECEIVER, ["--max-priority", "5"], "--max-priority needs --queue-type classic"),
    (SENDER, ["--max-priority", "5", "--queue-type", "quorum"], "--max-priority needs --queue-type classic"),
    (RECEIVER, ["--queue-type", "classic", "--max-priority", "256"], "'256' is not a whole number from 1 to 255"),
    (SENDER, ["--priority", "-1"], "'-1' is not a whole number from 0 to 255"),
    (RECEIVER, ["--pattern", "broadcast", "--single-active-consumer"], "--single-active-consumer needs --queue"),
    (SENDER, ["--http", "127.0.0.1:8080", "--priority", "5"], "--priority is not taken with --http"),
])
def test_ordering_flags_the_queue_cannot_have_exit_2(script, args, needle):
    """A priority queue of another type than classic, a value out of range, or --priority with --http (which
    would ignore it): one line, exit 2."""
    result = run_program(script, *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_library_refuses_priorities_on_a_quorum_queue():
    """Subscription(max_priority=...) on a quorum queue is a ValueError at once, not a downgrade."""
    with pytest.raises(ValueError, match="max_priority needs a classic queue"):
        Subscription(queue="jobs", max_priority=5)
    arguments = Subscription(queue="jobs", queue_type="classic", max_priority=5,
                             single_active_consumer=True).queue_settings.arguments()
    assert arguments == {"x-queue-type": "classic", "x-single-active-consumer": True, "x-max-priority": 5}


def test_definitions_declare_the_queue_as_the_programs_do(run, broker, queue, tmp_path):
    """The broker's definitions (python -m rabbitipc.definitions --single-active-consumer --queue-type classic
    --max-priority 4) create the work queue just as the programs ask for it: they use it without a warning."""
    env = program_env(broker.url, **{f"RABBITIPC_{role.upper()}_PASSWORD": "pw" for role in ("sender", "receiver",
                                                                                             "admin")})
    flags = ("--queue-type", "classic", "--single-active-consumer", "--max-priority", "4")
    result = subprocess.run([sys.executable, "-m", "rabbitipc.definitions", "--out", str(tmp_path), "--queue", queue,
                             *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "definitions.json").read_text())
    topology = {key: written[key] for key in ("queues", "exchanges", "bindings")}
    (tmp_path / "topology.json").write_text(json.dumps(topology))
    imported = broker.ctl("import_definitions", str(tmp_path / "topology.json"))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    sender = run("sender", *flags, "--count", "2", "--rate", "0")
    receiver = run("receiver", *flags, "--count", "2")
    assert sender.wait() == 0 and receiver.wait() == 0, sender.output + receiver.output
    assert "already exists" not in sender.output + receiver.output


@pytest.mark.parametrize("variable", ["RABBITIPC_QUEUE_TYPE", "RABBITIPC_SINGLE_ACTIVE_CONSUMER"])
def test_definitions_refuse_a_bad_ordering_variable(tmp_path, variable):
    """python -m rabbitipc.definitions with RABBITIPC_QUEUE_TYPE or RABBITIPC_SINGLE_ACTIVE_CONSUMER=bogus: exit 2,
    one line naming the variable, nothing written (not a queue of type bogus, not a quiet false)."""
    env = program_env("amqp://guest:guest@127.0.0.1:1/%2F", RABBITIPC_SENDER_PASSWORD="pw",
                      RABBITIPC_RECEIVER_PASSWORD="pw", RABBITIPC_ADMIN_PASSWORD="pw", **{variable: "bogus"})
    result = subprocess.run([sys.executable, "-m", "rabbitipc.definitions", "--out", str(tmp_path)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "definitions.json").exists()


def test_message_queue_publishes_with_a_priority(broker, queue):
    """The library: MessageQueue(queue_type="classic", max_priority=5).publish(..., priority=5) overtakes the others."""
    mq = MessageQueue(queue, broker.url, queue_type="classic", max_priority=5)
    seen = []

    def handle(delivery):
        seen.append(delivery.message.payload)
        if len(seen) == 3:
            mq.stop()

    try:
        for text, priority in (("first", None), ("second", 1), ("urgent", 5)):
            mq.publish(text, priority=priority)
        mq.register(handle)
        mq.start()
    finally:
        mq.close()
    assert seen == ["urgent", "second", "first"]


@pytest.mark.parametrize("priority", [300, -1, "7", 2.5, True])
def test_message_queue_refuses_a_priority_out_of_0_to_255(priority):
    """MessageQueue.publish(priority=300 or "7"): a ValueError naming 0-255, before any connection."""
    mq = MessageQueue("jobs", "amqp://guest:guest@127.0.0.1:1/%2F", queue_type="classic", max_priority=5)
    with pytest.raises(ValueError, match="from 0 to 255"):
        mq.publish("text", priority=priority)


def test_a_second_stage_with_single_active_consumer_stands_by(run, queue):
    """rabbitipc-stage takes --single-active-consumer too: a second copy of the stage stands by."""
    args = ("--single-active-consumer", "--forward-to", queue + ".out", "--handler", "slow_handler:upper")
    first = run("stage", *args)
    first.wait_for_line("active consumer of queue")
    second = run("stage", *args)
    second.wait_for_line("consuming from queue")
    assert "active consumer of queue" not in second.output
    assert "standing by: another consumer is active on queue" in second.output


@pytest.mark.parametrize("argument,value", [("x-single-active-consumer", False), ("x-max-priority", 0)])
def test_a_queue_that_sets_the_ordering_arguments_to_none_is_used_quietly(run, broker, queue, argument, value):
    """A queue another client declared with x-single-active-consumer false or x-max-priority 0 (the same as
    leaving them out, but a different declare to the broker) is used as it is, without a warning."""
    admin_channel_call(broker.url, lambda ch: ch.queue_declare(
        queue, durable=True, arguments={"x-queue-type": "classic", argument: value}))
    sender = run("sender", "--queue-type", "classic", "--count", "2", "--rate", "0")
    receiver = run("receiver", "--queue-type", "classic", "--count", "2")
    assert sender.wait() == 0 and receiver.wait() == 0, sender.output + receiver.output
    assert "already exists" not in sender.output + receiver.output


def test_a_stage_keeps_the_priority_of_its_input(run, broker, queue):
    """A stage on a priority queue (--max-priority) forwards to a priority queue of the same levels, each
    output with its input's priority."""
    out = queue + ".out"
    priority_queue = ("--queue-type", "classic", "--max-priority", "10")
    sender = run("sender", *priority_queue, "--priority", "7", "--count", "2", "--rate", "0")
    assert sender.wait() == 0, sender.output
    stage = run("stage", *priority_queue, "--forward-to", out, "--handler", "slow_handler:upper", "--count", "2")
    assert stage.wait() == 0, stage.output
    forwarded = get_all(broker.url, out)
    assert [properties.priority for properties, _body in forwarded] == [7, 7]
    admin_channel_call(broker.url, lambda ch: ch.queue_declare(  # the same arguments: no PRECONDITION_FAILED
        out, durable=True, arguments=QueueSettings("classic", max_priority=10).arguments()))
