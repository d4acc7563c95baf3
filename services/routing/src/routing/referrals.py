"""Referrals after they were made: notify's delivery reports, the partners' replies, escalation
along each referral's own stored chain, and a deadline that passed. Each moves a locked
referral by the transition table (``routing.lifecycle``) and stages the events that follow."""

from dataclasses import replace

from prometheus_client import Histogram

from routing import oncall, store
from routing.clock import Clock
from routing.events import escalation_events, reply_refused
from routing.lifecycle import (
    AWAITING_ACKNOWLEDGEMENT,
    EscalationStep,
    IllegalTransition,
    ReferralEvent,
    ReferralState,
    StoredReferral,
    next_escalation,
    next_state,
)
from rujuk_contracts import CloudEvent
from rujuk_contracts.events import (
    EscalationReason,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReplyKind,
    district_of,
)
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger, logging_about
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

PartnerReply = ReferralAcknowledged | ReferralAccepted | ReferralDeclined | ReferralCompleted

REPLY_KINDS: dict[type[EventPayload], tuple[ReplyKind, ReferralEvent]] = {
    ReferralAcknowledged: (ReplyKind.ACKNOWLEDGE, ReferralEvent.ACKNOWLEDGED),
    ReferralAccepted: (ReplyKind.ACCEPT, ReferralEvent.ACCEPTED),
    ReferralDeclined: (ReplyKind.DECLINE, ReferralEvent.DECLINED),
    ReferralCompleted: (ReplyKind.COMPLETE, ReferralEvent.COMPLETED),
}

FIRST_ANSWER_SECONDS = Histogram(
    "rujuk_referral_first_answer_seconds",
    "Time from a referral's request to its agency's first answer (acknowledged, accepted or "
    "declined), by district and priority",
    ["district", "priority"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200),
)


# --- delivery reports (from notify) -------------------------------------------------------


async def record_deliveries(
    conn: Connection, reports: list[tuple[CloudEvent, ReferralDelivered]]
) -> None:
    """A run of delivery reports: their referrals locked with one statement and moved with
    one more. Any report refused aborts the run; the consumer then takes the reports one
    by one, so that only the refused one is parked."""
    referrals = await store.lock_referrals(conn, [report.referral_id for _, report in reports])
    moves: dict[str, tuple[str, ReferralState, int, str | None]] = {}
    for event, report in reports:
        referral = _reported_referral(referrals.get(report.referral_id), report)
        state = _next(referral, ReferralEvent.DELIVERED)
        with logging_about(event.subject, event.id, event.traceparent):
            _log_state(referral, ReferralEvent.DELIVERED, state)
        earlier = moves.get(referral.referral_id)  # the same referral twice in a run
        attempts = max(report.attempts, earlier[2]) if earlier else report.attempts
        moves[referral.referral_id] = (referral.referral_id, state, attempts, None)
        referrals[referral.referral_id] = replace(referral, state=state)
    await store.record_deliveries(conn, list(moves.values()))


async def record_delivery_failure(
    conn: Connection, failed: ReferralDeliveryFailed, *, clock: Clock
) -> None:
    """A failed delivery; when notify gave up, the next agency of the chain takes it."""
    happened = ReferralEvent.DELIVERY_FAILED
    referral = _reported_referral(await store.lock_referral(conn, failed.referral_id), failed)
    state = _next(referral, happened)
    await store.record_delivery(
        conn, referral.referral_id, state, attempts=failed.attempts, failure=failed.reason
    )
    _log_state(referral, happened, state)
    if state == ReferralState.DELIVERY_FAILED:  # notify gave up: the next agency takes it
        await escalate(conn, referral, EscalationReason.DELIVERY_FAILED, clock=clock)


# --- partner replies (notify republishes them) --------------------------------------------


async def record_reply(
    conn: Connection, event: CloudEvent, reply: PartnerReply, *, clock: Clock
) -> None:
    """Move the referral by the table; a reply it does not allow changes nothing and is
    answered with ReferralReplyRefused (a business refusal, not a broken message)."""
    kind, happened = REPLY_KINDS[type(reply)]
    referral = await store.lock_referral(conn, reply.referral_id)
    refusal: str | None = None
    state = ReferralState.REQUESTED
    if referral is None:
        refusal = f"unknown referral {reply.referral_id}"
    elif referral.case_id != reply.case_id:
        refusal = f"referral {reply.referral_id} is not part of case {reply.case_id}"
    elif referral.agency_id != reply.agency_id:
        refusal = f"referral {reply.referral_id} is not held by {reply.agency_id}"
    else:
        try:
            state = next_state(referral.referral_id, referral.state, happened)
        except IllegalTransition as exc:
            refusal = str(exc)
    if refusal is not None or referral is None:
        await _refuse(conn, event, reply, kind, refusal or "unknown referral", clock=clock)
        return
    await store.record_reply(
        conn,
        referral.referral_id,
        state,
        happened.value,
        event.time,
        decline_reason=reply.reason.value if isinstance(reply, ReferralDeclined) else None,
    )
    _log_state(referral, happened, state)
    if referral.state in AWAITING_ACKNOWLEDGEMENT and state not in AWAITING_ACKNOWLEDGEMENT:
        requested_at = referral.acknowledgement_deadline - referral.acknowledge_within
        FIRST_ANSWER_SECONDS.labels(district_of(referral.case_id), referral.priority.value).observe(
            max(0.0, (event.time - requested_at).total_seconds())
        )
    if state == ReferralState.DECLINED:
        await escalate(conn, referral, EscalationReason.DECLINED, clock=clock)


