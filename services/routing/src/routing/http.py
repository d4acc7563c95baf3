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

from datetime import UTC, date, datetime, timedelta
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from routing import cases, oncall, proposals, simulations, store
from routing.cases import CaseClosedAlready, CaseHasOpenReferrals, CaseNotFound
from routing.clock import Clock
from routing.lifecycle import ReferralState, UnroutedReason
from routing.monitoring import NOT_A_COMPLAINT, SERVICE_FUNCTIONS, Monitoring, monitoring_of
from routing.monitoring import render_csv as render_monitoring_csv
from routing.paging import OnCallAlert
from routing.settings import RoutingSettings
from routing.simulations import DEFAULT_DAYS, SimulationRunner, last_days
from routing.sop import Sop, SopError, parse_sop
from routing.sop.duties import duty_changes
from routing.sop.examples import ExampleResult, run_example, run_examples
from routing.sop.signoff import StoredAnswer, StoredProposal, standing_of
from routing.sops import NeedsSignOff, SopConflict, SopNotServed, SopsInForce
from routing.stats import Period, ReferralPage, Stats, period_bounds, render_csv, stats_of
from rujuk_contracts.events import (
    CASE_ID_PATTERN,
    PROPOSAL_ID_PATTERN,
    AnswerVia,
    CloseReason,
    DistrictCode,
    DutyChange,
    NoteRef,
    ObjectionReason,
    OverrideReason,
)
from rujuk_contracts.subjects import AGENCY_ID_PATTERN
from rujuk_runtime.access import Principal, Role, require
from rujuk_runtime.db import Connection
from rujuk_runtime.problems import FieldProblem, documented
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
partner = Depends(require(Role.PARTNER))
BodyModel = TypeVar("BodyModel", bound=BaseModel)
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
    override: Annotated[
        str | None,
        Query(
            description="Bind the agencies whose duties change without their sign-off: why, "
            "an OverrideReason code: " + ", ".join(reason.value for reason in OverrideReason)
        ),
    ] = None,
) -> JSONResponse:
    """Publish a new SOP version directly, in force at once (YAML body; coordinator of its
    district). Allowed when it asks no agency more than the version in force; otherwise 409
    names the agencies and their duty changes and points to ``/v1/sop-proposals``, unless
    ``?override=<OverrideReason>`` is given (recorded in sop.published, with the agencies).
    422 lists every error with its line; 403 for a district the token does not serve; 409
    when the version does not follow the one in force; 200 when this document was published
    before."""
    text = await _yaml_body(request)
    try:
        reason = OverrideReason(override) if override is not None else None
    except ValueError:
        codes = ", ".join(r.value for r in OverrideReason)
        return JSONResponse(
            {
                "detail": "alasan override tidak dikenal / unknown override reason",
                "errors": [f"override: {override!r} is not one of {codes}"[:300]],
            },
            422,
        )
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            published = await sops.publish_sop(
                conn,
                text,
                _actor(principal),
                clock,
                districts=principal.district_filter,
                override=reason,
            )
    except NeedsSignOff as exc:
        return JSONResponse(
            {
                "detail": str(exc),
                "proposals": "/v1/sop-proposals",
                "asked": [
                    {"agency_id": a.agency_id, "duty_changes": [c.value for c in a.codes]}
                    for a in exc.asked
                ],
            },
            409,
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
    body = _json_body(CloseRequest, await request.body())
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
    settings: Settings,
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
                conn,
                sops,
                unrouted,
                _actor(principal),
                clock=clock,
                minute=minute,
                pick_timeout=timedelta(seconds=settings.village_pick_timeout_seconds),
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
    since, until = _period_bounds(start, end, zone)
    rows = await store.period_stats_shared(
        runtime.pool, start=since, end=until, timezone=zone, now=clock(), districts=districts
    )
    period = {"from": start, "to": end, "timezone": zone, "districts": districts}
    return stats_of(rows, Period.model_validate(period))


# No referral predates rujuk: a period (or a simulation) from before the first day is a
# mistyped year (from=0001-01-01 went as far as PostgreSQL, which refused the date: a 500).
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2100, 12, 31)


