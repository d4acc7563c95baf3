"""The events routing publishes, built from what it decided: envelopes with deterministic ids
(derived from what they announce, so a re-run stages the same Nats-Msg-Id) and routing's
source. No I/O: the caller gives the time and the traceparent, and stages the events."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from routing.decide import Decision, PendingPick, ReferralDecision
from routing.lifecycle import EscalationStep, StoredPick, StoredReferral
from routing.paging import OnCallAlert, PagePlan, Round
from routing.sop import Sop
from routing.sop.duties import AgencyDutyChanges
from routing.sop.signoff import StoredAnswer, StoredProposal
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import (
    AnswerVia,
    AskedAgency,
    CaseClosed,
    CaseRouted,
    CaseVillageAgencyAsked,
    CloseReason,
    EscalationReason,
    EventPayload,
    ObjectionReason,
    OnCallAcknowledged,
    OnCallAckVia,
    OnCallPaged,
    OverrideReason,
    PickedBy,
    ReferralEscalated,
    ReferralReplyRefused,
    ReferralRequested,
    ReferralSummary,
    ReplyKind,
    SopAnswerGiven,
    SopAnswerRefusal,
    SopAnswerRefused,
    SopInForce,
    SopObjected,
    SopOrigin,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
    SopSignedOff,
    VillageCandidate,
    WithheldReferral,
)

SOURCE = "/rujuk/routing"
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rujuk:routing")


def event_id(key: str) -> str:
    """A deterministic event id, e.g. ``event_id(f"{referral_id}:requested")``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, key))


def routing_event(
    payload: EventPayload, key: str, now: datetime, traceparent: str | None
) -> CloudEvent:
    """One of routing's events, its id derived from ``key``."""
    return make_event(
        payload, source=SOURCE, traceparent=traceparent, event_id=event_id(key), time=now
    )


# --- a case routed ------------------------------------------------------------------------


def routing_events(decision: Decision, now: datetime, traceparent: str | None) -> list[CloudEvent]:
    """One CaseRouted, then one ReferralRequested per referral, with deterministic ids."""
    routed = routing_event(case_routed(decision), f"{decision.case_id}:routed", now, traceparent)
    requested = [
        routing_event(
            referral_requested(decision.case_id, decision.sop_id, decision.sop_version, referral),
            f"{referral.referral_id}:requested",
            now,
            traceparent,
        )
        for referral in decision.referrals
    ]
    return [routed, *requested]


def case_routed(decision: Decision) -> CaseRouted:
    return CaseRouted(
        case_id=decision.case_id,
        sop_id=decision.sop_id,
        sop_version=decision.sop_version,
        rules_fired=list(decision.rules_fired),
        referrals=[
            ReferralSummary(
                referral_id=referral.referral_id,
                service=referral.service,
                agency_id=referral.agency_id,
                priority=referral.priority,
                acknowledgement_deadline=referral.acknowledgement_deadline,
                consent_override=referral.consent_override,
            )
            for referral in decision.referrals
        ],
        withheld=[
            WithheldReferral(
                service=withheld.service,
                agency_id=withheld.agency_id,
                rule_ids=list(withheld.rule_ids),
                reason=withheld.reason[:200],
            )
            for withheld in decision.withheld
        ],
    )


def referral_requested(
    case_id: str,
    sop_id: str,
    sop_version: int,
    referral: ReferralDecision,
    picked_by: PickedBy | None = None,
) -> ReferralRequested:
    """A referral a decision (or a pick by village it left, ``picked_by`` saying how) makes,
    under that SOP version."""
    return ReferralRequested(
        case_id=case_id,
        referral_id=referral.referral_id,
        agency_id=referral.agency_id,
        service=referral.service,
        priority=referral.priority,
        acknowledgement_deadline=referral.acknowledgement_deadline,
        escalation_chain=list(referral.escalation_chain),
        sop_id=sop_id,
        sop_version=sop_version,
        rule_ids=list(referral.rule_ids),
        consent_override=referral.consent_override,
        picked_by=picked_by,
    )


# --- a referral whose agency the case's desa decides ------------------------------------


def routed_event_id(case_id: str) -> str:
    """The id of the case's ``case.routed``: the decision's event."""
    return event_id(f"{case_id}:routed")


def village_question_id(case_id: str, pick: PendingPick) -> str:
    """From the decision's event id and the service: routing the case again (a replay, a
    redelivery) asks the same question, which is answered once."""
    key = f"{routed_event_id(case_id)}:village:{pick.service.value}"
    return f"vq-{uuid.uuid5(EVENT_ID_NAMESPACE, key).hex}"


