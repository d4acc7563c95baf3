"""OpenTelemetry tracing: one trace per report, carried between services as W3C traceparent."""

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(service: str) -> TracerProvider:
    """Install a tracer provider named for the service. Exporters are added by deployment."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"rujuk-{service}"}))
    trace.set_tracer_provider(provider)
    return provider


@contextmanager
def span_from(
    name: str, traceparent: str | None, attributes: dict[str, str] | None = None
) -> Iterator[Span]:
    """A span whose parent is the incoming traceparent (or a new trace if there is none)."""
    carrier = {"traceparent": traceparent} if traceparent else {}
    context = _PROPAGATOR.extract(carrier)
    tracer = trace.get_tracer("rujuk")
    with tracer.start_as_current_span(name, context=context, attributes=attributes) as span:
        yield span


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to put on outgoing events."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")
