"""Traces across messages: the sender's trace (or an instrumented plain pika client's) continues in our consumer."""

import itertools

import pika
import pytest

from rabbitipc import Consumer, StreamPublisher, Subscription, tracing
from rabbitipc.programs.sender import run_sender
from rabbitipc.topology import Route

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans(monkeypatch):
    """A TracerProvider recording in memory, as a process that configured OpenTelemetry itself has."""
    if not isinstance(trace.get_tracer_provider(), sdk.TracerProvider):
        provider = sdk.TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    monkeypatch.setattr(tracing, "_CONFIGURED", False)
    EXPORTER.clear()
    yield EXPORTER
    monkeypatch.setattr(tracing, "_CONFIGURED", False)


def _send(url: str, queue: str, count: int) -> None:
    publisher = StreamPublisher(url, Route("work", queue))
    try:
        run_sender(publisher, itertools.repeat("traced"), itertools.repeat(0.0), count, log_rate=0)
    finally:
        publisher.close()


def _consume(url: str, queue: str, count: int, handler=None) -> None:
    Consumer(url, Subscription(queue=queue), handler, count=count, log_rate=0, listen_for_control=False).run()


def test_tracing_is_off_without_configuration(monkeypatch):
    """With no provider configured and OTEL_TRACES_EXPORTER unset, no tracer: the hot path skips tracing."""
    monkeypatch.setattr(tracing, "_CONFIGURED", False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    if isinstance(trace.get_tracer_provider(), sdk.TracerProvider):
        pytest.skip("a provider was set by another test in this process")
    assert tracing.tracer() is None


def test_a_trace_started_by_our_sender_continues_in_our_receiver(broker, queue, spans):
    """Each publish span is the parent of the consumer's process span; the handler's span nests inside."""
    _send(broker.url, queue, 3)

    def handler(delivery):
        with trace.get_tracer("user").start_as_current_span("my work"):
            pass

    _consume(broker.url, queue, 3, handler)
    recorded = spans.get_finished_spans()
    published = {s.context.span_id: s for s in recorded if s.name == f"publish {queue}"}
    processed = [s for s in recorded if s.name == f"process {queue}"]
    assert len(published) == 3 and len(processed) == 3
    for span in processed:
        assert span.kind is trace.SpanKind.CONSUMER
        assert span.parent.span_id in published
        assert span.context.trace_id == published[span.parent.span_id].context.trace_id
        assert span.attributes["messaging.system"] == "rabbitmq"
    work = [s for s in recorded if s.name == "my work"]
    assert {s.parent.span_id for s in work} == {s.context.span_id for s in processed}


def test_a_trace_started_by_instrumented_plain_pika_continues(broker, queue, spans):
    """A message from plain pika under opentelemetry-instrumentation-pika continues its trace in our consumer."""
    from opentelemetry.instrumentation.pika import PikaInstrumentor

    _send(broker.url, queue, 1)  # our sender declares the queue
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        PikaInstrumentor.instrument_channel(channel)
        channel.basic_publish("", queue, b"from plain pika", pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()
    _consume(broker.url, queue, 2)
    recorded = spans.get_finished_spans()
    pika_send = [s for s in recorded if s.kind is trace.SpanKind.PRODUCER and not s.name.startswith("publish ")]
    assert len(pika_send) == 1, [s.name for s in recorded]
    processed = [s for s in recorded if s.name == f"process {queue}"]
    assert pika_send[0].context.trace_id in {s.context.trace_id for s in processed}
    (continued,) = [s for s in processed if s.context.trace_id == pika_send[0].context.trace_id]
    assert continued.parent.span_id == pika_send[0].context.span_id


def test_a_trace_continues_through_a_stage(broker, queue, spans):
    """sender -> stage -> receiver is one trace: the stage's forward is a PRODUCER span continuing the context
    its input carried (a sibling of the stage's process span), and the last receiver's process span is its
    child (the stage used to drop the trace headers)."""
    out = f"{queue}-out"
    _send(broker.url, queue, 2)
    Consumer(broker.url, Subscription(queue=queue), lambda delivery: delivery.message.payload, count=2, log_rate=0,
             listen_for_control=False, forward_to=Route("work", out)).run()
    _consume(broker.url, out, 2)
    recorded = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in recorded}
    sent = {s.context.trace_id for s in recorded if s.name == f"publish {queue}"}
    last = [s for s in recorded if s.name == f"process {out}"]
    assert len(sent) == 2 and len(last) == 2, [s.name for s in recorded]
    for span in last:
        forward = by_id[span.parent.span_id]
        assert forward.kind is trace.SpanKind.PRODUCER and forward.name.startswith("publish ")
        assert by_id[forward.parent.span_id].name == f"publish {queue}"
        assert span.context.trace_id in sent
