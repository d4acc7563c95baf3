"""Audit's doors: the bus (every event into the ledger, every parked message counted,
signed checkpoints out) and a small read API for auditors and tools."""

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit import report, store
from audit.bundle import BUNDLE_FORMAT
from audit.chain import UnrepresentableEvent
from audit.export import bundle_text, export_bundle
from audit.keys import signing_key, trusted_public_key
from audit.replay import ReplayRequestError, replay_to_bus
from audit.settings import AuditSettings
from audit.verification import verify_connection
from audit.writer import Checkpointer, LedgerWriter, ParkedCounter
from rujuk_contracts import subjects
from rujuk_contracts.envelope import SUBJECT_PATTERN, CloudEvent
from rujuk_runtime.access import Role, TokenVerifier, follow_tokens
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.metrics import metrics_endpoint
from rujuk_runtime.problems import documented, install_validation_problems
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import FASTAPI_TELEMETRY

log = get_logger(__name__)

SERVICE = "audit"
DURABLE = "audit-ledger"
DLQ_DURABLE = "audit-dlq"


async def append_handler(conn: Connection, event: CloudEvent) -> None:
    """Record one event through the generic idempotent consumer (the unbatched path)."""
    try:
        entry = await store.append(conn, event)
    except UnrepresentableEvent as exc:
        raise Rejected(str(exc)) from exc
    if entry is None:
        log.info("event already in the ledger", event_id=event.id, case_id=event.subject)


class AuditRuntime(ServiceRuntime):
    """The shared runtime plus audit's own parts: the ledger writer and the checkpointer."""

    checkpointer: Checkpointer | None = None


def create_runtime(
    settings: AuditSettings | None = None, *, batch_append: bool = True
) -> AuditRuntime:
    """Every valid CloudEvent, of any type, through one durable consumer in stream order;
    what is not a CloudEvent is parked. Every parked message of any service is counted.

    ``batch_append`` chains each pulled batch with one INSERT (the default); False uses the
    generic per-event consumer, kept for comparison in bench/audit_append.py.
    """
    settings = settings or AuditSettings()
    runtime = AuditRuntime(SERVICE, settings)
    key = signing_key(settings)

    def pool() -> Any:
        return runtime.pool

    if key is not None:
        checkpointer = Checkpointer(
            key,
            pool,
            runtime.js,
            every=settings.checkpoint_every,
            interval=settings.checkpoint_interval_seconds,
        )
        runtime.checkpointer = checkpointer
        runtime.on_started.append(checkpointer.start)
        runtime.on_stopping.append(checkpointer.stop)
    else:
        log.warning("no AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE: checkpoints are off")

    def appended(count: int) -> None:
        if runtime.checkpointer is not None:
            runtime.checkpointer.appended(count)

    if batch_append:
        writer = LedgerWriter(SERVICE, pool, runtime.js, on_appended=appended)
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
        process=ParkedCounter(pool).process,
    )
    return runtime