async def _refuse(
    conn: Connection,
    event: CloudEvent,
    reply: PartnerReply,
    kind: ReplyKind,
    reason: str,
    *,
    clock: Clock,
) -> None:
    await add_to_outbox(
        conn,
        reply_refused(
            event.id,
            case_id=reply.case_id,
            referral_id=reply.referral_id,
            agency_id=reply.agency_id,
            reply=kind,
            reason=reason,
            now=clock(),
            traceparent=event.traceparent or current_traceparent(),
        ),
    )
    log.warning(
        "partner reply refused",
        case_id=reply.case_id,
        referral_id=reply.referral_id,
        agency_id=reply.agency_id,
        reply=kind.value,
        event_id=event.id,
        reason=reason,
    )


# --- escalation ---------------------------------------------------------------------------


async def escalate(
    conn: Connection, referral: StoredReferral, reason: EscalationReason, *, clock: Clock
) -> EscalationStep | None:
    """Hand a locked referral on to the next agency of its own stored chain.

    Stages ReferralEscalated and a ReferralRequested for the new referral, with ids derived
    from the new referral's id. None at the end of the chain: the referral stays as it is and
    an on-call alert opens (``routing.oncall``), its first round paged at once.
    """
    busy = await store.agencies_holding(conn, referral.case_id, referral.service)
    step = next_escalation(
        referral.root_referral_id,
        referral.escalation_step,
        referral.escalation_chain,
        busy - {referral.agency_id},
    )
    if step is None:  # the coordinator did not take it either: page the on-call list
        await oncall.open_alert(conn, referral, reason, clock())
        return None
    next_state(referral.referral_id, referral.state, ReferralEvent.ESCALATED)  # or raise
    now = clock()
    deadline = now + referral.acknowledge_within
    if not await store.add_escalated_referral(
        conn, referral, step, deadline, reason.value, created_at=now
    ):
        return None  # made before: its events were staged then
    await store.mark_escalated(conn, referral.referral_id, now)
    await add_to_outbox(
        conn, *escalation_events(referral, step, reason, deadline, now, current_traceparent())
    )
    log.info(
        "referral escalated",
        case_id=referral.case_id,
        referral_id=referral.referral_id,
        new_referral_id=step.referral_id,
        from_agency_id=referral.agency_id,
        to_agency_id=step.agency_id,
        reason=reason.value,
        step=step.step,
    )
    return step


async def fire_deadline(conn: Connection, referral: StoredReferral, *, clock: Clock) -> str:
    """A claimed deadline passed: escalate if still unacknowledged. Returns the outcome."""
    if referral.state not in AWAITING_ACKNOWLEDGEMENT:
        return "met"
    step = await escalate(conn, referral, EscalationReason.DEADLINE_MISSED, clock=clock)
    return "escalated" if step is not None else "chain_exhausted"


# --- helpers ------------------------------------------------------------------------------


def _reported_referral(
    referral: StoredReferral | None, report: ReferralDelivered | ReferralDeliveryFailed
) -> StoredReferral:
    """The referral a delivery report is about, if the report names it rightly."""
    if referral is None:
        raise Rejected(f"unknown referral {report.referral_id}")
    if referral.case_id != report.case_id:
        raise Rejected(
            f"referral {referral.referral_id} belongs to case {referral.case_id}, "
            f"not {report.case_id}"
        )
    if referral.agency_id != report.agency_id:
        raise Rejected(
            f"referral {referral.referral_id} was made to {referral.agency_id}, "
            f"not {report.agency_id}"
        )
    return referral


def _next(referral: StoredReferral, happened: ReferralEvent) -> ReferralState:
    try:
        return next_state(referral.referral_id, referral.state, happened)
    except IllegalTransition as exc:
        raise Rejected(str(exc)) from exc


def _log_state(referral: StoredReferral, happened: ReferralEvent, state: ReferralState) -> None:
    # DEBUG: one line per referral per step, the same facts the audit ledger keeps (and
    # the rujuk_open_referrals gauge counts); a case's routing and every failure stay at INFO.
    log.debug(
        "referral state",
        case_id=referral.case_id,
        referral_id=referral.referral_id,
        agency_id=referral.agency_id,
        referral_event=happened.value,
        previous=referral.state.value,
        state=state.value,
    )
