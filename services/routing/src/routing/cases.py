"""Cases: routing a reported case by the SOP in force (its referrals, their deadlines and the
events announcing them, in one transaction), or keeping it as unrouted when routing cannot;
routing an unrouted case again by hand; closing a case whose referrals are settled."""

from dataclasses import dataclass
from datetime import timedelta

from routing import picks, store
from routing.clock import Clock
from routing.decide import Decision, decide
from routing.events import case_closed, routing_events
from routing.lifecycle import StoredReferral, UnroutedCase, UnroutedReason
from routing.sops import SopsInForce, Unroutable
from rujuk_contracts.events import CaseReported, CloseReason
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

PICK_TIMEOUT = timedelta(seconds=5)  # ROUTING_VILLAGE_PICK_TIMEOUT_SECONDS


class CaseNotFound(Exception):
    pass


class CaseHasOpenReferrals(Exception):
    def __init__(self, case_id: str, open_referrals: list[StoredReferral]) -> None:
        names = ", ".join(
            f"{r.referral_id} ({r.agency_id}, {r.state.value})" for r in open_referrals
        )
        super().__init__(f"case {case_id} has open referrals: {names}")
        self.open_referrals = open_referrals


async def route_case(
    conn: Connection,
    sops: SopsInForce,
    reported: CaseReported,
    *,
    clock: Clock,
    minute: timedelta,
    by_report_time: bool = False,
    pick_timeout: timedelta = PICK_TIMEOUT,
) -> Decision:
    """Apply the SOP in force, store the case with its referrals and deadlines, and stage
    CaseRouted and the referral requests. Rejected if the case was routed before; Unroutable
    (before anything is written) when there is no usable SOP or the decision fails.

    ``by_report_time``: the SOP in force when the case was reported, whenever routing takes
    it (a backlog after an outage, replicas whose clocks differ: a version applies to the
    cases reported from its effective date on); else the one in force now (routing by hand
    a case no SOP could route when it came)."""
    at = reported.reported_at if by_report_time else None
    sop = await sops.sop_in_force(conn, reported.triage.district, at)
    now = clock()
    traceparent = current_traceparent()
    try:
        decision = decide(sop, reported.case_id, reported.triage, now, minute=minute)
        # The events are built (validated) here, before anything is written: one that cannot
        # be made is a failed decision (the case unrouted), not a report retried and parked.
        events = routing_events(decision, now, traceparent)
        # The desa decides these: asked of intake now, referred when it answers (or at the bound).
        questions = picks.questions(decision, now=now, bound=pick_timeout, traceparent=traceparent)
    except Exception as exc:  # pure code: trying again would fail the same way
        log.exception("decision failed", case_id=reported.case_id, sop_id=sop.sop_id)
        raise Unroutable(
            UnroutedReason.DECISION_FAILED,
            f"keputusan gagal / the decision failed under {sop.label}: {type(exc).__name__}: {exc}"[
                :500
            ],
        ) from exc
    stored = await store.add_case(
        conn,
        decision,
        district_code=sop.district_code,
        reported_at=reported.reported_at,
        routed_at=now,
        violence_types=[v.value for v in reported.triage.violence_types],
        triage=reported.triage,
        channel=reported.channel.value,
    )
    if not stored:
        raise Rejected(f"case {reported.case_id} was routed before")
    await add_to_outbox(conn, *events)
    await picks.ask(conn, decision, questions)
    return decision


async def take_reported_case(
    conn: Connection,
    sops: SopsInForce,
    reported: CaseReported,
    *,
    clock: Clock,
    minute: timedelta,
    by_report_time: bool = True,
    pick_timeout: timedelta = PICK_TIMEOUT,
) -> Decision | Unroutable:
    """Route a reported case or, when routing cannot, keep it as unrouted (listed for the
    coordinator, counted in rujuk_cases_unrouted) and say why: a report is never dropped.
    ``by_report_time``: see ``route_case``."""
    try:
        return await route_case(
            conn,
            sops,
            reported,
            clock=clock,
            minute=minute,
            by_report_time=by_report_time,
            pick_timeout=pick_timeout,
        )
    except Unroutable as unroutable:
        if await store.routed_case_district(conn, reported.case_id) is not None:
            raise Rejected(f"case {reported.case_id} was routed before") from unroutable
        await store.record_unrouted(
            conn,
            case_id=reported.case_id,
            district_code=reported.triage.district,
            reason=unroutable.unrouted_reason.value,
            detail=unroutable.reason,
            reported=reported.model_dump_json(),
            reported_at=reported.reported_at,
            at=clock(),
        )
        log.warning(
            "case unrouted",
            case_id=reported.case_id,
            district=reported.triage.district,
            reason=unroutable.unrouted_reason.value,
        )
        return unroutable


