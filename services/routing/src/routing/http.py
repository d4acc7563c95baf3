"""Routing's HTTP API: the SOPs in force, publishing an SOP, closing a case, the cases routing
could not route (listed, routed again by hand), and the console's reads: the referral list and
monitoring & evaluation figures. (/healthz and /metrics come with ``rujuk_runtime.webapp``.)

Every /v1 route takes a bearer token issued by intake (rujuk_runtime.access): publishing,
closing, the cases routing could not route and the figures the coordinator's; the referral
list the coordinator's or a partner's (fenced to its own agency); the SOP list anyone's.

A coordinator (or operator, auditor) token reaches only the districts it serves
(``Principal.district_filter``, applied in SQL): a case elsewhere is closed or routed again as
one that does not exist (404), it and its referrals are not listed and not counted, and asking
for figures of a district not served or publishing its SOP is refused (403, naming the
district: SOPs and district codes are no secret). A partner sees the SOPs whose directory
names its agency.
"""

from datetime import date, datetime, timedelta
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routing import cases, oncall, store
from routing.cases import CaseClosedAlready, CaseHasOpenReferrals, CaseNotFound
from routing.clock import Clock
from routing.lifecycle import ReferralState, UnroutedReason
from routing.paging import OnCallAlert
from routing.settings import RoutingSettings
from routing.sop import Sop, SopError
from routing.sops import SopConflict, SopNotServed, SopsInForce
from routing.stats import Period, ReferralPage, Stats, period_bounds, render_csv, stats_of
from rujuk_contracts.events import CASE_ID_PATTERN, CloseReason, DistrictCode, NoteRef
from rujuk_contracts.subjects import AGENCY_ID_PATTERN
from rujuk_runtime.access import Principal, Role, require
from rujuk_runtime.problems import documented
from rujuk_runtime.webapp import Runtime, from_app_state

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
MAX_SOP_BYTES = 512 * 1024
MAX_PAGE = 500
# PostgreSQL's OFFSET is a bigint: a larger one is refused (422) before it reaches the database.
MAX_OFFSET = 2**63 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")]

router = APIRouter()


# --- what a route takes from the app (set by routing.bootstrap) ---------------------------


Sops = Annotated[SopsInForce, from_app_state("sops")]
Now = Annotated[Clock, from_app_state("clock")]
Settings = Annotated[RoutingSettings, from_app_state("settings")]
Minute = Annotated[timedelta, from_app_state("minute")]

coordinator = Depends(require(Role.COORDINATOR))
coordinator_or_partner = Depends(require(Role.COORDINATOR, Role.PARTNER))
anyone_signed_in = Depends(require(*Role))


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: CloseReason = Field(
        default=CloseReason.SERVICES_COMPLETED, description="Why the case is closed, a code"
    )
    note_ref: NoteRef | None = Field(
        default=None,
        description="The coordinator's own words, if any: a close_note written at intake "
        "(POST /v1/cases/{case_id}/notes), named by its id. Free text never comes here.",
    )


class UnroutedCaseView(BaseModel):
    case_id: str
    district_code: str
    reason: UnroutedReason = Field(description="no_sop, sop_refused, sop_invalid, decision_failed")
    detail: str = Field(description="What to do about it, in Bahasa Indonesia and English")
    since: datetime = Field(description="When routing first could not route it")
    attempts: int = Field(description="How often routing tried, by hand included")
    last_attempt_at: datetime
    reported_at: datetime


class UnroutedPage(BaseModel):
    cases: list[UnroutedCaseView]
    limit: int
    offset: int
    next_offset: int | None


class RoutedAgain(BaseModel):
    case_id: str
    routed: bool = True
    already_routed: bool = Field(description="It had been routed before this request")
    sop_id: str | None = None
    sop_version: int | None = None
    referral_ids: list[str] = Field(default_factory=list)


class StillUnrouted(BaseModel):
    detail: str
    reason: UnroutedReason


class SopRefused(BaseModel):
    detail: str
    errors: list[str] = Field(description="Every problem in the document, with its line")


# --- SOPs ---------------------------------------------------------------------------------


@router.get("/v1/sops", tags=["sops"], responses=documented(401))
async def sops_in_force(
    principal: Annotated[Principal, anyone_signed_in], runtime: Runtime, sops: Sops
) -> dict[str, Any]:
    """The SOP in force per district (published, else the file), and refused files; for any
    signed-in role: the districts it serves (a province token: all), a partner the SOPs
    whose directory names its agency."""
    async with runtime.pool.acquire() as conn:
        in_force = {
            district: (sop, origin)
            for district, (sop, origin) in (await sops.sops_in_force(conn)).items()
            if _sees_sop(principal, district, sop)
        }
    refused = {
        name: reason
        for name, reason in sops.library.refused.items()
        if principal.serves(PurePath(name).stem)  # <district>.yaml; a partner sees none
    }
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
        "refused_files": refused,
    }


