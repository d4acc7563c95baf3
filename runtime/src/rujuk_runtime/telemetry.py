"""OpenTelemetry tracing: one trace per report, carried between services as W3C traceparent.

Spans are exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads
the standard OTEL_* variables) and nowhere otherwise. Without an endpoint no span is made
(building spans nobody receives cost 5-10% of each service's CPU), but the trace context is
carried: work done for an event runs in the event's own context, as OpenTelemetry's no-op
tracer does, so the events it publishes carry that traceparent on and log lines its trace_id;
where no context comes in (a report over HTTP), one is still started.
Span attributes never carry identifying data: case ids are pseudonymous, and SQL statements are
parameterised.

A SQL statement is traced only inside a trace: an idle poll (the outbox relay, the delivery
worker, the deadline watcher) makes none, so the reports' traces are not buried under
thousands of one-statement traces. A batch consumer's statements go under one span for the
batch, linked to the trace of each message in it (OpenTelemetry's messaging conventions for a
batch); what is done for one event goes in that event's trace.
"""

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("rujuk")  # follows the provider configure_tracing installs
_configured: TracerProvider | None = None
_recording = True  # until configure_tracing finds no endpoint


class StatementsInTracesOnly(Sampler):
    """Drops a database statement's span that would start a trace of its own (no parent): an
    idle poll, a relay pass. Everything else is decided by ``inner``."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        statement = attributes is not None and any(k.startswith("db.system") for k in attributes)
        if statement and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"StatementsInTracesOnly{{{self._inner.get_description()}}}"


def configure_tracing(service: str) -> TracerProvider:
    """Install a tracer provider named for the service, once per process."""
    global _configured, _recording
    if _configured is not None:
        return _configured
    exporting = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    _recording = exporting
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"rujuk-{service}"}),
        sampler=None if exporting else ALWAYS_OFF,  # None: the OTEL_TRACES_SAMPLER default
    )
    if exporting:  # that default, without orphan statements (before any tracer is made)
        provider.sampler = StatementsInTracesOnly(provider.sampler)
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if exporting:  # a span per SQL statement costs ~15% CPU: only when someone receives it
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _configured = provider
    return provider


def shutdown_tracing() -> None:
    """Flush what is still buffered (a stopping service must not lose its last spans)."""
    if _configured is not None:
        _configured.shutdown()


# For every service's ``FastAPI(telemetry=...)``: the server span comes from instrument_asgi,
# which ``serve`` wraps around the whole app (middleware included); FastAPI's native telemetry
# would add a second server span, an operation span, metrics and log records to every request.
FASTAPI_TELEMETRY: "TelemetryConfig" = {"tracing": False, "metrics": False, "logs": False}


def instrument_asgi(app: Any) -> Any:
    """An HTTP server span for every request, continuing an incoming traceparent."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    # One span per request: the per-message `http receive` / `http send` spans tripled the
    # tracing work on every request and say nothing an operator looks for.
    return OpenTelemetryMiddleware(
        app, excluded_urls="healthz,metrics", exclude_spans=["receive", "send"]
    )


@contextmanager
def span_from(
    name: str, traceparent: str | None, attributes: dict[str, str] | None = None
) -> Iterator[Span]:
    """A span whose parent is the incoming traceparent, else the current span (or none).
    Not recording: the incoming context itself, made current (no span)."""
    context: Context | None = None
    if traceparent:
        context = _PROPAGATOR.extract({"traceparent": traceparent})
    if not _recording and context is not None:
        parent = trace.get_current_span(context)
        if parent.get_span_context().is_valid:
            token = otel_context.attach(context)
            try:
                yield parent
            finally:
                otel_context.detach(token)
            return
    with _TRACER.start_as_current_span(name, context=context, attributes=attributes) as span:
        yield span


@contextmanager
def batch_span(
    name: str, traceparents: Iterable[str | None], attributes: dict[str, str | int]
) -> Iterator[None]:
    """A span for the work done for a whole batch of messages, linked to each message's trace
    (not a child of any: a batch belongs to many traces). Nothing when not exporting."""
    if not _recording:
        yield
        return
    links = []
    for traceparent in traceparents:
        if traceparent:
            linked = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}))
            if linked.get_span_context().is_valid:
                links.append(Link(linked.get_span_context()))
    with _TRACER.start_as_current_span(
        name, context=Context(), kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ):
        yield


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to put on outgoing events."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> dict[str, str]:
    """trace_id and span_id of the current span, for log lines."""
    return _ids(trace.get_current_span().get_span_context())


def ids_of(traceparent: str | None) -> dict[str, str]:
    """trace_id and span_id a W3C traceparent names (none for a missing or malformed one)."""
    if not traceparent:
        return {}
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    return _ids(trace.get_current_span(context).get_span_context())


def _ids(context: trace.SpanContext) -> dict[str, str]:
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


# The span of each event a batch handler is handling now, by event id (handling_each).
_HANDLING: ContextVar[dict[str, Span]] = ContextVar("rujuk_handling", default={})  # noqa: B039


@contextmanager
def handling_each(
    spans: Iterable[tuple[str, str, str | None, dict[str, str | int]]],
) -> Iterator[None]:
    """One span per event handled together in bulk (name, event id, its traceparent,
    attributes), each in its event's trace, open while the block runs: work that follows
    from one event (``handling_traceparent``) hangs under that event's handling. ``spans``
    is read only when spans are exported (a generator costs nothing otherwise)."""
    if not _recording:
        yield
        return
    opened: dict[str, Span] = {}
    for name, event_id, traceparent, attributes in spans:
        context = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        opened[event_id] = _TRACER.start_span(name, context=context, attributes=attributes)
    token = _HANDLING.set(opened)
    try:
        yield
    finally:
        _HANDLING.reset(token)
        for span in opened.values():
            span.end()


def handling_traceparent(event_id: str, default: str | None) -> str | None:
    """The traceparent of this event's handling span (inside ``handling_each``), for what is
    done later because of it; else ``default`` (the event's own)."""
    span = _HANDLING.get().get(event_id)
    if span is None:
        return default
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", default)


def record_span(
    name: str,
    traceparent: str | None,
    attributes: dict[str, str | int],
    start_ns: int,
    end_ns: int,
) -> None:
    """A finished span for work done in bulk (e.g. one of many events in a batch insert),
    placed in the trace of the event it handled."""
    if not _recording:
        return
    context = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    span = _TRACER.start_span(name, context=context, attributes=attributes, start_time=start_ns)
    span.end(end_time=end_ns)
