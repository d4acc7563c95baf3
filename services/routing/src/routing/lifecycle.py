"""A referral's states and the transitions between them, as one table; where escalation goes;
a referral and a case as routing keeps them."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from routing.decide import PendingPick
from rujuk_contracts.events import Priority, Service


class ReferralState(StrEnum):
    REQUESTED = "requested"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    DELIVERY_FAILED = "delivery_failed"


class ReferralEvent(StrEnum):
    """What can happen to a referral; the names match the contracts' event names."""

    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


S, E = ReferralState, ReferralEvent

# (state, event) -> next state. A pair that is missing is an illegal transition.
# A delivery report can arrive after the partner already replied (notify relays both), or after
# routing handed the referral on: it then changes nothing, hence the entries that keep the state.
TRANSITIONS: dict[tuple[ReferralState, ReferralEvent], ReferralState] = {
    (S.REQUESTED, E.DELIVERED): S.DELIVERED,
    (S.REQUESTED, E.DELIVERY_FAILED): S.DELIVERY_FAILED,
    (S.REQUESTED, E.ACKNOWLEDGED): S.ACKNOWLEDGED,
    (S.REQUESTED, E.ACCEPTED): S.ACCEPTED,
    (S.REQUESTED, E.DECLINED): S.DECLINED,
    (S.REQUESTED, E.ESCALATED): S.ESCALATED,
    (S.REQUESTED, E.CANCELLED): S.CANCELLED,
    (S.DELIVERY_FAILED, E.DELIVERED): S.DELIVERED,
    (S.DELIVERY_FAILED, E.DELIVERY_FAILED): S.DELIVERY_FAILED,
    (S.DELIVERY_FAILED, E.ACKNOWLEDGED): S.ACKNOWLEDGED,
    (S.DELIVERY_FAILED, E.ACCEPTED): S.ACCEPTED,
    (S.DELIVERY_FAILED, E.DECLINED): S.DECLINED,
    (S.DELIVERY_FAILED, E.ESCALATED): S.ESCALATED,
    (S.DELIVERY_FAILED, E.CANCELLED): S.CANCELLED,
    (S.DELIVERED, E.DELIVERED): S.DELIVERED,
    (S.DELIVERED, E.ACKNOWLEDGED): S.ACKNOWLEDGED,
    (S.DELIVERED, E.ACCEPTED): S.ACCEPTED,
    (S.DELIVERED, E.DECLINED): S.DECLINED,
    (S.DELIVERED, E.ESCALATED): S.ESCALATED,
    (S.DELIVERED, E.CANCELLED): S.CANCELLED,
    (S.ACKNOWLEDGED, E.DELIVERED): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, E.DELIVERY_FAILED): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, E.ACCEPTED): S.ACCEPTED,
    (S.ACKNOWLEDGED, E.DECLINED): S.DECLINED,
    (S.ACKNOWLEDGED, E.ESCALATED): S.ESCALATED,
    (S.ACKNOWLEDGED, E.CANCELLED): S.CANCELLED,
    (S.ACCEPTED, E.DELIVERED): S.ACCEPTED,
    (S.ACCEPTED, E.DELIVERY_FAILED): S.ACCEPTED,
    (S.ACCEPTED, E.ACKNOWLEDGED): S.ACCEPTED,
    (S.ACCEPTED, E.COMPLETED): S.COMPLETED,
    (S.ACCEPTED, E.CANCELLED): S.CANCELLED,
    (S.DECLINED, E.DELIVERED): S.DECLINED,
    (S.DECLINED, E.DELIVERY_FAILED): S.DECLINED,
    (S.DECLINED, E.ESCALATED): S.ESCALATED,
    (S.COMPLETED, E.DELIVERED): S.COMPLETED,
    (S.COMPLETED, E.DELIVERY_FAILED): S.COMPLETED,
    (S.ESCALATED, E.DELIVERED): S.ESCALATED,
    (S.ESCALATED, E.DELIVERY_FAILED): S.ESCALATED,
    (S.CANCELLED, E.DELIVERED): S.CANCELLED,
    (S.CANCELLED, E.DELIVERY_FAILED): S.CANCELLED,
}