def _sees_sop(principal: Principal, district: str, sop: Sop) -> bool:
    if principal.role is Role.PARTNER:
        return principal.agency_id is not None and sop.lists_agency(principal.agency_id)
    return principal.serves(district)


@router.post(
    "/v1/sops",
    status_code=201,
    tags=["sops"],
    responses={**documented(401, 403, 409, 413, 415), 422: {"model": SopRefused}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
)
async def publish_sop(
    request: Request,
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    sops: Sops,
    clock: Now,
) -> JSONResponse:
    """Publish a new SOP version (YAML body; coordinator of its district). 422 lists every
    error with its line; 403 for a district the token does not serve; 409 when the version
    does not follow the one in force; 200 when this document was published before."""
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
            published = await sops.publish_sop(
                conn, text, _actor(principal), clock, districts=principal.district_filter
            )
    except SopNotServed as exc:
        raise HTTPException(403, _not_served(exc.district_code)) from exc
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


# --- cases --------------------------------------------------------------------------------


@router.post("/v1/cases/{case_id}/close", tags=["cases"], responses=documented(401, 403, 404))
async def close_case(
    request: Request,
    case_id: Annotated[str, Path(pattern=CASE_ID_PATTERN)],
    principal: Annotated[Principal, coordinator],  # checked before the body is read
    runtime: Runtime,
    clock: Now,
) -> dict[str, Any]:
    """Close a case once every referral is completed or cancelled (409 names the open
    ones; coordinator of its district, else 404 as for no case); a case routing could not
    route closes as it is, and leaves the unrouted list. Publishes CaseClosed. Optional JSON
    body: ``{"reason": "<CloseReason code>", "note_ref": "note-…"}`` (reason defaults to
    services_completed)."""
    raw = await request.body()
    try:
        body = CloseRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]}
                    for e in exc.errors()]  # fmt: skip
        raise HTTPException(422, problems) from exc
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            closed = await cases.close_case(
                conn,
                case_id,
                _actor(principal),
                body.reason,
                note_ref=body.note_ref,
                clock=clock,
                districts=principal.district_filter,
            )
    except CaseNotFound as exc:
        raise HTTPException(404, f"kasus tidak ada / no case {case_id}") from exc
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


# --- cases routing could not route -------------------------------------------------------


