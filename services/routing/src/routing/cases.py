"""Cases: routing a reported case by the SOP in force (its referrals, their deadlines and the
events announcing them, in one transaction), and closing a case whose referrals are settled."""

from datetime import timedelta

from routing import store
from routing.clock import Clock
from routing.decide import Decision, decide
from routing.events import case_closed, routing_events
from routing.lifecycle import StoredReferral
from routing.sops import SopsInForce
from rujuk_contracts.events import CaseReported, CloseReason
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)


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
) -> Decision:
    """Apply the SOP in force, store the case with its referrals and deadlines, and stage
    CaseRouted and the referral requests. Rejected if the case was routed before."""
    sop = await sops.sop_in_force(conn, reported.triage.district)
    now = clock()
    decision = decide(sop, reported.case_id, reported.triage, now, minute=minute)
    stored = await store.add_case(
        conn,
        decision,
        district_code=sop.district_code,
        reported_at=reported.reported_at,
        routed_at=now,
        violence_types=[v.value for v in reported.triage.violence_types],
    )
    if not stored:
        raise Rejected(f"case {reported.case_id} was routed before")
    await add_to_outbox(conn, *routing_events(decision, now, current_traceparent()))
    return decision


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
        raise CaseNotFound(case_id)
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