OPEN_STATES = frozenset({S.REQUESTED, S.DELIVERED, S.DELIVERY_FAILED, S.ACKNOWLEDGED})
# Not acknowledged yet: the acknowledgement deadline still applies.
AWAITING_ACKNOWLEDGEMENT = frozenset({S.REQUESTED, S.DELIVERED, S.DELIVERY_FAILED})
# Nothing more is expected of the referral: done, withdrawn, or handed on to the next agency.
# A case can be closed when all its referrals are settled (an escalated one counts through the
# referral that took it over, which must itself be completed or cancelled).
SETTLED_STATES = frozenset({S.COMPLETED, S.CANCELLED, S.ESCALATED})


class IllegalTransition(ValueError):
    """An event that cannot happen to a referral in its current state."""


def next_state(referral_id: str, current: ReferralState, event: ReferralEvent) -> ReferralState:
    """The state after the event, or IllegalTransition with a reason a person can act on."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise IllegalTransition(
            f"referral {referral_id} is {current.value}; it cannot become {event.value}"
        ) from None


@dataclass(frozen=True)
class EscalationStep:
    """The referral that takes over: its id, agency, the rest of the chain, and the step."""

    referral_id: str
    agency_id: str
    chain: tuple[str, ...]
    step: int


def next_escalation(
    root_referral_id: str, step: int, chain: Collection[str], busy: Collection[str] = ()
) -> EscalationStep | None:
    """Where a referral goes next along its own stored chain; None at the end of the chain.

    ``step`` is how many hops the referral is from the original one; ``busy`` names agencies
    that already hold an open referral for the same service in the case: they are passed over,
    except the last step (the coordinator), which always takes it. The new referral's id is
    ``<original referral id>-e<step>``, so a redelivered event makes the same referral again.
    """
    steps = list(chain)
    for index, agency_id in enumerate(steps):
        if agency_id in busy and index < len(steps) - 1:
            continue
        new_step = step + index + 1
        return EscalationStep(
            referral_id=f"{root_referral_id}-e{new_step}",
            agency_id=agency_id,
            chain=tuple(steps[index + 1 :]),
            step=new_step,
        )
    return None


@dataclass(frozen=True)
class StoredReferral:
    referral_id: str
    case_id: str
    agency_id: str
    state: ReferralState
    service: Service
    priority: Priority
    acknowledgement_deadline: datetime
    escalation_chain: tuple[str, ...]
    escalation_step: int
    rule_ids: tuple[str, ...]
    consent_override: str | None
    sop_id: str
    sop_version: int
    acknowledge_within: timedelta
    root_referral_id: str


@dataclass(frozen=True)
class StoredPick:
    """A pick by village as routing keeps it: the question asked of intake and, until it is
    resolved, the referral still to come (``pending``)."""

    question_id: str
    case_id: str
    sop_id: str
    sop_version: int
    due_at: datetime
    resolved_at: datetime | None
    pending: PendingPick


@dataclass(frozen=True)
class StoredCase:
    case_id: str
    closed_at: datetime | None
    referrals: tuple[StoredReferral, ...]

    def open_referrals(self) -> list[StoredReferral]:
        return [r for r in self.referrals if r.state not in SETTLED_STATES]


class UnroutedReason(StrEnum):
    """Why routing could not route a reported case."""

    NO_SOP = "no_sop"  # no SOP in force for the case's district
    SOP_REFUSED = "sop_refused"  # the district's SOP file was refused at start
    SOP_INVALID = "sop_invalid"  # the published version in force can no longer be read
    DECISION_FAILED = "decision_failed"  # applying the SOP failed (a fault in routing)


@dataclass(frozen=True)
class UnroutedCase:
    """A reported case routing could not route: kept, counted and listed for the coordinator
    until it is routed by hand or closed (``resolution``)."""

    case_id: str
    district_code: str
    reason: UnroutedReason
    detail: str
    since: datetime
    attempts: int
    reported: dict[str, Any]  # the case.reported payload: triage facts, never identifying data
    resolved_at: datetime | None = None
    resolution: str | None = None  # routed, closed
