"""Routing's HTTP API: health, the SOPs in force, publishing an SOP, closing a case.

Publishing and closing take ``Authorization: Bearer <ROUTING_ADMIN_TOKEN>``: a stand-in for
the coordinator's credential until intake's tokens cover routing.
"""

import secrets
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from routing.app import (
    CaseHasOpenReferrals,
    CaseNotFound,
    SopConflict,
    build_runtime,
)
from routing.deadlines import DeadlineWatcher
from routing.settings import RoutingSettings
from routing.sop import SopError
from rujuk_contracts.events import CASE_ID_PATTERN
from rujuk_runtime.logs import get_logger
from rujuk_runtime.metrics import render

log = get_logger(__name__)

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
MAX_SOP_BYTES = 512 * 1024
COORDINATOR = "coordinator (admin token)"


class CloseRequest(BaseModel):
    reason: str = Field(
        default="every referral completed or cancelled",
        min_length=1,
        max_length=200,
        description="Why the case is closed; no identifying data",
    )


def create_api(settings: RoutingSettings) -> FastAPI:
    runtime, routing = build_runtime(settings)
    # Read before the consumers start, so the first case finds its SOP.
    routing.load_sops(settings.sop_dir)
    watcher: list[DeadlineWatcher] = []

    async def started() -> None:
        routing.log_sops(settings.sop_dir)
        if settings.minute_seconds != 60:
            log.warning("time is compressed", minute_seconds=settings.minute_seconds)
        async with runtime.pool.acquire() as conn:
            for district, (sop, origin) in sorted((await routing.sops_in_force(conn)).items()):
                log.info("sop in force", district=district, sop_id=sop.sop_id,
                         sop_version=sop.version, origin=origin)  # fmt: skip
        watcher.append(
            DeadlineWatcher(
                runtime.pool,
                routing,
                poll=settings.deadline_poll_seconds,
                after_commit=runtime.wake_relay,
            )
        )
        watcher[0].start()

    async def stopping() -> None:
        for each in watcher:
            await each.stop()

    runtime.on_started.append(started)
    runtime.on_stopping.append(stopping)

    app = FastAPI(
        title="rujuk routing",
        version="1.0.0",
        summary="District SOPs in force and their publishing; closing cases.",
        lifespan=runtime.lifespan,
    )
    app.state.runtime = runtime
    app.state.routing = routing
    app.state.watcher = watcher

    def require_admin(authorization: str | None) -> None:
        if settings.admin_token is None:
            raise HTTPException(
                503, "ROUTING_ADMIN_TOKEN is not set: publishing SOPs and closing cases are off"
            )
        scheme, _, token = (authorization or "").partition(" ")
        expected = settings.admin_token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), expected):
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ok, checks = await runtime.health()
        return JSONResponse({"service": "routing", "ok": ok, **checks}, 200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        body, content_type = render()
        return Response(body, 200, {"content-type": content_type})

    @app.get("/v1/sops", tags=["sops"])
    async def sops_in_force() -> dict[str, Any]:
        """The SOP in force per district (published, else the file), and refused files."""
        async with runtime.pool.acquire() as conn:
            in_force = await routing.sops_in_force(conn)
        return {
            "in_force": {
                district: {
                    "sop_id": sop.sop_id,
                    "version": sop.version,
                    "name": sop.name,
                    "origin": origin,
                    "sample_data": sop.sample_data,
                    "rules": [rule.id for rule in sop.rules],
                }
                for district, (sop, origin) in sorted(in_force.items())
            },
            "refused_files": routing.library.refused,
        }

    @app.post(
        "/v1/sops",
        status_code=201,
        tags=["sops"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/yaml": {"schema": {"type": "string"}}},
            }
        },
    )
    async def publish_sop(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Publish a new SOP version (YAML body). 422 lists every error with its line; 409
        when the version does not follow the one in force; 200 when this document was
        published before."""
        require_admin(authorization)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in YAML_TYPES:
            raise HTTPException(415, "send the SOP as application/yaml")
        raw = await request.body()
        if len(raw) > MAX_SOP_BYTES:
            raise HTTPException(413, f"SOP larger than {MAX_SOP_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "the SOP must be UTF-8 text") from exc
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                published = await routing.publish_sop(conn, text, COORDINATOR)
        except SopError as exc:
            return JSONResponse(
                {"detail": "SOP refused", "errors": [str(issue) for issue in exc.issues]}, 422
            )
        except SopConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        runtime.wake_relay()
        sop = published.sop
        return JSONResponse(
            {
                "sop_id": sop.sop_id,
                "district_code": sop.district_code,
                "version": sop.version,
                "sha256": published.sha256,
                "published_at": published.published_at.isoformat(),
                "created": published.created,
            },
            201 if published.created else 200,
        )

    @app.post("/v1/cases/{case_id}/close", tags=["cases"])
    async def close_case(
        request: Request,
        case_id: Annotated[str, Path(pattern=CASE_ID_PATTERN)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Close a case once every referral is completed or cancelled (409 names the open
        ones); publishes CaseClosed. Optional JSON body: ``{"reason": "..."}``."""
        require_admin(authorization)  # before the body is even read
        raw = await request.body()
        try:
            reason = CloseRequest.model_validate_json(raw or b"{}").reason
        except ValidationError as exc:
            problems = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]}
                        for e in exc.errors()]  # fmt: skip
            raise HTTPException(422, problems) from exc
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                closed = await routing.close_case(conn, case_id, COORDINATOR, reason)
        except CaseNotFound as exc:
            raise HTTPException(404, f"no case {case_id}") from exc
        except CaseHasOpenReferrals as exc:
            return JSONResponse(  # type: ignore[return-value]
                {
                    "detail": str(exc),
                    "open_referrals": [
                        {
                            "referral_id": r.referral_id,
                            "agency_id": r.agency_id,
                            "service": r.service.value,
                            "state": r.state.value,
                        }
                        for r in exc.open_referrals
                    ],
                },
                409,
            )
        runtime.wake_relay()
        return {"case_id": case_id, "closed": True, "already_closed": not closed}

    return app
