"""Prometheus metrics every service exposes on /metrics. Labels never carry identifying data:
event types, service names, durable names, agency ids and outcomes only."""

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS_CONSUMED = Counter(
    "rujuk_events_consumed_total",
    "Events taken from JetStream, by outcome (processed, duplicate, parked, retried)",
    ["service", "type", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "rujuk_events_published_total",
    "Events published from the outbox and acknowledged by JetStream",
    ["service", "type"],
)
HANDLER_SECONDS = Histogram(
    "rujuk_handler_seconds",
    "Time to handle one event inside its transaction",
    ["service", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DEAD_LETTERED = Counter(
    "rujuk_dead_lettered_total", "Messages parked on the dead-letter subject", ["service"]
)
CONSUMER_PENDING = Gauge(
    "rujuk_consumer_pending_messages",
    "Messages in the stream not yet delivered to this durable consumer",
    ["service", "durable"],
)
CONSUMER_ACK_PENDING = Gauge(
    "rujuk_consumer_ack_pending_messages",
    "Messages delivered to this durable consumer and not yet acknowledged",
    ["service", "durable"],
)
CONSUMER_REDELIVERED = Gauge(
    "rujuk_consumer_redelivered_messages",
    "Messages JetStream had to redeliver to this durable consumer",
    ["service", "durable"],
)
CONSUMER_OLDEST_UNACKED = Gauge(
    "rujuk_consumer_oldest_unacked_age_seconds",
    "Age of the oldest message this process took from the durable consumer and has not yet "
    "acknowledged (0 when none is in hand)",
    ["service", "durable"],
)
STREAM_MESSAGES = Gauge(
    "rujuk_stream_messages", "Messages JetStream holds in the stream", ["stream"]
)
STREAM_BYTES = Gauge("rujuk_stream_bytes", "Bytes JetStream holds in the stream", ["stream"])
OUTBOX_BACKLOG = Gauge(
    "rujuk_outbox_backlog", "Events committed but not yet acknowledged by JetStream", ["service"]
)
OUTBOX_OLDEST = Gauge(
    "rujuk_outbox_oldest_age_seconds",
    "Age of the oldest event still in the outbox (0 when the relay has drained it)",
    ["service"],
)
DEPENDENCY_UP = Gauge(
    "rujuk_dependency_up",
    "Whether the service reaches NATS and PostgreSQL (1) or not (0)",
    ["service", "dependency"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


async def metrics_endpoint(_: object) -> Any:
    """/metrics for a FastAPI (Starlette) door: ``app.add_route("/metrics", metrics_endpoint,
    include_in_schema=False)``."""
    from starlette.responses import Response

    body, content_type = render()
    return Response(body, media_type=content_type)
