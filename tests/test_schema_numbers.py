"""Property-based, on the real broker: any value in the number and time fields of our schema.

seq and sent_at take infinities, NaN, huge and negative numbers and wrong types (as raw JSON
text, so values json.dumps would refuse reach the receiver too), and the AMQP timestamp any
64-bit value. Each message goes the whole receive path: parse, latency, log line, a handler
doing arithmetic on the fields, a stage forwarding the result, and the --jsonl sinks at both
ends. Nothing may stop a program or leave a message behind; what cannot be handled is
dead-lettered with a reason.
"""

from __future__ import annotations

import itertools

import pika
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import get_all, jsonl_records, queue_counts, wait_alive_until, wait_until

NUMBER_TEXT = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-1e308", "1e308", "1" + "0" * 400,
                     "-" + "9" * 4000, "0", "-0.0", "5e-324", "true", "null", '"12"', "[]", "{}", '"NaN"']),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(2**200), max_value=2**200).map(str),
)
TIMESTAMPS = st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1))


def body(marker: str, seq: str, sent_at: str) -> bytes:
    return ('{"id":"%s","seq":%s,"sent_at":%s,"host":"h","payload":"p %s"}' % (marker, seq, sent_at, marker)).encode()


def test_any_number_in_our_schema_goes_the_whole_receive_path(run, broker, queue, tmp_path):
    """Numbers and times of any value: handled (and forwarded) or dead-lettered with a reason; nothing stops."""
    q_in, q_out = f"{queue}.in", f"{queue}.out"
    stage_file, end_file = tmp_path / "stage.jsonl", tmp_path / "end.jsonl"
    stage = run("stage", "--queue", q_in, "--forward-to", q_out, "--handler", "slow_handler:uses_every_field",
                "--jsonl", str(stage_file), "--max-attempts", "1", own_queue=False)
    end = run("receiver", "--queue", q_out, "--jsonl", str(end_file), own_queue=False)
    for program in (stage, end):
        program.wait_for_line("consuming from queue")
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.confirm_delivery()
    counter = itertools.count(1)
    dead = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(seq=NUMBER_TEXT, sent_at=NUMBER_TEXT, timestamp=TIMESTAMPS)
    def check(seq, sent_at, timestamp):
        marker = f"num-{next(counter)}"
        channel.basic_publish("", q_in, body(marker, seq, sent_at),
                              pika.BasicProperties(message_id=marker, timestamp=timestamp), mandatory=True)

        def settled():
            for line in stage.lines:
                if f"id={marker} " in line or line.endswith(f"id={marker}"):
                    if "dead-lettered" in line:
                        dead.add(marker)
                    return True
            return any(record.get("id") == marker for record in jsonl_records(stage_file))

        wait_alive_until(stage, settled, 30, f"the stage settling {marker} (seq={seq[:40]} sent_at={sent_at[:40]})")

    try:
        check()
    finally:
        connection.close()
    for program in (stage, end):
        assert program.proc.poll() is None, program.output[-3000:]
        assert "Traceback" not in program.output
    wait_until(lambda: queue_counts(broker, q_in)[:2] == (0, 0), 20, "the stage's queue empty, nothing unacked")
    handled = {record["id"] for record in jsonl_records(stage_file)}
    wait_until(lambda: len(jsonl_records(end_file)) >= len(handled), 20, "every handled message forwarded and received",
               lambda: end.output[-2000:])
    wait_until(lambda: queue_counts(broker, q_out)[:2] == (0, 0), 20, "the end queue empty")
    parked = get_all(broker.url, q_in + ".dead")
    assert {properties.message_id for properties, _ in parked} == dead
    assert all(properties.headers.get("x-rabbitipc-reason") for properties, _ in parked)
    assert dead.isdisjoint(handled)