def _period_bounds(start: date, end: date, zone: str) -> tuple[datetime, datetime]:
    """``period_bounds``, or 422 for a period starting before ``EARLIEST_DAY`` or ending on the
    calendar's last day (its end, the next midnight, is past what a datetime holds)."""
    if start < EARLIEST_DAY:
        raise HTTPException(
            422, [{"field": "query.from", "problem": f"'from' must be {EARLIEST_DAY} or later"}]
        )
    try:
        return period_bounds(start, end, zone)
    except OverflowError as exc:
        raise HTTPException(
            422, [{"field": "query.to", "problem": "'to' must be before 9999-12-31"}]
        ) from exc


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


# --- proposals ----------------------------------------------------------------------------
# A coordinator proposes an SOP version; the agencies whose duties change agree or object
# (partner tokens); the coordinator publishes it from an effective date, once all agreed or
# with an override reason. Who sees a proposal: coordinators of its district; a partner
# whose agency the version in force or the proposal names in its directory (the SOP is the
# district partners' shared contract and no secret, so a partner also sees what is asked of
# the others), any other as none (404). Only an asked agency answers.

SIMULATION_DAYS = 90


class DutyChangeView(BaseModel):
    code: DutyChange
    service: str | None = None
    rule_id: str | None = None
    before: str | None = None
    after: str | None = None


class AnswerView(BaseModel):
    decision: str = Field(description="agree or object")
    reason: ObjectionReason | None = None
    note_ref: str | None = None
    via: AnswerVia
    answered_at: datetime


class AskedView(BaseModel):
    agency_id: str
    duty_changes: list[DutyChange]
    answer: AnswerView | None = Field(description="Its current answer; null: yet to answer")


class ObjectionView(BaseModel):
    agency_id: str
    reason: ObjectionReason


class ProposalView(BaseModel):
    proposal_id: str
    district_code: str
    sop_id: str
    version: int
    sha256: str
    base_version: int | None = Field(description="The version in force when proposed")
    state: str = Field(description="open, published, withdrawn or superseded")
    proposed_by: str
    proposed_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    asked: list[AskedView]
    agreed: list[str]
    objected: list[ObjectionView]
    awaiting: list[str] = Field(description="Asked agencies yet to answer")
    links: dict[str, Any]


class ExampleView(BaseModel):
    example_id: str
    speaks_for: str = Field(description="The agency (or the coordinator) whose mandate it is")
    description: str | None
    passed: bool
    failures: list[str] = Field(description="Each expectation that does not hold (bilingual)")


class ProposalDetail(ProposalView):
    duty_changes: dict[str, list[DutyChangeView]] = Field(
        description="Per asked agency: what the proposal asks more of it than the base version"
    )
    diff: dict[str, Any] = Field(description="Rule by rule, against the base version")
    examples: list[ExampleView] = Field(
        description="The proposal's own examples, run through it (a proposal is refused while "
        "one fails, so they pass: this lists whose mandates it was checked against)"
    )
    examples_dropped: list[ExampleView] = Field(
        description="Examples of the base version the proposal no longer carries, run through "
        "the proposal: an agency's mandate left out, and whether the proposal still keeps it"
    )


class ProposalPage(BaseModel):
    proposals: list[ProposalView]
    limit: int
    offset: int
    next_offset: int | None


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["agree", "object"]
    reason: ObjectionReason | None = Field(default=None, description="Required to object")
    note_ref: NoteRef | None = Field(
        default=None, description="A note's id at intake, never the text (with an objection)"
    )
    via: Literal["api", "console"] = Field(default="api", description="Where it was given")

    @model_validator(mode="after")
    def _reason_with_objection(self) -> "AnswerRequest":
        if (self.decision == "object") != (self.reason is not None):
            raise ValueError("an objection needs a reason code; an agreement takes none")
        if self.note_ref is not None and self.decision != "object":
            raise ValueError("note_ref goes with an objection")
        return self


LATEST_EFFECTIVE_AT = datetime(2100, 1, 1, tzinfo=UTC)


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effective_at: AwareDatetime | None = Field(
        default=None,
        description="From when routing applies it (default now; not in the past, before 2100)",
    )

    @field_validator("effective_at")
    @classmethod
    def _within_reach(cls, value: datetime | None) -> datetime | None:
        if value is not None and value >= LATEST_EFFECTIVE_AT:
            raise ValueError(f"must be before {LATEST_EFFECTIVE_AT.date().isoformat()}")
        return value

    override_reason: OverrideReason | None = Field(
        default=None, description="Publish although some asked agency has not agreed: why"
    )