def village_agency_asked(
    case_id: str,
    question_id: str,
    pick: PendingPick,
    now: datetime,
    traceparent: str | None,
    *,
    answer_by: datetime,
) -> CloudEvent:
    """``answer_by``: the pick's due time; intake does not answer after it (a late answer
    would tell the ledger which desa-level agency lists the case's desa, for nothing)."""
    asked = CaseVillageAgencyAsked(
        case_id=case_id,
        question_id=question_id,
        service=pick.service,
        candidates=[
            VillageCandidate(agency_id=c.agency_id, villages=list(c.villages))
            for c in pick.candidates
        ],
        answer_by=answer_by,
    )
    return routing_event(asked, f"{question_id}:asked", now, traceparent)


def picked_referral_requested(
    pick: StoredPick,
    referral: ReferralDecision,
    picked_by: PickedBy,
    now: datetime,
    traceparent: str | None,
) -> CloudEvent:
    """The referral a resolved pick becomes, saying how its agency was picked; its id derives
    from the referral id, as every decision's do."""
    requested = referral_requested(pick.case_id, pick.sop_id, pick.sop_version, referral, picked_by)
    return routing_event(requested, f"{referral.referral_id}:requested", now, traceparent)


# --- a referral handed on -----------------------------------------------------------------


def escalation_events(
    referral: StoredReferral,
    step: EscalationStep,
    reason: EscalationReason,
    deadline: datetime,
    now: datetime,
    traceparent: str | None,
) -> list[CloudEvent]:
    """ReferralEscalated, then the ReferralRequested of the referral that takes over; their
    ids derive from the new referral's id."""
    escalated = ReferralEscalated(
        case_id=referral.case_id,
        referral_id=referral.referral_id,
        from_agency_id=referral.agency_id,
        to_agency_id=step.agency_id,
        reason=reason,
        step=step.step,
    )
    requested = ReferralRequested(
        case_id=referral.case_id,
        referral_id=step.referral_id,
        agency_id=step.agency_id,
        service=referral.service,
        priority=referral.priority,
        acknowledgement_deadline=deadline,
        escalation_chain=list(step.chain),
        sop_id=referral.sop_id,
        sop_version=referral.sop_version,
        rule_ids=list(referral.rule_ids),
        consent_override=referral.consent_override,
    )
    return [
        routing_event(payload, f"{step.referral_id}:{kind}", now, traceparent)
        for payload, kind in ((escalated, "escalated"), (requested, "requested"))
    ]


def reply_refused(
    refused_event_id: str,
    *,
    case_id: str,
    referral_id: str,
    agency_id: str,
    reply: ReplyKind,
    reason: str,
    now: datetime,
    traceparent: str | None,
) -> CloudEvent:
    """ReferralReplyRefused for the partner reply ``refused_event_id``."""
    refused = ReferralReplyRefused(
        case_id=case_id,
        referral_id=referral_id,
        agency_id=agency_id,
        reply=reply,
        reason=reason[:300],
    )
    return routing_event(refused, f"{refused_event_id}:refused", now, traceparent)


# --- a case closed, an SOP published or in force ------------------------------------------


def case_closed(
    case_id: str,
    closed_by: str,
    reason: CloseReason,
    note_ref: str | None,
    now: datetime,
    traceparent: str | None,
) -> CloudEvent:
    closed = CaseClosed(case_id=case_id, closed_by=closed_by, reason=reason, note_ref=note_ref)
    return routing_event(closed, f"{case_id}:closed", now, traceparent)


def sop_published(
    sop: Sop,
    sha256: str,
    published_by: str,
    now: datetime,
    traceparent: str | None,
    *,
    effective_at: datetime | None = None,
    proposal_id: str | None = None,
    override_reason: OverrideReason | None = None,
    agencies_not_agreed: Sequence[str] = (),
) -> CloudEvent:
    published = SopPublished(
        sop_id=sop.sop_id,
        district_code=sop.district_code,
        sop_version=sop.version,
        sha256=sha256,
        published_by=published_by,
        proposal_id=proposal_id,
        effective_at=effective_at,
        override_reason=override_reason,
        agencies_not_agreed=list(agencies_not_agreed),
    )
    key = f"sop:{sop.district_code}:{sop.version}:{sha256}"
    return routing_event(published, key, now, traceparent)


def sop_in_force(
    sop: Sop, sha256: str, origin: SopOrigin, now: datetime, traceparent: str | None
) -> CloudEvent:
    """The SOP routing applies to the district's new cases, with its directory's agencies; one
    id per document, however often it is announced."""
    in_force = SopInForce(
        sop_id=sop.sop_id,
        district_code=sop.district_code,
        sop_version=sop.version,
        sha256=sha256,
        origin=origin,
        agency_ids=sorted({agency.id for agency in sop.directory}),
        vault_days_after_close=sop.retention.vault_days_after_close if sop.retention else None,
    )
    key = f"sop-in-force:{sop.district_code}:{sop.sop_id}:{sop.version}:{sha256}"
    return routing_event(in_force, key, now, traceparent)