@router.get(
    "/v1/cases/unrouted",
    response_model=UnroutedPage,
    responses=documented(401, 403),
    tags=["cases"],
    summary="Cases routing could not route, oldest first (coordinator, its districts)",
)
async def unrouted_cases(
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> UnroutedPage:
    """Each stays listed until it is routed by hand (``POST /v1/cases/{id}/route``) or
    closed (``POST /v1/cases/{id}/close``)."""
    async with runtime.pool.acquire() as conn:
        rows = await store.list_unrouted(
            conn, districts=principal.district_filter, limit=limit + 1, offset=offset
        )
    more = len(rows) > limit
    return UnroutedPage.model_validate(
        {
            "cases": rows[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }
    )


@router.post(
    "/v1/cases/{case_id}/route",
    response_model=RoutedAgain,
    responses={**documented(401, 403, 404), 409: {"model": StillUnrouted}},
    tags=["cases"],
    summary="Route an unrouted case again, with the SOP in force now (coordinator)",
)
async def route_again(
    case_id: Annotated[str, Path(pattern=CASE_ID_PATTERN)],
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    sops: Sops,
    clock: Now,
    minute: Minute,
) -> RoutedAgain:
    """200 with the referrals made (``already_routed`` when it was routed before); 409 with
    the reason when it still cannot be routed (the attempt is counted) or was closed; 404 for
    a case routing does not know or of a district the token does not serve."""
    async with runtime.pool.acquire() as conn, conn.transaction():
        unrouted = await store.lock_unrouted(conn, case_id)
        district = (
            unrouted.district_code
            if unrouted is not None
            else await store.routed_case_district(conn, case_id)
        )
        if district is None or not principal.serves(district):
            raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
        if unrouted is None:  # routed when it was reported
            return RoutedAgain(case_id=case_id, already_routed=True)
        try:
            result = await cases.route_by_hand(
                conn, sops, unrouted, _actor(principal), clock=clock, minute=minute
            )
        except CaseClosedAlready as exc:
            raise HTTPException(409, f"kasus sudah ditutup / case {case_id} is closed") from exc
    if result.still is not None:  # the attempt is kept: answered after the commit
        return JSONResponse(  # type: ignore[return-value]
            {"detail": result.still.reason, "reason": result.still.unrouted_reason.value}, 409
        )
    runtime.wake_relay()
    decision = result.decision
    return RoutedAgain(
        case_id=case_id,
        already_routed=result.already_routed,
        sop_id=decision.sop_id if decision else None,
        sop_version=decision.sop_version if decision else None,
        referral_ids=[r.referral_id for r in decision.referrals] if decision else [],
    )


# --- on call past the coordinator ----------------------------------------------------------


class OnCallContactView(BaseModel):
    contact_id: str
    channels: list[str]


class OnCallAlertView(BaseModel):
    alert_id: str
    case_id: str
    district_code: str
    referral_id: str = Field(description="The referral nobody answered, the chain's last")
    agency_id: str = Field(description="Its agency (the coordinator, as a rule)")
    priority: str
    reason: str = Field(description="deadline_missed, declined or delivery_failed")
    opened_at: datetime
    rounds_paged: int
    rounds: int | None = Field(description="The SOP's repeat policy (null before round 1)")
    next_page_at: datetime | None = Field(description="Null: nothing more will be paged")
    last_paged_at: datetime | None
    contacts: list[OnCallContactView]
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(description="A token id or an on-call role's id")
    acknowledged_via: str | None = Field(description="console or reply")


class OnCallPage(BaseModel):
    alerts: list[OnCallAlertView]
    limit: int
    offset: int
    next_offset: int | None


class Acknowledged(BaseModel):
    alert: OnCallAlertView
    first: bool = Field(description="False when someone had acknowledged it already")


def _alert_view(alert: OnCallAlert) -> OnCallAlertView:
    plan = alert.plan
    return OnCallAlertView(
        alert_id=alert.alert_id,
        case_id=alert.case_id,
        district_code=alert.district_code,
        referral_id=alert.referral_id,
        agency_id=alert.agency_id,
        priority=alert.priority.value,
        reason=alert.reason.value,
        opened_at=alert.opened_at,
        rounds_paged=alert.rounds_paged,
        rounds=plan.rounds if plan else None,
        next_page_at=alert.next_page_at,
        last_paged_at=alert.last_paged_at,
        contacts=[
            OnCallContactView(contact_id=c.contact_id, channels=[str(x) for x in c.channels])
            for c in (plan.contacts if plan else ())
        ],
        acknowledged=not alert.open,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=alert.acknowledged_by,
        acknowledged_via=alert.acknowledged_via.value if alert.acknowledged_via else None,
    )


@router.get(
    "/v1/oncall/alerts",
    response_model=OnCallPage,
    responses=documented(401, 403),
    tags=["oncall"],
    summary="Escalation chains run out: on-call alerts, open ones first (coordinator)",
)
async def oncall_alerts(
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    open: Annotated[bool, Query(description="true: only those nobody acknowledged")] = True,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> OnCallPage:
    """The alerts of the districts the token serves, open (unacknowledged) first, oldest
    first. An alert opens when a referral's chain runs out, the coordinator included; the
    SOP's on-call list is paged round after round until someone acknowledges it."""
    async with runtime.pool.acquire() as conn:
        alerts = await store.list_alerts(
            conn,
            districts=principal.district_filter,
            open_only=open,
            limit=limit + 1,
            offset=offset,
        )
    more = len(alerts) > limit
    return OnCallPage(
        alerts=[_alert_view(alert) for alert in alerts[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


@router.post(
    "/v1/oncall/alerts/{alert_id}/acknowledge",
    response_model=Acknowledged,
    responses=documented(401, 403, 404),
    tags=["oncall"],
    summary="Acknowledge an on-call alert: its pages stop (coordinator of its district)",
)
async def acknowledge_alert(
    alert_id: Annotated[str, Path(pattern=r"^[0-9A-Za-z-]{1,100}$")],
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    clock: Now,
) -> Acknowledged:
    """Publishes OnCallAcknowledged (via console, by the token id). An alert acknowledged
    before stays as it was (``first`` false), and this acknowledgement is recorded too. An
    alert of a district the token does not serve answers 404, as for none."""
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            alert, first = await oncall.acknowledge_in_console(
                conn, alert_id, _actor(principal), clock(), districts=principal.district_filter
            )
    except oncall.AlertNotFound as exc:
        raise HTTPException(404, f"peringatan tidak ada / no on-call alert {alert_id}") from exc
    runtime.wake_relay()
    return Acknowledged(alert=_alert_view(alert), first=first)


# --- the console's reads ------------------------------------------------------------------


@router.get(
    "/v1/referrals",
    response_model=ReferralPage,
    responses=documented(401, 403),
    tags=["console"],
    summary="Referrals, open and most urgent first (coordinator: its districts'; partner: its own)",
)
async def list_referrals(
    principal: Annotated[Principal, coordinator_or_partner],
    runtime: Runtime,
    clock: Now,
    agency_id: Annotated[
        str | None, Query(pattern=AGENCY_ID_PATTERN, description="Only this agency's")
    ] = None,
    state: Annotated[
        list[ReferralState] | None, Query(description="Only these states (repeatable)")
    ] = None,
    open: Annotated[
        bool | None,
        Query(description="true: not completed, declined, cancelled or escalated; false: those"),
    ] = None,
    case_id: Annotated[str | None, Query(pattern=CASE_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> ReferralPage:
    """Open referrals first, then by priority (emergency, urgent, routine), then newest.
    A coordinator sees the referrals of cases in the districts it serves (a case elsewhere:
    an empty page, as for no case). A partner sees only its own agency's referrals, of any
    district; asking for another agency's is 403."""
    districts = principal.district_filter
    if principal.role is Role.PARTNER:
        districts = None  # fenced by its agency instead
        if agency_id is not None and agency_id != principal.agency_id:
            raise HTTPException(
                403,
                "mitra hanya melihat rujukan lembaganya sendiri / a partner sees only its "
                f"own agency's referrals ({principal.agency_id})",
            )
        agency_id = principal.agency_id
    async with runtime.pool.acquire() as conn:
        rows = await store.list_referrals(
            conn,
            now=clock(),
            agency_id=agency_id,
            states=[s.value for s in state or []],
            open_only=open,
            case_id=case_id,
            limit=limit + 1,  # one more tells whether there is a next page
            offset=offset,
            districts=districts,
        )
    more = len(rows) > limit
    return ReferralPage.model_validate(
        {
            "referrals": rows[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }
    )


From = Annotated[date, Query(alias="from", description="First day, YYYY-MM-DD (inclusive)")]
To = Annotated[date, Query(alias="to", description="Last day, YYYY-MM-DD (inclusive)")]


Districts = Annotated[
    list[DistrictCode] | None,
    Query(
        alias="district",
        description="Only these districts (repeatable), each one the token serves; without "
        "it, every district the token serves",
    ),
]


async def period_figures(
    principal: Annotated[Principal, coordinator],
    start: From,
    end: To,
    runtime: Runtime,
    clock: Now,
    settings: Settings,
    asked: Districts = None,
) -> Stats:
    if end < start:
        raise HTTPException(
            422, [{"field": "query.to", "problem": "'to' must not be before 'from'"}]
        )
    districts = _districts_counted(principal, asked)
    zone = settings.stats_timezone
    since, until = period_bounds(start, end, zone)
    async with runtime.pool.acquire() as conn:
        rows = await store.period_stats(
            conn, start=since, end=until, timezone=zone, now=clock(), districts=districts
        )
    period = {"from": start, "to": end, "timezone": zone, "districts": districts}
    return stats_of(rows, Period.model_validate(period))


def _districts_counted(principal: Principal, asked: list[str] | None) -> list[str] | None:
    """The districts the figures count: those asked for, each one the token serves (else
    403), or every one it serves (None: every district)."""
    if not asked:
        return principal.district_filter
    for district in asked:
        if not principal.serves(district):
            raise HTTPException(403, _not_served(district))
    return sorted(set(asked))


def _not_served(district: str) -> str:
    return f"Anda tidak melayani kabupaten {district} / you do not serve district {district}"


Figures = Annotated[Stats, Depends(period_figures)]


@router.get(
    "/v1/stats",
    response_model=Stats,
    responses=documented(401, 403),
    tags=["console"],
    summary="Monitoring & evaluation figures for a period (coordinator; its districts)",
)
async def stats(figures: Figures) -> Response:
    """Cases reported in the period by violence type and month; for referrals made in it,
    time to the agency's first answer, acknowledgement deadlines met, those still open,
    and escalations. Days and months in ``ROUTING_STATS_TIMEZONE``."""
    # Written here, not by FastAPI's response_model, which would validate the figures a
    # second time (a year of a province: some 1,400 rows) before writing them.
    return Response(figures.model_dump_json(by_alias=True), media_type="application/json")


@router.get(
    "/v1/stats.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **documented(401, 403)},
    tags=["console"],
    summary="The same figures as CSV: section,key,subkey,metric,value (coordinator)",
)
async def stats_csv(figures: Figures) -> Response:
    period = figures.period
    return Response(
        render_csv(figures),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": "attachment; "
            f'filename="rujuk-stats-{period.from_}-{period.to}.csv"'
        },
    )


def _actor(principal: Principal) -> str:
    """Who did it, for events and logs: role and token id, never a name."""
    return f"{principal.role.value}:{principal.token_id}"
