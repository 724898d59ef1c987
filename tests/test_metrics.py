"""Prometheus metrics: every program serves /metrics with --metrics-port, read from its own counters."""

import math
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.localbroker import free_port
from rabbitipc import metrics
from rabbitipc.consume.latency import Latencies
from support import RECEIVER, program_env, publish_raw, wait_until


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of http://127.0.0.1:PORT/metrics; {} while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples called name whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_sender_and_receiver_export_counts_and_latency(run, queue):
    """A short run shows the confirmed, handled (acked) and end-to-end latency numbers on both /metrics."""
    receiver_port, sender_port = free_port(), free_port()
    receiver = run("receiver", "--metrics-port", str(receiver_port))
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "40", "--rate", "0", env={"RABBITIPC_METRICS_PORT": str(sender_port)})
    sender.wait_for_line("sender done")
    wait_until(lambda: value(scrape(receiver_port), "rabbitipc_messages_handled_total", outcome="acked") == 40,
               30, "40 acked in the receiver's metrics", on_timeout=lambda: receiver.output)
    got = scrape(receiver_port)
    assert value(got, "rabbitipc_end_to_end_latency_seconds_count", program="receiver", queue=queue) == 40
    assert value(got, "rabbitipc_end_to_end_latency_seconds_bucket", queue=queue, le="+Inf") == 40
    assert value(got, "rabbitipc_connected", program="receiver", queue=queue) == 1
    assert value(got, "rabbitipc_build_info") == 1
    assert value(got, "process_resident_memory_bytes") > 0


def test_sender_metrics_count_confirms(run, queue):
    """The sender's metrics count what the broker confirmed and time confirms."""
    port = free_port()
    sender = run("sender", "--rate", "50", "--metrics-port", str(port))
    wait_until(lambda: value(scrape(port), "rabbitipc_messages_confirmed_total", program="sender",
                             destination=queue) >= 25, 30, "25 confirmed", on_timeout=lambda: sender.output)
    got = scrape(port)
    assert value(got, "rabbitipc_publish_confirm_latency_seconds_count", program="sender") >= 1
    assert value(got, "rabbitipc_connected", program="sender") == 1


def test_dead_lettered_and_duplicates_are_counted_by_outcome(run, broker, queue):
    """A message the handler refuses counts as dead_lettered; a redelivered id as duplicate."""
    port = free_port()
    receiver = run("receiver", "--metrics-port", str(port), "--strict")
    receiver.wait_for_line("consuming from queue")
    publish_raw(broker.url, queue, b"not ours")
    body = b'{"id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "seq": 1, "sent_at": 1.0, "host": "h", "payload": "x"}'
    publish_raw(broker.url, queue, body)
    publish_raw(broker.url, queue, body)
    wait_until(lambda: value(scrape(port), "rabbitipc_messages_handled_total", outcome="duplicate") == 1, 30,
               "a duplicate counted", on_timeout=lambda: receiver.output)
    got = scrape(port)
    assert value(got, "rabbitipc_messages_handled_total", outcome="dead_lettered") == 1
    assert value(got, "rabbitipc_messages_handled_total", outcome="acked") == 1


def test_retries_are_counted_as_delayed(run, broker, queue):
    """A handler failing twice then succeeding: each message counts twice as delayed, then once as acked."""
    port = free_port()
    receiver = run("receiver", "--metrics-port", str(port), "--handler", "flaky:fail_until_attempt_3",
                   "--min-backoff", "0.1")
    receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "3", "--rate", "0")
    assert sender.wait() == 0, sender.output
    wait_until(lambda: value(scrape(port), "rabbitipc_messages_handled_total", outcome="acked") == 3, 30,
               "3 acked", on_timeout=lambda: receiver.output)
    got = scrape(port)
    assert value(got, "rabbitipc_messages_handled_total", outcome="delayed") == 6
    assert value(got, "rabbitipc_messages_handled_total", outcome="dead_lettered") == 0


def test_handler_duration_is_measured(run, queue):
    """With --handler, the handler's own time is a histogram."""
    port = free_port()
    receiver = run("receiver", "--metrics-port", str(port), "--handler", "slow_handler:handle")
    receiver.wait_for_line("consuming from queue")
    run("sender", "--count", "3", "--rate", "0")
    wait_until(lambda: value(scrape(port), "rabbitipc_handler_duration_seconds_count") == 3, 30,
               "3 handler calls", on_timeout=lambda: receiver.output)
    got = scrape(port)
    assert value(got, "rabbitipc_handler_duration_seconds_bucket", le="0.025") == 0
    assert value(got, "rabbitipc_handler_duration_seconds_bucket", le="0.1") == 3


def test_taken_metrics_port_is_a_usage_error(broker, queue):
    """A --metrics-port another program holds ends the program with one line and exit 2."""
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, str(RECEIVER), "--queue", queue, "--metrics-port", str(port)],
                                env=program_env(broker.url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"rabbitipc-receive: error: --metrics-port {port}: cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", ["0", "65536", "http"])
def test_bad_metrics_port_is_refused(bad):
    """--metrics-port must be a TCP port."""
    result = subprocess.run([sys.executable, str(RECEIVER), "--metrics-port", bad], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "--metrics-port" in result.stderr


def test_histogram_buckets_follow_the_latency_histogram():
    """The Prometheus buckets count the 2%-wide latency buckets below each bound (within 2%)."""
    latencies = Latencies()
    for ms in (0.3, 4.0, 4.0, 700.0, 7_000_000.0):
        latencies.add(ms)
    buckets, total = metrics.histogram_buckets(latencies)
    counts = dict(buckets)
    assert counts["0.0005"] == 1 and counts["0.005"] == 3 and counts["1.0"] == 4 and counts["300.0"] == 4
    assert counts["+Inf"] == 5
    assert math.isclose(total, 7_000_708.3 / 1000)


def test_the_library_registry_serves_a_users_own_consumer(broker, queue):
    """A Consumer built by a user's process shows in prometheus-client's default registry."""
    from prometheus_client import generate_latest

    from rabbitipc import Consumer, Subscription

    consumer = Consumer(broker.url, Subscription(queue=queue), program="my-worker")
    text = generate_latest(metrics.REGISTRY).decode()
    assert f'rabbitipc_messages_handled_total{{outcome="acked",program="my-worker",queue="{queue}"}} 0.0' in text
    assert f'rabbitipc_connected{{node="",program="my-worker",queue="{queue}"}} 0.0' in text
    del consumer