class ReplayRequest(BaseModel):
    """Which history to re-publish: one case, a time range of event times, or both."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    case_id: str | None = Field(
        default=None, pattern=SUBJECT_PATTERN, description="A case id (or any event subject)"
    )
    since: datetime | None = Field(default=None, alias="from")
    until: datetime | None = Field(default=None, alias="to")
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="after")
    def _selects_something(self) -> "ReplayRequest":
        if self.case_id is None and self.since is None and self.until is None:
            raise ValueError("give case_id, or from/to, or both")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("times must carry their offset, e.g. 2026-03-02T01:00:00Z")
        return self


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    """The ASGI app to serve: the consumers, ``/healthz`` and the ``/v1`` read API, which
    takes an auditor's or the coordinator's token issued by intake."""
    settings = settings or AuditSettings()
    runtime = create_runtime(settings)
    verifier = TokenVerifier(lambda: runtime.pool, ttl=settings.token_cache_seconds)
    follow_tokens(runtime, verifier)
    public_key = trusted_public_key(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtime.running():
            yield

    app = FastAPI(
        title="rujuk audit",
        version="1.0.0",
        summary="Read the ledger: case histories, verification, checkpoints, replays.",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.runtime = runtime
    app.state.verifier = verifier
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    install_validation_problems(app)
    guarded = [Depends(verifier.require(Role.AUDITOR, Role.COORDINATOR))]

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ok, checks = await runtime.health()
        checks["checkpoints"] = runtime.checkpointer is not None
        return JSONResponse({"service": SERVICE, "ok": ok, **checks}, 200 if ok else 503)

    @app.get(
        "/v1/cases/{case_id}/history",
        dependencies=guarded,
        responses=documented(401, 403, 404),
        tags=["ledger"],
    )
    async def case_history(case_id: str) -> dict[str, Any]:
        """A case's entries in ledger order (as ``rujuk audit replay --format json``)."""
        async with runtime.pool.acquire() as conn:
            entries = await store.case_entries(conn, case_id)
        if not entries:
            raise HTTPException(404, report.no_history(case_id))
        return report.history_document(case_id, report.history(entries))

    @app.get(
        "/v1/cases/{case_id}/bundle",
        dependencies=guarded,
        tags=["ledger"],
        response_class=Response,
        responses={
            200: {"content": {"application/json": {}}, "description": BUNDLE_FORMAT},
            **documented(401, 403, 404),
        },
    )
    async def case_bundle(
        case_id: Annotated[str, Path(pattern=SUBJECT_PATTERN, description="A case id")],
    ) -> Response:
        """The case's evidence bundle, as `rujuk audit export` writes it, as a download;
        check it offline with `rujuk audit verify-bundle FILE --public-key KEY`. Without a
        signed checkpoint yet, the bundle cannot be verified (``checkpoint`` is null)."""
        async with runtime.pool.acquire() as conn:
            document = await export_bundle(conn, case_id)
        if document is None:
            raise HTTPException(404, report.no_history(case_id))
        return Response(
            bundle_text(document),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="rujuk-audit-{case_id}.json"'},
        )

    @app.get(
        "/v1/ledger/verify",
        dependencies=guarded,
        responses=documented(401, 403, 409),
        tags=["ledger"],
    )
    async def verify() -> JSONResponse:
        """Verify the whole chain and every checkpoint; 200 if it holds, 409 naming the entry."""
        async with runtime.pool.acquire() as conn:
            result = await verify_connection(conn, public_key=public_key)
        return JSONResponse(report.verify_document(result), 200 if result.ok else 409)

    @app.get(
        "/v1/checkpoints/latest",
        dependencies=guarded,
        responses=documented(401, 403, 404),
        tags=["ledger"],
    )
    async def latest_checkpoint() -> dict[str, Any]:
        """The newest signed checkpoint, with the public key stored beside it."""
        async with runtime.pool.acquire() as conn:
            latest = await store.latest_checkpoint(conn)
        if latest is None:
            raise HTTPException(404, "no checkpoint yet / belum ada checkpoint")
        document: dict[str, Any] = json.loads(latest.checkpoint.to_bytes())
        document["public_key"] = base64.b64encode(latest.public_key).decode()
        return document

    @app.get("/v1/parked", dependencies=guarded, responses=documented(401, 403), tags=["ledger"])
    async def parked() -> dict[str, Any]:
        """How many messages each service parked on the dead-letter queue."""
        async with runtime.pool.acquire() as conn:
            counts = await store.parked_counts(conn)
        return {"total": sum(counts.values()), "by_service": counts}

    @app.post(
        "/v1/replays",
        dependencies=guarded,
        responses=documented(401, 403),
        tags=["ledger"],
        status_code=202,
    )
    async def replays(request: ReplayRequest) -> dict[str, Any]:
        """Re-publish matching events in ledger order to ``rujuk.replay.<request_id>.…``."""
        try:
            async with runtime.pool.acquire() as conn:
                result = await replay_to_bus(
                    conn,
                    runtime.js(),
                    case_id=request.case_id,
                    since=request.since,
                    until=request.until,
                    request_id=request.request_id,
                )
        except ReplayRequestError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {
            "request_id": result.request_id,
            "count": result.count,
            "subjects": f"{result.subject_prefix}.>",
        }

    return app
