"""Audit's door: one durable consumer over every event subject, appending each to the ledger."""

from faststream.asgi import AsgiFastStream

from audit import store
from audit.chain import UnrepresentableEvent
from audit.settings import AuditSettings
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CloudEvent
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime

log = get_logger(__name__)

SERVICE = "audit"
DURABLE = "audit-ledger"


async def append_handler(conn: Connection, event: CloudEvent) -> None:
    """Record one event, of any type or version; the consumer has made sure it is seen once."""
    try:
        entry = await store.append(conn, event)
    except UnrepresentableEvent as exc:
        raise Rejected(str(exc)) from exc
    if entry is None:
        log.info("event already in the ledger", event_id=event.id, case_id=event.subject)
    else:
        log.debug("event recorded", seq=entry.seq, event_id=event.id, event_type=event.type)


def create_runtime(settings: AuditSettings | None = None) -> ServiceRuntime:
    """Audit's runtime: every valid CloudEvent, known type or not, through one durable
    consumer, in stream order; only what is not a CloudEvent at all is parked."""
    runtime = ServiceRuntime(SERVICE, settings or AuditSettings())
    runtime.fallback = append_handler
    runtime.subscribe_batches(subjects.EVENTS_WILDCARD, durable=DURABLE)
    return runtime


def create_app(settings: AuditSettings | None = None) -> AsgiFastStream:
    """The ASGI app to serve: the consumer plus ``/healthz``."""
    return create_runtime(settings).asgi_app()
