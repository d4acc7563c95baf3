"""A referral's states and the transitions between them, as one table."""

from enum import StrEnum


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
# A delivery report can arrive after the partner already replied (notify relays both): it
# then changes nothing, hence the entries that keep the state.
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
    (S.ACKNOWLEDGED, E.ACCEPTED): S.ACCEPTED,
    (S.ACKNOWLEDGED, E.DECLINED): S.DECLINED,
    (S.ACKNOWLEDGED, E.ESCALATED): S.ESCALATED,
    (S.ACKNOWLEDGED, E.CANCELLED): S.CANCELLED,
    (S.ACCEPTED, E.DELIVERED): S.ACCEPTED,
    (S.ACCEPTED, E.ACKNOWLEDGED): S.ACCEPTED,
    (S.ACCEPTED, E.COMPLETED): S.COMPLETED,
    (S.ACCEPTED, E.CANCELLED): S.CANCELLED,
    (S.DECLINED, E.DELIVERED): S.DECLINED,
    (S.DECLINED, E.ESCALATED): S.ESCALATED,
    (S.COMPLETED, E.DELIVERED): S.COMPLETED,
    (S.ESCALATED, E.DELIVERED): S.ESCALATED,
    (S.CANCELLED, E.DELIVERED): S.CANCELLED,
}

OPEN_STATES = frozenset({S.REQUESTED, S.DELIVERED, S.DELIVERY_FAILED, S.ACKNOWLEDGED})


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