@dataclass(frozen=True)
class RoutedByHand:
    """What routing an unrouted case again came to: its decision, or why it is still
    unrouted (``still``), or that it had been routed already."""

    case_id: str
    decision: Decision | None = None
    still: Unroutable | None = None
    already_routed: bool = False


class CaseClosedAlready(Exception):
    pass


async def route_by_hand(
    conn: Connection,
    sops: SopsInForce,
    unrouted: UnroutedCase,
    routed_by: str,
    *,
    clock: Clock,
    minute: timedelta,
    pick_timeout: timedelta = PICK_TIMEOUT,
) -> RoutedByHand:
    """Route an unrouted case (locked by the caller) with the SOP in force now. Still
    unroutable: the attempt is counted and the new reason kept. Closed: CaseClosedAlready."""
    case_id = unrouted.case_id
    if unrouted.resolution == "closed":
        raise CaseClosedAlready(case_id)
    if unrouted.resolution == "routed":
        return RoutedByHand(case_id, already_routed=True)
    if await store.routed_case_district(conn, case_id) is not None:  # reported again, routed
        await store.resolve_unrouted(conn, case_id, resolution="routed", by=routed_by, at=clock())
        return RoutedByHand(case_id, already_routed=True)
    reported = CaseReported.model_validate(unrouted.reported)
    outcome = await take_reported_case(
        conn,
        sops,
        reported,
        clock=clock,
        minute=minute,
        by_report_time=False,
        pick_timeout=pick_timeout,
    )
    if isinstance(outcome, Unroutable):
        return RoutedByHand(case_id, still=outcome)
    await store.resolve_unrouted(conn, case_id, resolution="routed", by=routed_by, at=clock())
    log.info("case routed by hand", case_id=case_id, routed_by=routed_by)
    return RoutedByHand(case_id, decision=outcome)


async def close_case(
    conn: Connection,
    case_id: str,
    closed_by: str,
    reason: CloseReason,
    *,
    note_ref: str | None = None,
    clock: Clock,
    districts: list[str] | None,
) -> bool:
    """Close a case whose referrals are all settled; False if it was closed already.
    CaseNotFound also for a case outside ``districts`` (None: every district), before its
    referrals are looked at: whether it has open ones is not told either. The coordinator's
    own words, if any, are a note at intake that ``note_ref`` names."""
    case = await store.lock_case(conn, case_id, districts)
    if case is None:
        return await _close_unrouted(
            conn, case_id, closed_by, reason, note_ref=note_ref, clock=clock, districts=districts
        )
    if case.closed_at is not None:
        return False
    still_open = case.open_referrals()
    if still_open:
        raise CaseHasOpenReferrals(case_id, still_open)
    now = clock()
    await store.close_case(conn, case_id, closed_at=now, closed_by=closed_by, reason=reason)
    closed = case_closed(case_id, closed_by, reason, note_ref, now, current_traceparent())
    await add_to_outbox(conn, closed)
    log.info("case closed", case_id=case_id, closed_by=closed_by)
    return True


async def _close_unrouted(
    conn: Connection,
    case_id: str,
    closed_by: str,
    reason: CloseReason,
    *,
    note_ref: str | None,
    clock: Clock,
    districts: list[str] | None,
) -> bool:
    """Close a case routing could not route (it has no referrals): it leaves the list.
    CaseNotFound for one outside ``districts``, and for one routed since (it is a routed
    case, which the caller did not find in its districts)."""
    unrouted = await store.lock_unrouted(conn, case_id)
    if (
        unrouted is None
        or unrouted.resolution == "routed"
        or (districts is not None and unrouted.district_code not in districts)
    ):
        raise CaseNotFound(case_id)
    if unrouted.resolution == "closed":
        return False
    now = clock()
    await store.resolve_unrouted(conn, case_id, resolution="closed", by=closed_by, at=now)
    closed = case_closed(case_id, closed_by, reason, note_ref, now, current_traceparent())
    await add_to_outbox(conn, closed)
    log.info("unrouted case closed", case_id=case_id, closed_by=closed_by, reason=reason.value)
    return True
