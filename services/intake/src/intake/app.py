"""Intake's door: the HTTP API operators file reports through, partners read details through."""

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from intake import auth, disclosure, store
from intake.auth import Principal, Role
from intake.projection import projection_handlers
from intake.report import Report, identifying_data, triage_of
from intake.settings import IntakeSettings
from intake.vault import Vault, VaultError, parse_master_keys
from rujuk_contracts import make_event, subjects
from rujuk_contracts.events import CASE_ID_PATTERN, CaseDetailsDisclosed, CaseErased, CaseReported
from rujuk_runtime.access import TokenVerifier, token_handlers
from rujuk_runtime.body_guard import BodyGuard
from rujuk_runtime.logs import get_logger
from rujuk_runtime.metrics import metrics_endpoint
from rujuk_runtime.problems import documented as _problems
from rujuk_runtime.problems import field_problems, install_unavailable_problem
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import FASTAPI_TELEMETRY, current_traceparent, span_from

log = get_logger(__name__)

SOURCE = "/rujuk/intake"
CASE_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


# --- response models (they are the OpenAPI document's schemas) -------------------------------


class ReportAccepted(BaseModel):
    case_id: str
    status: str
    status_url: str


class ReferralStatus(BaseModel):
    referral_id: str
    agency_id: str
    service: str
    priority: str
    state: str
    updated_at: datetime


class CaseStatus(BaseModel):
    case_id: str
    district_code: str
    channel: str
    reported_at: datetime
    status: str
    violence_types: list[str]
    erased_at: datetime | None
    referrals: list[ReferralStatus]


class ErasureRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=200, description="No identifying data")


class WhoAmI(BaseModel):
    """Who a token belongs to: never its secret."""

    token_id: str
    role: str
    agency_id: str | None


class Erasure(BaseModel):
    case_id: str
    erased_at: datetime
    already_erased: bool


class DisclosedVictim(BaseModel):
    name: str | None = None
    nik: str | None = None
    birth_date: str | None = None
    age_years: int | None = None
    sex: str | None = None
    disability: bool | None = None
    phone: str | None = None
    address: str | None = None


class DisclosedReporter(BaseModel):
    name: str | None = None
    phone: str | None = None


class DisclosedIncident(BaseModel):
    occurred_at: str | None = None
    place: str | None = None
    narrative: str | None = None


class DisclosedDetails(BaseModel):
    """Only the fields the partner's service needs; the others are absent."""

    victim: DisclosedVictim | None = None
    reporter: DisclosedReporter | None = None
    incident: DisclosedIncident | None = None
    village: str | None = None


class Disclosure(BaseModel):
    case_id: str
    agency_id: str
    referral_id: str
    services: list[str]
    fields: list[str]
    details: DisclosedDetails


class DisclosureLogEntry(BaseModel):
    event_id: str
    referral_id: str
    agency_id: str
    token_id: str
    fields: list[str]
    purpose: str
    disclosed_at: datetime


def new_case_id(district: str) -> str:
    return f"{district}-" + "".join(secrets.choice(CASE_ID_ALPHABET) for _ in range(10))