# --- on call past the coordinator ---------------------------------------------------------


def oncall_paged(
    alert: OnCallAlert, plan: PagePlan, round_: Round, now: datetime, traceparent: str | None
) -> CloudEvent:
    """One round of pages; its id derives from the alert and the round, so a round is paged
    once whatever restarts or replicas."""
    paged = OnCallPaged(
        case_id=alert.case_id,
        alert_id=alert.alert_id,
        referral_id=alert.referral_id,
        agency_id=alert.agency_id,
        priority=alert.priority,
        reason=alert.reason,
        round=round_.number,
        rounds=plan.rounds,
        next_round_at=round_.next_at,
        contacts=list(plan.contacts),
        sop_id=plan.sop_id,
        sop_version=plan.sop_version,
    )
    return routing_event(paged, f"{alert.alert_id}:paged:{round_.number}", now, traceparent)


def oncall_acknowledged(
    alert: OnCallAlert, by: str, now: datetime, traceparent: str | None
) -> CloudEvent:
    """An acknowledgement in the console (a reply comes from notify)."""
    acknowledged = OnCallAcknowledged(
        case_id=alert.case_id, alert_id=alert.alert_id, via=OnCallAckVia.CONSOLE, by=by
    )
    key = f"{alert.alert_id}:acknowledged:console:{by}"
    return routing_event(acknowledged, key, now, traceparent)


# --- SOP proposals ------------------------------------------------------------------------


def sop_proposed(
    proposal: StoredProposal,
    asked: Sequence[AgencyDutyChanges],
    now: datetime,
    traceparent: str | None,
) -> CloudEvent:
    proposed = SopProposed(
        proposal_id=proposal.proposal_id,
        sop_id=proposal.sop_id,
        district_code=proposal.district_code,
        sop_version=proposal.version,
        sha256=proposal.sha256,
        base_version=proposal.base_version,
        proposed_by=proposal.proposed_by,
        asked=[AskedAgency(agency_id=a.agency_id, duty_changes=a.codes) for a in asked],
    )
    return routing_event(proposed, f"sop-proposed:{proposal.proposal_id}", now, traceparent)


def sop_answered(
    proposal: StoredProposal, answer: StoredAnswer, key: str, traceparent: str | None
) -> CloudEvent:
    """``sop.signed_off`` or ``sop.objected``; ``key`` tells one answer from another (a
    reply's own event id, or the time it was given)."""
    common = {
        "proposal_id": proposal.proposal_id,
        "sop_id": proposal.sop_id,
        "district_code": proposal.district_code,
        "sop_version": proposal.version,
        "sha256": proposal.sha256,
        "agency_id": answer.agency_id,
        "via": AnswerVia(answer.via),
        "answered_by": answer.answered_by,
    }
    payload: EventPayload
    if answer.decision == "agree":
        payload = SopSignedOff(**common)
    else:
        assert answer.reason is not None
        payload = SopObjected(
            **common, reason=ObjectionReason(answer.reason), note_ref=answer.note_ref
        )
    return routing_event(
        payload,
        f"sop-answer:{proposal.proposal_id}:{answer.agency_id}:{key}",
        answer.answered_at,
        traceparent,
    )


def sop_proposal_withdrawn(
    proposal: StoredProposal,
    by: str,
    now: datetime,
    traceparent: str | None,
    *,
    superseded_by: str | None = None,
) -> CloudEvent:
    withdrawn = SopProposalWithdrawn(
        proposal_id=proposal.proposal_id,
        sop_id=proposal.sop_id,
        district_code=proposal.district_code,
        sop_version=proposal.version,
        withdrawn_by=by,
        superseded_by=superseded_by,
    )
    return routing_event(withdrawn, f"sop-withdrawn:{proposal.proposal_id}", now, traceparent)


def sop_answer_refused(
    answer_event_id: str,
    given: SopAnswerGiven,
    refusal: SopAnswerRefusal,
    reason: str,
    now: datetime,
    traceparent: str | None,
) -> CloudEvent:
    """An answer over NATS routing did not record; one per answer, however often it comes."""
    refused = SopAnswerRefused(
        proposal_id=given.proposal_id,
        sop_id=given.sop_id,
        district_code=given.district_code,
        agency_id=given.agency_id,
        decision=given.decision,
        refusal=refusal,
        reason=reason[:300],
    )
    return routing_event(refused, f"sop-answer-refused:{answer_event_id}", now, traceparent)
