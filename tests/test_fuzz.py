"""Property-based: any body, headers and content type; any flag or environment value."""

from __future__ import annotations

import contextlib
import io
import itertools

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rabbitipc.programs import options as config
from support import get_all, queue_depth, wait_until

header_values = st.one_of(st.text(max_size=40), st.integers(-(2**31), 2**31 - 1), st.booleans(), st.none(),
                          st.binary(max_size=20))
headers = st.dictionaries(st.text(min_size=1, max_size=20), header_values, max_size=4)
content_types = st.one_of(st.none(), st.text(max_size=60), st.sampled_from(["application/json", "text/plain"]))
bodies = st.one_of(st.binary(max_size=700), st.text(max_size=300).map(str.encode),
                   st.builds(lambda p: ('{"id":"x","seq":1,"sent_at":1,"host":"h","payload":%s}' % p).encode(),
                             st.sampled_from(['"p"', "1", "null", "[]"])))


def test_receiver_survives_arbitrary_messages(run, broker, queue):
    """Whatever arrives is received (shown) or dead-lettered with a reason; the receiver keeps going."""
    receiver = run("receiver", "--max-size", "512", "--dedupe-window", "0")
    receiver.wait_for_line("consuming from queue")
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.confirm_delivery()
    counter = itertools.count(1)
    outcomes = {"shown": 0, "dead": 0}

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, headers=headers, content_type=content_types)
    def check(body, headers, content_type):
        marker = f"fuzz-{next(counter)}"
        body = body.replace(b'{"id":"x"', b'{"id":"%s"' % marker.encode())  # our schema: its id is the marker
        channel.basic_publish("", queue, body, pika.BasicProperties(
            message_id=marker, headers=headers or None, content_type=content_type), mandatory=True)

        def outcome():
            for line in receiver.lines:
                if f"id={marker} " in line or line.endswith(f"id={marker}"):
                    return "dead" if "dead-lettered" in line else "shown"
            return None

        result = wait_until(lambda: outcome() or receiver.proc.poll() is not None, 15,
                            f"the receiver's line for {marker}", lambda: receiver.output[-2000:])
        assert receiver.proc.poll() is None, receiver.output[-3000:]
        outcomes[result] += 1

    try:
        check()
    finally:
        connection.close()
    assert "Traceback" not in receiver.output
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "everything acked")
    dead = get_all(broker.url, queue + ".dead")
    assert len(dead) == outcomes["dead"]
    assert all(props.headers.get("x-rabbitipc-reason") for props, _ in dead)
    assert receiver.proc.poll() is None


# Both programs have --count: one parser takes each flag once.
OPTIONS = list({o.flag: o for o in config.COMMON + config.SENDER + config.RECEIVER}.values())


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from([o for o in OPTIONS if not o.is_switch]), value=st.text(max_size=30),
       via_env=st.booleans())
def test_any_flag_or_env_value_parses_or_exits_2_with_one_line(option, value, via_env):
    """An arbitrary value either configures the program or ends it with exit 2 and one stderr line."""
    if "\x00" in value and via_env:
        value = value.replace("\x00", "")  # environment variables cannot hold NUL
    argv, environ = ([], {option.env: value}) if via_env else ([f"{option.flag}={value}"], {})
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            config.parse("fuzz", OPTIONS, argv, environ, prog="fuzz")
        except SystemExit as exc:
            assert exc.code == 2
            lines = stderr.getvalue().strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("fuzz: error: "), stderr.getvalue()
            return
    assert stderr.getvalue() == ""


@pytest.mark.parametrize("flag", ["--count", "--rate", "--prefetch", "--max-size", "--retry-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-0.5", "1e400", " ", "0x10"])
def test_numeric_edge_values_are_rejected_cleanly(flag, value):
    """NaN, infinity and other number-like oddities are refused with exit 2, not a crash later."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_info:
        config.parse("fuzz", OPTIONS, [f"{flag}={value}"], {}, prog="fuzz")
    assert exit_info.value.code == 2
    assert len(stderr.getvalue().strip().splitlines()) == 1