class ProposalPublished(BaseModel):
    proposal: ProposalView
    sop_id: str
    district_code: str
    version: int
    sha256: str
    published_at: datetime
    effective_at: datetime
    override_reason: OverrideReason | None
    agencies_not_agreed: list[str]


class NotAgreedView(BaseModel):
    detail: str
    objected: list[ObjectionView]
    awaiting: list[str]


ProposalIdPath = Annotated[str, Path(pattern=PROPOSAL_ID_PATTERN)]
no_proposal = "usulan tidak ada / no such proposal"


def _proposal_view(proposal: StoredProposal) -> ProposalView:
    standing = standing_of(proposal)
    base = f"/v1/sop-proposals/{proposal.proposal_id}"
    return ProposalView(
        proposal_id=proposal.proposal_id,
        district_code=proposal.district_code,
        sop_id=proposal.sop_id,
        version=proposal.version,
        sha256=proposal.sha256,
        base_version=proposal.base_version,
        state=proposal.state,
        proposed_by=proposal.proposed_by,
        proposed_at=proposal.proposed_at,
        closed_at=proposal.closed_at,
        closed_by=proposal.closed_by,
        asked=[
            AskedView(
                agency_id=agency_id,
                duty_changes=[DutyChange(code) for code in codes],
                answer=_answer_view(proposal.answers.get(agency_id)),
            )
            for agency_id, codes in proposal.asked.items()
        ],
        agreed=standing.agreed,
        objected=[
            ObjectionView(agency_id=a, reason=ObjectionReason(r)) for a, r in standing.objected
        ],
        awaiting=standing.awaiting,
        links={
            "self": base,
            "document": f"{base}/document",
            "answers": f"{base}/answers",
            "publish": f"{base}/publish",
            # The impact simulation (POST the document, as application/yaml).
            "simulation": {
                "method": "POST",
                "href": f"/v1/sops/simulations?days={SIMULATION_DAYS}",
                "body": f"{base}/document",
            },
        },
    )


def _answer_view(answer: StoredAnswer | None) -> AnswerView | None:
    if answer is None:
        return None
    return AnswerView(
        decision=answer.decision,
        reason=ObjectionReason(answer.reason) if answer.reason else None,
        note_ref=answer.note_ref,
        via=AnswerVia(answer.via),
        answered_at=answer.answered_at,
    )


def _proposal_detail(proposal: StoredProposal, before: Sop | None, after: Sop) -> ProposalDetail:
    changes = {
        a.agency_id: [
            DutyChangeView(
                code=c.code,
                service=c.service.value if c.service else None,
                rule_id=c.rule_id,
                before=c.before,
                after=c.after,
            )
            for c in a.changes
        ]
        for a in duty_changes(before, after)
    }
    kept = {example.id for example in after.examples}
    dropped = [e for e in (before.examples if before else []) if e.id not in kept]
    return ProposalDetail(
        **_proposal_view(proposal).model_dump(),
        duty_changes=changes,
        diff=proposals.rule_diff_of(before, after),
        examples=[_example_view(result) for result in run_examples(after)],
        examples_dropped=[
            _example_view(run_example(after, index, example))
            for index, example in enumerate(dropped)
        ],
    )


def _example_view(result: ExampleResult) -> ExampleView:
    example = result.example
    return ExampleView(
        example_id=example.id,
        speaks_for=example.speaks_for,
        description=example.description,
        passed=result.passed,
        failures=[failure.reason for failure in result.failures],
    )


async def _base_sop(conn: Connection, sops: SopsInForce, proposal: StoredProposal) -> Sop | None:
    """The version the proposal was made against: published, else the district's file."""
    if proposal.base_version is None:
        return None
    stored = await store.get_sop(conn, proposal.district_code, proposal.base_version)
    if stored is not None:
        return parse_sop(stored.yaml, origin=f"published {proposal.district_code}")
    found = sops.library.for_district(proposal.district_code)
    return found if found is not None and found.version == proposal.base_version else None


def _sees_proposal(principal: Principal, proposal: StoredProposal) -> bool:
    if principal.role is Role.PARTNER:
        return principal.agency_id in proposal.agency_ids
    return principal.serves(proposal.district_code)


