"""Intake's door: the HTTP API operators file reports through."""

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from intake import store
from intake.projection import projection_handlers
from intake.report import Report, identifying_data, triage_of
from intake.settings import IntakeSettings
from intake.vault import Vault, parse_master_keys
from rujuk_contracts import make_event, subjects
from rujuk_contracts.events import CASE_ID_PATTERN, CaseReported
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import current_traceparent, span_from

log = get_logger(__name__)

SOURCE = "/rujuk/intake"
CASE_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


class ReportAccepted(BaseModel):
    case_id: str
    status: str
    status_url: str


class Problem(BaseModel):
    detail: str | list[dict[str, Any]]


def new_case_id(district: str) -> str:
    return f"{district}-" + "".join(secrets.choice(CASE_ID_ALPHABET) for _ in range(10))


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    vault = Vault(parse_master_keys(settings.master_keys.get_secret_value()))
    runtime = ServiceRuntime("intake", settings)
    runtime.handlers.update(projection_handlers())
    runtime.subscribe_batches(subjects.EVENTS_WILDCARD, durable="intake-projection")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtime.running():
            yield

    app = FastAPI(
        title="rujuk intake",
        version="1.0.0",
        summary="File reports of violence; read a case's status.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    @app.middleware("http")
    async def guard_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
                return _problem(413, f"body larger than {settings.max_body_bytes} bytes")
            content_type = request.headers.get("content-type", "")
            if content_type.split(";")[0].strip().lower() != "application/json":
                return _problem(415, "send the report as application/json")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the problem, but never echo the submitted values back.
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ok, checks = await runtime.health()
        return JSONResponse({"service": "intake", "ok": ok, **checks}, 200 if ok else 503)

    @app.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAccepted,
        responses={409: {"model": Problem}, 413: {"model": Problem}, 415: {"model": Problem}},
        tags=["reports"],
    )
    async def file_report(
        report: Report,
        request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> ReportAccepted:
        request_hash = hashlib.sha256(report.model_dump_json().encode()).digest()
        with span_from("intake file report", None) as span:
            async with runtime.pool.acquire() as conn, conn.transaction():
                if idempotency_key is not None:
                    existing = await store.find_by_idempotency_key(conn, idempotency_key)
                    if existing is not None:
                        if existing.request_hash != request_hash:
                            raise HTTPException(
                                409, "Idempotency-Key was already used for a different report"
                            )
                        return _accepted(request, existing.case_id)
                triage = triage_of(report)
                case_id = new_case_id(triage.district)
                span.set_attribute("rujuk.case_id", case_id)
                reported_at = datetime.now(UTC)
                event = make_event(
                    CaseReported(
                        case_id=case_id,
                        channel=report.channel,
                        reported_at=reported_at,
                        triage=triage,
                    ),
                    source=SOURCE,
                    traceparent=current_traceparent(),
                )
                await store.insert_case(
                    conn,
                    case_id=case_id,
                    channel=report.channel,
                    triage=triage,
                    reported_at=reported_at,
                    sealed=vault.seal(case_id, identifying_data(report)),
                    event=event,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                )
        runtime.wake_relay()
        log.info("report accepted", case_id=case_id, event_id=event.id)
        return _accepted(request, case_id)

    @app.get("/v1/cases/{case_id}", tags=["reports"], responses={404: {"model": Problem}})
    async def read_case(
        case_id: Annotated[str, Path(pattern=CASE_ID_PATTERN)],
    ) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            status = await store.case_status(conn, case_id)
        if status is None:
            raise HTTPException(404, f"no case {case_id}")
        return status

    return app


def _accepted(request: Request, case_id: str) -> ReportAccepted:
    return ReportAccepted(
        case_id=case_id,
        status="accepted",
        status_url=str(request.url_for("read_case", case_id=case_id)),
    )


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
