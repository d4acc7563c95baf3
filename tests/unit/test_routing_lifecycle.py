"""A referral's lifecycle: which reports move it, and which are refused with a reason."""

import pytest

from routing.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    ReferralEvent,
    ReferralState,
    next_state,
)

S, E = ReferralState, ReferralEvent


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        (S.REQUESTED, E.DELIVERED, S.DELIVERED),
        (S.REQUESTED, E.DELIVERY_FAILED, S.DELIVERY_FAILED),
        (S.DELIVERY_FAILED, E.DELIVERED, S.DELIVERED),
        (S.DELIVERY_FAILED, E.DELIVERY_FAILED, S.DELIVERY_FAILED),
        (S.DELIVERED, E.ACKNOWLEDGED, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, E.ACCEPTED, S.ACCEPTED),
        (S.ACKNOWLEDGED, E.DECLINED, S.DECLINED),
        (S.ACCEPTED, E.COMPLETED, S.COMPLETED),
        (S.DECLINED, E.ESCALATED, S.ESCALATED),
    ],
)
def test_referral_moves_along_its_lifecycle(
    current: ReferralState, event: ReferralEvent, expected: ReferralState
) -> None:
    assert next_state("3514-AB12CD34EF-01", current, event) == expected


@pytest.mark.parametrize("replied", [S.ACKNOWLEDGED, S.ACCEPTED, S.DECLINED, S.COMPLETED])
def test_a_late_delivery_report_does_not_undo_a_partner_reply(replied: ReferralState) -> None:
    assert next_state("3514-AB12CD34EF-01", replied, E.DELIVERED) == replied


def test_a_delivery_failure_after_delivery_is_refused_with_a_reason() -> None:
    with pytest.raises(IllegalTransition) as caught:
        next_state("3514-AB12CD34EF-01", S.DELIVERED, E.DELIVERY_FAILED)
    assert str(caught.value) == (
        "referral 3514-AB12CD34EF-01 is delivered; it cannot become delivery_failed"
    )


@pytest.mark.parametrize("event", [e for e in ReferralEvent if e != E.DELIVERED])
@pytest.mark.parametrize("final", [S.COMPLETED, S.CANCELLED, S.ESCALATED])
def test_nothing_but_a_late_delivery_report_follows_a_final_state(
    final: ReferralState, event: ReferralEvent
) -> None:
    with pytest.raises(IllegalTransition):
        next_state("3514-AB12CD34EF-01", final, event)


def test_every_state_can_be_reached() -> None:
    reached = {S.REQUESTED} | set(TRANSITIONS.values())
    assert reached == set(ReferralState)
