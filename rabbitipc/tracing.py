"""Traces across messages: W3C trace context (traceparent, tracestate) in the AMQP headers.

With the `otel` extra installed (`pip install 'rabbitipc[otel]'`) and OpenTelemetry's own
environment set (`OTEL_TRACES_EXPORTER=otlp` or `console`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_SERVICE_NAME`, ...), the sender starts a PRODUCER span per publish and writes the trace
context into the message's headers; a receiver or a stage continues it with a CONSUMER span per
handling, inside which the handler's own spans nest. Any client that writes the same headers (plain
pika under opentelemetry-instrumentation-pika does) is continued too. A process that configured a
TracerProvider itself (a user's own, or a test's) is used as it is.

Without the extra, or with OTEL_TRACES_EXPORTER unset or `none` and no provider configured,
`TRACER` is None and the programs skip every call here: nothing is imported, nothing runs per message.
Span names and attributes follow OpenTelemetry's messaging conventions (`publish NAME`,
`process NAME`, messaging.system=rabbitmq, messaging.destination.name, messaging.message.id).
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

LOGGER = logging.getLogger(__name__)


def _configure() -> Any:
    """The tracer, or None when tracing is off (extra missing, nothing configured)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    provider = trace.get_tracer_provider()
    if exporter_name in ("", "none"):
        if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
            return None  # nobody configured tracing: stay free
        return trace.get_tracer("rabbitipc")
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        try:
            provider = _sdk_provider(exporter_name)
        except ImportError as exc:
            LOGGER.warning("OTEL_TRACES_EXPORTER=%s but the OpenTelemetry SDK or exporter is missing (%s): "
                           "pip install 'rabbitipc[otel]'; tracing off", exporter_name, exc)
            return None
        if provider is None:
            return None
        trace.set_tracer_provider(provider)
    return trace.get_tracer("rabbitipc")


def _sdk_provider(exporter_name: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        LOGGER.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console, none); tracing off",
                       exporter_name)
        return None
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


_TRACER: Any = None
_CONFIGURED = False


def tracer() -> Any:
    """The process's tracer (configured on first call), or None when tracing is off."""
    global _TRACER, _CONFIGURED
    if not _CONFIGURED:
        _CONFIGURED = True
        _TRACER = _configure()
    return _TRACER


def publish_span(destination: str, message_id: str | None, headers: dict) -> None:
    """A PRODUCER span for one publish; writes its context into `headers` (traceparent, tracestate)."""
    from opentelemetry import propagate, trace

    with tracer().start_as_current_span(f"publish {destination}", kind=trace.SpanKind.PRODUCER, attributes={
            "messaging.system": "rabbitmq", "messaging.operation": "publish",
            "messaging.destination.name": destination, "messaging.message.id": message_id or ""}):
        propagate.inject(headers)


def forward_context(destination: str, message_id: str | None, source: Any, headers: dict) -> None:
    """A stage's forward continues its input's trace: a PRODUCER span under the input's context,
    written into `headers`; with tracing off, the input's trace headers go on as they are, so a traced
    consumer further down still joins the sender's trace."""
    carrier = _trace_headers(source)
    active = tracer()
    if active is None:
        headers.update(carrier)
        return
    from opentelemetry import propagate, trace

    with active.start_as_current_span(f"publish {destination}", context=propagate.extract(carrier),
                                      kind=trace.SpanKind.PRODUCER, attributes={
                                          "messaging.system": "rabbitmq", "messaging.operation": "publish",
                                          "messaging.destination.name": destination,
                                          "messaging.message.id": message_id or ""}):
        propagate.inject(headers)


def _trace_headers(properties: Any) -> dict:
    """The W3C trace context a message's headers carry (traceparent, tracestate), as text."""
    return {key: value.decode() if isinstance(value, bytes) else value
            for key, value in (properties.headers or {}).items() if key in ("traceparent", "tracestate")}


def process_span(queue: str, properties: Any) -> AbstractContextManager:
    """A CONSUMER span for handling one delivery, continuing the trace its headers carry (if any)."""
    active = tracer()
    if active is None:
        return nullcontext()
    from opentelemetry import propagate, trace

    return active.start_as_current_span(f"process {queue}", context=propagate.extract(_trace_headers(properties)),
                                        kind=trace.SpanKind.CONSUMER, attributes={
                                            "messaging.system": "rabbitmq", "messaging.operation": "process",
                                            "messaging.destination.name": queue,
                                            "messaging.message.id": properties.message_id or ""})


def shutdown() -> None:
    """Flush what was recorded (the programs call it on their way out)."""
    if _TRACER is not None:
        from opentelemetry import trace

        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            flush()