async def _yaml_body(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in YAML_TYPES:
        raise HTTPException(
            415, "kirim SOP sebagai application/yaml / send the SOP as application/yaml"
        )
    raw = await request.body()
    if len(raw) > MAX_SOP_BYTES:
        raise HTTPException(413, f"SOP larger than {MAX_SOP_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "SOP harus teks UTF-8 / the SOP must be UTF-8 text") from exc


def _json_body(model: type[BodyModel], raw: bytes) -> BodyModel:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = [{"field": ".".join(map(str, e["loc"])) or "body", "problem": e["msg"]}
                    for e in exc.errors()]  # fmt: skip
        raise HTTPException(422, problems) from exc


@router.post(
    "/v1/sop-proposals",
    status_code=201,
    response_model=ProposalDetail,
    tags=["sop-proposals"],
    responses={**documented(401, 403, 409, 413, 415), 422: {"model": SopRefused}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
)
async def propose_sop(
    request: Request,
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    sops: Sops,
    clock: Now,
) -> JSONResponse:
    """Propose a new SOP version (YAML body; coordinator of its district). Returns the
    proposal: who is asked to sign it off and why, the rule-by-rule diff against the version
    in force, and the link to start its impact simulation. 422 lists every error with its
    line; 409 when the version does not follow the one in force; 200 when this document is
    the district's open proposal already. A new proposal supersedes the open one."""
    text = await _yaml_body(request)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            proposed = await proposals.propose(
                conn, sops, text, _actor(principal), clock, districts=principal.district_filter
            )
    except SopNotServed as exc:
        raise HTTPException(403, _not_served(exc.district_code)) from exc
    except SopError as exc:
        return JSONResponse(
            {"detail": "SOP ditolak / SOP refused", "errors": [str(i) for i in exc.issues]}, 422
        )
    except SopConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    runtime.wake_relay()
    detail = _proposal_detail(proposed.proposal, proposed.before, proposed.after)
    return JSONResponse(detail.model_dump(mode="json"), 201 if proposed.created else 200)


@router.get(
    "/v1/sop-proposals",
    response_model=ProposalPage,
    tags=["sop-proposals"],
    responses=documented(401, 403),
)
async def list_sop_proposals(
    principal: Annotated[Principal, coordinator_or_partner],
    runtime: Runtime,
    asked: Districts = None,
    state: Annotated[
        list[Literal["open", "published", "withdrawn", "superseded"]] | None,
        Query(description="Only these states (repeatable)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> ProposalPage:
    """Proposals, newest first, with who agreed, who objected and who has yet to answer.
    A coordinator: its districts' (``district`` narrows them; one not served is 403). A
    partner: those of SOPs whose directory names its agency."""
    agency_id = None
    if principal.role is Role.PARTNER:
        agency_id, districts = principal.agency_id, asked or None
    else:
        districts = _districts_counted(principal, asked)
    async with runtime.pool.acquire() as conn:
        rows = await store.list_proposals(
            conn,
            districts=districts,
            agency_id=agency_id,
            states=state or [],
            limit=limit + 1,
            offset=offset,
        )
    more = len(rows) > limit
    return ProposalPage(
        proposals=[_proposal_view(p) for p in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


@router.get(
    "/v1/sop-proposals/{proposal_id}",
    response_model=ProposalDetail,
    tags=["sop-proposals"],
    responses=documented(401, 403, 404),
)
async def get_sop_proposal(
    proposal_id: ProposalIdPath,
    principal: Annotated[Principal, coordinator_or_partner],
    runtime: Runtime,
    sops: Sops,
) -> ProposalDetail:
    """One proposal: who is asked and why, their answers, and the diff against the version
    it was proposed against."""
    async with runtime.pool.acquire() as conn:
        proposal = await store.get_proposal(conn, proposal_id)
        if proposal is None or not _sees_proposal(principal, proposal):
            raise HTTPException(404, no_proposal)
        before = await _base_sop(conn, sops, proposal)
    return _proposal_detail(proposal, before, parse_sop(proposal.yaml))


@router.get(
    "/v1/sop-proposals/{proposal_id}/document",
    response_class=Response,
    tags=["sop-proposals"],
    responses={200: {"content": {"application/yaml": {}}}, **documented(401, 403, 404)},
)
async def sop_proposal_document(
    proposal_id: ProposalIdPath,
    principal: Annotated[Principal, coordinator_or_partner],
    runtime: Runtime,
) -> Response:
    """The proposed YAML document as it was sent (to read it, or to simulate it)."""
    async with runtime.pool.acquire() as conn:
        proposal = await store.get_proposal(conn, proposal_id)
    if proposal is None or not _sees_proposal(principal, proposal):
        raise HTTPException(404, no_proposal)
    return Response(proposal.yaml, media_type="application/yaml; charset=utf-8")


@router.post(
    "/v1/sop-proposals/{proposal_id}/answers",
    response_model=ProposalView,
    tags=["sop-proposals"],
    responses=documented(401, 403, 404, 409),
)
async def answer_sop_proposal(
    request: Request,
    proposal_id: ProposalIdPath,
    principal: Annotated[Principal, partner],
    runtime: Runtime,
    clock: Now,
) -> ProposalView:
    """An asked agency agrees or objects (partner token): ``{"decision": "agree"}`` or
    ``{"decision": "object", "reason": "<ObjectionReason>", "note_ref": "note-…"}``. A later
    answer replaces the earlier one. 403 for an agency the proposal does not ask; 409 once
    it is published, withdrawn or superseded."""
    body = _json_body(AnswerRequest, await request.body())
    assert principal.agency_id is not None
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            proposal = await store.get_proposal(conn, proposal_id)
            if proposal is None or not _sees_proposal(principal, proposal):
                raise proposals.ProposalNotFound(proposal_id)
            answered = await proposals.answer(
                conn,
                proposal_id,
                principal.agency_id,
                reason=body.reason,
                note_ref=body.note_ref,
                via=AnswerVia(body.via),
                answered_by=_actor(principal),
                clock=clock,
            )
    except proposals.ProposalNotFound as exc:
        raise HTTPException(404, no_proposal) from exc
    except proposals.NotAsked as exc:
        raise HTTPException(
            403,
            f"usulan ini tidak meminta persetujuan {principal.agency_id} / this proposal does "
            f"not ask {principal.agency_id} to sign it off",
        ) from exc
    except proposals.ProposalClosed as exc:
        raise HTTPException(409, str(exc)) from exc
    runtime.wake_relay()
    return _proposal_view(answered)


@router.post(
    "/v1/sop-proposals/{proposal_id}/publish",
    response_model=ProposalPublished,
    tags=["sop-proposals"],
    responses={**documented(401, 403, 404, 422), 409: {"model": NotAgreedView}},
)
async def publish_sop_proposal(
    request: Request,
    proposal_id: ProposalIdPath,
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    sops: Sops,
    clock: Now,
) -> ProposalPublished:
    """Publish a proposal (coordinator of its district): ``{"effective_at": ISO datetime
    (default now), "override_reason": "<OverrideReason>"}``. 409 names the agencies that
    objected or have yet to answer, unless an override reason is given (then recorded with
    them in sop.published). Routing applies it to new cases from ``effective_at``."""
    body = _json_body(PublishRequest, await request.body())
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            published, proposal = await proposals.publish(
                conn,
                sops,
                proposal_id,
                _actor(principal),
                clock,
                effective_at=body.effective_at,
                override=body.override_reason,
                districts=principal.district_filter,
            )
    except proposals.ProposalNotFound as exc:
        raise HTTPException(404, no_proposal) from exc
    except proposals.BadEffectiveDate as exc:
        raise HTTPException(422, [{"field": "effective_at", "problem": str(exc)}]) from exc
    except proposals.NotAgreed as exc:
        return JSONResponse(  # type: ignore[return-value]
            NotAgreedView(
                detail=str(exc),
                objected=[
                    ObjectionView(agency_id=a, reason=ObjectionReason(r))
                    for a, r in exc.standing.objected
                ],
                awaiting=exc.standing.awaiting,
            ).model_dump(mode="json"),
            409,
        )
    except (proposals.ProposalClosed, SopConflict) as exc:
        raise HTTPException(409, str(exc)) from exc
    runtime.wake_relay()
    assert published.effective_at is not None
    standing = standing_of(proposal)
    return ProposalPublished(
        proposal=_proposal_view(proposal),
        sop_id=published.sop.sop_id,
        district_code=published.sop.district_code,
        version=published.sop.version,
        sha256=published.sha256,
        published_at=published.published_at,
        effective_at=published.effective_at,
        override_reason=body.override_reason if standing.not_agreed else None,
        agencies_not_agreed=standing.not_agreed,
    )


@router.post(
    "/v1/sop-proposals/{proposal_id}/withdraw",
    response_model=ProposalView,
    tags=["sop-proposals"],
    responses=documented(401, 403, 404, 409),
)
async def withdraw_sop_proposal(
    proposal_id: ProposalIdPath,
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    clock: Now,
) -> ProposalView:
    """Withdraw an open proposal (coordinator of its district): nobody is asked any more."""
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            proposal = await proposals.withdraw(
                conn, proposal_id, _actor(principal), clock, districts=principal.district_filter
            )
    except proposals.ProposalNotFound as exc:
        raise HTTPException(404, no_proposal) from exc
    except proposals.ProposalClosed as exc:
        raise HTTPException(409, str(exc)) from exc
    runtime.wake_relay()
    return _proposal_view(proposal)


# --- simulations ---------------------------------------------------------------------------
# A candidate SOP run over a district's past cases beside the SOP in force (routing.simulations):
# POST queues the job, GET polls its progress and, when done, gives what would have changed.

Runner = Annotated[SimulationRunner, from_app_state("simulations")]
SIMULATION_ID_PATTERN = r"^sim-[0-9a-f]{32}$"
MAX_SIMULATED_DAYS = 3660


class SimulationRefused(BaseModel):
    """422: the document (``errors``, each with its line) or the query (``detail`` by field)."""

    detail: str | list[FieldProblem]
    errors: list[str] = Field(default_factory=list, description="Every problem in the document")


class SimulationStarted(BaseModel):
    simulation_id: str
    url: str = Field(description="Poll it: GET this for progress and, when done, the result")
    state: str = Field(description="queued")
    district_code: str
    period_from: datetime
    period_to: datetime


class SimulationView(BaseModel):
    simulation_id: str
    district_code: str
    state: str = Field(description="queued, running, done or failed")
    cases_done: int
    cases_total: int | None = Field(description="Known once it runs")
    base: dict[str, Any] = Field(description="The SOP in force it is compared with")
    candidate: dict[str, Any]
    period: dict[str, datetime] = Field(description="from (inclusive), to (exclusive)")
    requested_by: str = Field(description="Role and token id")
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure: str | None = Field(description="Why it failed (state failed)")
    diff: dict[str, Any] = Field(description="Rule by rule, the SOP in force -> the candidate")
    result: dict[str, Any] | None = Field(description="What would have changed (state done)")


def simulated_period(
    days: int | None, start: date | None, end: date | None, now: datetime, zone: str
) -> simulations.Period:
    """The period asked for: ``from`` and ``to`` (days in the stats time zone), else the last
    ``days`` days (default 90); a clear 422 for anything else."""

    def refuse(field: str, problem: str) -> HTTPException:
        return HTTPException(422, [{"field": f"query.{field}", "problem": problem}])

    if start is None and end is None:
        return last_days(days or DEFAULT_DAYS, now)
    if start is None or end is None:
        raise refuse("from" if start is None else "to", "give both 'from' and 'to', or neither")
    if days is not None:
        raise refuse("days", "give 'days' or 'from' and 'to', not both")
    for name, day in (("from", start), ("to", end)):
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise refuse(name, f"must be between {EARLIEST_DAY} and {LATEST_DAY}")
    if end < start:
        raise refuse("to", "'to' must not be before 'from'")
    if (end - start).days >= MAX_SIMULATED_DAYS:
        raise refuse("to", f"at most {MAX_SIMULATED_DAYS} days")
    return simulations.Period(*period_bounds(start, end, zone))


@router.post(
    "/v1/sops/simulations",
    status_code=202,
    response_model=SimulationStarted,
    tags=["sops"],
    responses={**documented(400, 401, 403, 409, 413, 415), 422: {"model": SimulationRefused}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        }
    },
    summary="Simulate a candidate SOP over the district's past cases (coordinator)",
)
async def start_simulation(
    request: Request,
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    sops: Sops,
    clock: Now,
    settings: Settings,
    runner: Runner,
    days: Annotated[
        int | None, Query(ge=1, le=MAX_SIMULATED_DAYS, description="The last N days (default 90)")
    ] = None,
    start: Annotated[date | None, Query(alias="from", description="First day, YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day, YYYY-MM-DD")] = None,
) -> JSONResponse:
    """The candidate SOP (YAML body, as for POST /v1/sops) and the one in force for its
    district, over the triage facts of the district's cases reported in the period: 202 with
    the simulation's id and URL to poll. 422 lists every error of the document with its
    line; 403 for a district the token does not serve; 409 when no SOP is in force there."""
    period = simulated_period(days, start, end, clock(), settings.stats_timezone)
    text = await _yaml_body(request)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            simulation_id = await simulations.start_simulation(
                conn, sops, text, period, _actor(principal),
                districts=principal.district_filter, clock=clock,
            )  # fmt: skip
            job = await store.get_simulation(conn, simulation_id, None)
    except SopNotServed as exc:
        raise HTTPException(403, _not_served(exc.district_code)) from exc
    except SopError as exc:
        return JSONResponse(
            {"detail": "SOP refused", "errors": [str(issue) for issue in exc.issues]}, 422
        )
    except simulations.NothingToCompare as exc:
        raise HTTPException(409, str(exc)) from exc
    runner.wake()
    assert job is not None  # stored just now, in this transaction
    url = f"/v1/sops/simulations/{simulation_id}"
    started = SimulationStarted(
        simulation_id=simulation_id,
        url=url,
        state="queued",
        district_code=job.district_code,
        period_from=period.start,
        period_to=period.end,
    )
    return JSONResponse(started.model_dump(mode="json"), 202, headers={"Location": url})


@router.get(
    "/v1/sops/simulations/{simulation_id}",
    response_model=SimulationView,
    tags=["sops"],
    responses=documented(401, 403, 404),
    summary="A simulation's progress and, when done, its diff and result (coordinator)",
)
async def simulation(
    simulation_id: Annotated[str, Path(pattern=SIMULATION_ID_PATTERN)],
    principal: Annotated[Principal, coordinator],
    runtime: Runtime,
    clock: Now,
) -> SimulationView:
    """State (queued, running, done, failed), cases done of the total, the rule-by-rule diff;
    when done, what would have changed. A simulation of a district the token does not serve
    answers 404, as for none."""
    async with runtime.pool.acquire() as conn:
        job = await simulations.simulation_status(
            conn, simulation_id, principal.district_filter, clock=clock
        )
    if job is None:
        raise HTTPException(404, f"simulasi tidak ada / no simulation {simulation_id}")
    return SimulationView.model_validate(simulations.view(job))


# --- the rakor's monitoring page ------------------------------------------------------------


async def monitoring_figures(
    principal: Annotated[Principal, coordinator],
    start: From,
    end: To,
    runtime: Runtime,
    clock: Now,
    settings: Settings,
    asked: Districts = None,
) -> Monitoring:
    if end < start:
        raise HTTPException(
            422, [{"field": "query.to", "problem": "'to' must not be before 'from'"}]
        )
    districts = _districts_counted(principal, asked)
    zone = settings.stats_timezone
    since, until = _period_bounds(start, end, zone)
    now = clock()
    rows = await store.monitoring_rows_shared(
        runtime.pool,
        start=since,
        end=until,
        now=now,
        districts=districts,
        function_of_service={s.value: f.value for s, f in SERVICE_FUNCTIONS.items()},
        not_a_complaint=NOT_A_COMPLAINT,
        zone=zone,
    )
    period = {"from": start, "to": end, "timezone": zone, "districts": districts}
    return monitoring_of(rows, Period.model_validate(period), now)


MonitoringFigures = Annotated[Monitoring, Depends(monitoring_figures)]


@router.get(
    "/v1/monitoring",
    response_model=Monitoring,
    responses=documented(401, 403),
    tags=["console"],
    summary="The rakor's figures: per agency, and cases per service function (coordinator)",
)
async def monitoring(figures: MonitoringFigures) -> Monitoring:
    """For referrals made in the period, per agency and for all together: time to the first
    answer (p50, p90, minutes) against the referrals' own deadlines, the share answered within
    them, deadlines missed, hand-ons by reason, declines by reason; and the cases reported in
    it per service function of Permen PPPA 2/2022 (docs/routing.md says how each is counted).
    Days in ``ROUTING_STATS_TIMEZONE``; ``district`` as for /v1/stats (403 for one not served)."""
    return figures


@router.get(
    "/v1/monitoring.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **documented(401, 403)},
    tags=["console"],
    summary="The same figures as CSV: section,key,subkey,metric,value (coordinator)",
)
async def monitoring_csv(figures: MonitoringFigures) -> Response:
    period = figures.period
    where = "-".join(period.districts) if period.districts else "all"
    return Response(
        render_monitoring_csv(figures),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": "attachment; "
            f'filename="rujuk-monitoring-{where}-{period.from_}-{period.to}.csv"'
        },
    )