CaseIdPath = Annotated[str, Path(pattern=CASE_ID_PATTERN, description="Pseudonymous case id")]


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    vault = Vault(parse_master_keys(settings.master_keys.get_secret_value()))
    bootstrap = settings.bootstrap_tokens.get_secret_value()
    auth.parse_bootstrap_tokens(bootstrap)  # refuse to start on a malformed setting
    runtime = ServiceRuntime("intake", settings)
    verifier = TokenVerifier(
        lambda: runtime.pool, ttl=settings.token_cache_seconds, lookup=auth.principal_of
    )
    runtime.batch_handlers.update(projection_handlers())
    runtime.skip_unhandled = True  # e.g. its own case.reported: nothing to project
    # Intake checks its own table; token events only tell it to forget remembered tokens.
    runtime.handlers.update(token_handlers(verifier, project=False))
    runtime.subscribe_batches(subjects.EVENTS_WILDCARD, durable="intake-projection")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtime.running():
            async with runtime.pool.acquire() as conn:
                announced = await auth.announce_unannounced(conn)
                added = await auth.install_bootstrap_tokens(conn, bootstrap) if bootstrap else 0
            if bootstrap:
                log.info("bootstrap tokens installed", added=added)
            if announced:
                log.info("earlier tokens announced", tokens=announced)
            runtime.wake_relay()
            yield

    app = FastAPI(
        title="rujuk intake",
        version="1.1.0",
        summary="File reports of violence; read a case's status; disclose and erase details.",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.runtime = runtime
    app.state.verifier = verifier
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    require = verifier.require

    install_unavailable_problem(app)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the problem, but never echo the submitted values back.
        return JSONResponse({"detail": field_problems(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8)
            problem = {"field": "body", "problem": "body is not valid UTF-8 JSON"}
            return JSONResponse({"detail": [problem]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ok, checks = await runtime.health()
        return JSONResponse({"service": "intake", "ok": ok, **checks}, 200 if ok else 503)

    @app.get(
        "/v1/whoami",
        response_model=WhoAmI,
        responses=_problems(401),
        tags=["tokens"],
        summary="The calling token's id, role and agency (any role)",
    )
    async def whoami(principal: Annotated[Principal, Depends(require(*Role))]) -> WhoAmI:
        return WhoAmI(
            token_id=principal.token_id,
            role=principal.role.value,
            agency_id=principal.agency_id,
        )

    @app.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAccepted,
        responses=_problems(401, 403, 409, 413, 415),
        tags=["reports"],
        summary="File a report (operator)",
    )
    async def file_report(
        report: Report,
        request: Request,
        principal: Annotated[Principal, Depends(require(Role.OPERATOR))],
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    ) -> ReportAccepted:
        request_hash = hashlib.sha256(report.model_dump_json().encode()).digest()
        with span_from("intake file report", None) as span:
            triage = triage_of(report)
            case_id = new_case_id(triage.district)
            reported_at = datetime.now(UTC)
            event = make_event(
                CaseReported(
                    case_id=case_id, channel=report.channel, reported_at=reported_at, triage=triage
                ),
                source=SOURCE,
                traceparent=current_traceparent(),
            )
            async with runtime.pool.acquire() as conn:
                inserted = await store.insert_case(
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
                if not inserted:  # the Idempotency-Key is a case's already
                    assert idempotency_key is not None
                    existing = await store.find_by_idempotency_key(conn, idempotency_key)
                    if existing is None or existing.request_hash != request_hash:
                        raise HTTPException(
                            409, "Idempotency-Key was already used for a different report"
                        )
                    return _accepted(request, existing.case_id)
            span.set_attribute("rujuk.case_id", case_id)
        runtime.wake_relay()
        log.info("report accepted", case_id=case_id, event_id=event.id, token_id=principal.token_id)
        return _accepted(request, case_id)

    @app.get(
        "/v1/cases/{case_id}",
        response_model=CaseStatus,
        responses=_problems(401, 403, 404),
        tags=["reports"],
        summary="A case's status and referrals (operator, coordinator)",
    )
    async def read_case(
        case_id: CaseIdPath,
        _: Annotated[Principal, Depends(require(Role.OPERATOR, Role.COORDINATOR))],
    ) -> dict[str, Any]:
        async with runtime.pool.acquire() as conn:
            status = await store.case_status(conn, case_id)
        if status is None:
            raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
        return status

    @app.get(
        "/v1/cases/{case_id}/details",
        response_model=Disclosure,
        response_model_exclude_unset=True,
        responses=_problems(401, 403, 410, 503),
        tags=["partners"],
        summary="Identifying details a partner's referral needs (partner with an active referral)",
    )
    async def disclose(
        case_id: CaseIdPath,
        purpose: Annotated[
            str,
            Query(
                min_length=3,
                max_length=200,
                description="Why the details are read (kept in the access log and the event)",
            ),
        ],
        principal: Annotated[Principal, Depends(require(Role.PARTNER))],
    ) -> Disclosure:
        agency_id = principal.agency_id
        assert agency_id is not None  # a partner token is always bound to an agency
        async with runtime.pool.acquire() as conn, conn.transaction():
            referrals = await store.active_referrals(conn, case_id, agency_id)
            entry = await store.vault_entry(conn, case_id) if referrals else None
            if entry is None:  # the same answer whether or not the case exists
                raise HTTPException(
                    403,
                    "lembaga Anda tidak memegang rujukan aktif untuk kasus ini / "
                    "your agency holds no active referral for this case",
                )
            if entry.sealed is None:
                raise HTTPException(410, "data kasus telah dihapus / the case's data was erased")
            try:
                record = vault.open(case_id, entry.sealed)
            except VaultError as exc:
                log.error("vault cannot open a case", case_id=case_id, error=str(exc))
                raise HTTPException(
                    503, "brankas tidak dapat membuka data / the vault cannot open this record"
                ) from exc
            victim = record.setdefault("victim", {})
            assert isinstance(victim, dict)
            victim["sex"] = entry.triage.get("sex")
            victim["disability"] = entry.triage.get("disability")
            services = sorted({r.service for r in referrals})
            fields = disclosure.fields_for(services)
            details = disclosure.select(record, fields)
            referral_id = referrals[0].referral_id
            event = make_event(
                CaseDetailsDisclosed(
                    case_id=case_id,
                    agency_id=agency_id,
                    referral_id=referral_id,
                    fields=fields,
                    purpose=purpose,
                    token_id=principal.token_id,
                ),
                source=SOURCE,
                traceparent=current_traceparent(),
            )
            await store.record_disclosure(
                conn,
                event=event,
                case_id=case_id,
                referral_id=referral_id,
                agency_id=agency_id,
                token_id=principal.token_id,
                fields=fields,
                purpose=purpose,
            )
        runtime.wake_relay()
        log.info(
            "details disclosed",
            case_id=case_id,
            agency_id=agency_id,
            token_id=principal.token_id,
            fields=len(fields),
        )
        return Disclosure(
            case_id=case_id,
            agency_id=agency_id,
            referral_id=referral_id,
            services=services,
            fields=fields,
            details=DisclosedDetails.model_validate(details),
        )

    @app.get(
        "/v1/cases/{case_id}/disclosures",
        response_model=list[DisclosureLogEntry],
        responses=_problems(401, 403, 404),
        tags=["partners"],
        summary="The access log of a case: who read which fields, why (auditor, coordinator)",
    )
    async def disclosure_log(
        case_id: CaseIdPath,
        _: Annotated[Principal, Depends(require(Role.AUDITOR, Role.COORDINATOR))],
    ) -> list[dict[str, Any]]:
        async with runtime.pool.acquire() as conn:
            if await store.case_status(conn, case_id) is None:
                raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
            return await store.disclosures_of(conn, case_id)

    @app.post(
        "/v1/cases/{case_id}/erase",
        response_model=Erasure,
        responses=_problems(401, 403, 404, 413, 415),
        tags=["reports"],
        summary="Crypto-shred a case's identifying data (coordinator)",
    )
    async def erase(
        case_id: CaseIdPath,
        body: ErasureRequest,
        principal: Annotated[Principal, Depends(require(Role.COORDINATOR))],
    ) -> Erasure:
        async with runtime.pool.acquire() as conn, conn.transaction():
            exists, erased_at = await store.lock_case_for_erasure(conn, case_id)
            if not exists:
                raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
            if erased_at is not None:
                return Erasure(case_id=case_id, erased_at=erased_at, already_erased=True)
            erased_at = datetime.now(UTC)
            event = make_event(
                CaseErased(
                    case_id=case_id,
                    erased_by=f"{principal.role.value}:{principal.token_id}",
                    reason=body.reason,
                ),
                source=SOURCE,
                traceparent=current_traceparent(),
            )
            await store.erase_case(conn, case_id, erased_at, event)
        runtime.wake_relay()
        log.info("case erased", case_id=case_id, token_id=principal.token_id)
        return Erasure(case_id=case_id, erased_at=erased_at, already_erased=False)

    return app


def _accepted(request: Request, case_id: str) -> ReportAccepted:
    return ReportAccepted(
        case_id=case_id,
        status="accepted",
        status_url=str(request.url_for("read_case", case_id=case_id)),
    )
