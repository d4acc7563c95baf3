"""Audit's composition root: the runtime with its consumers (every event into the ledger, every
parked message counted), the checkpointer, and the HTTP door for auditors and tools."""

from fastapi import FastAPI

from audit import http
from audit.checkpoints import Checkpointer
from audit.cosigning import Cosigner, parse_witnesses
from audit.handlers import ParkedCounter, append_handler
from audit.keys import log_origin, signing_key, trusted_public_key
from audit.settings import AuditSettings
from audit.writer import LedgerWriter
from rujuk_contracts import subjects
from rujuk_runtime.access import TokenVerifier, follow_tokens
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.webapp import service_app

log = get_logger(__name__)

SERVICE = "audit"
DURABLE = "audit-ledger"
DLQ_DURABLE = "audit-dlq"


def create_runtime(
    settings: AuditSettings | None = None, *, batch_append: bool = True
) -> ServiceRuntime:
    """Every valid CloudEvent, of any type, through one durable consumer in stream order;
    what is not a CloudEvent is parked. Every parked message of any service is counted.

    ``batch_append`` chains each pulled batch with one INSERT (the default); False uses the
    generic per-event consumer, kept for comparison in bench/audit_append.py.
    """
    settings = settings or AuditSettings()
    runtime = ServiceRuntime(SERVICE, settings)
    key = signing_key(settings)

    checkpointer: Checkpointer | None = None
    if key is not None:
        checkpointer = Checkpointer(
            key,
            lambda: runtime.pool,
            runtime.js,
            every=settings.checkpoint_every,
            interval=settings.checkpoint_interval_seconds,
            origin=log_origin(settings, key) or "",
            cosign=Cosigner(parse_witnesses(settings.witnesses), lambda: runtime.pool)
            if settings.witnesses
            else None,
        )
        runtime.run_in_background(checkpointer)  # stopped after the writer: a last checkpoint
    else:
        log.warning("no AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE: checkpoints are off")
    checkpoints = checkpointer is not None
    runtime.health_details.append(lambda: {"checkpoints": checkpoints})

    if batch_append:
        writer = LedgerWriter(
            SERVICE,
            lambda: runtime.pool,
            runtime.js,
            on_appended=checkpointer.appended if checkpointer else lambda count: None,
            public_key=trusted_public_key(settings),
        )
        runtime.subscribe_batches(
            subjects.EVENTS_WILDCARD,
            durable=DURABLE,
            process=writer.process,
            # The writer keeps one batch committing while it reads the next: never more than
            # two batches unacknowledged, so a redelivery is never overtaken (stream order).
            max_ack_pending=2 * runtime.settings.batch_size,
        )
        # After the consumers stop, before the last checkpoint and the pool's close.
        runtime.on_stopping.insert(0, writer.close)
    else:
        runtime.fallback = append_handler
        runtime.subscribe_batches(subjects.EVENTS_WILDCARD, durable=DURABLE)
    runtime.subscribe_batches(
        subjects.DLQ_WILDCARD,
        durable=DLQ_DURABLE,
        stream=subjects.DLQ_STREAM,
        process=ParkedCounter(lambda: runtime.pool).process,
    )
    return runtime


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    """The ASGI app to serve: the consumers, ``/healthz`` and the ``/v1`` read API, which
    takes an auditor's or the coordinator's token issued by intake."""
    settings = settings or AuditSettings()
    runtime = create_runtime(settings)
    verifier = TokenVerifier(lambda: runtime.pool, ttl=settings.token_cache_seconds)
    follow_tokens(runtime, verifier)
    return service_app(
        runtime,
        title="rujuk audit",
        version="1.0.0",
        summary="Read the ledger: case histories, verification, checkpoints, replays.",
        routers=[http.router],
        state={"verifier": verifier, "public_key": trusted_public_key(settings)},
    )
