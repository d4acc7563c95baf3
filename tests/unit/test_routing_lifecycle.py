"""A referral's lifecycle: which reports move it, and which are refused with a reason."""

import pytest

from routing.lifecycle import (
    AWAITING_ACKNOWLEDGEMENT,
    SETTLED_STATES,
    TRANSITIONS,
    EscalationStep,
    IllegalTransition,
    ReferralEvent,
    ReferralState,
    next_escalation,
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


LATE_REPORTS = (E.DELIVERED, E.DELIVERY_FAILED)


@pytest.mark.parametrize("report", LATE_REPORTS)
@pytest.mark.parametrize(
    "settled",
    [S.ACKNOWLEDGED, S.ACCEPTED, S.DECLINED, S.COMPLETED, S.ESCALATED, S.CANCELLED],
)
def test_a_late_delivery_report_does_not_undo_a_reply_or_an_escalation(
    settled: ReferralState, report: ReferralEvent
) -> None:
    assert next_state("3514-AB12CD34EF-01", settled, report) == settled


def test_a_delivery_failure_after_delivery_is_refused_with_a_reason() -> None:
    with pytest.raises(IllegalTransition) as caught:
        next_state("3514-AB12CD34EF-01", S.DELIVERED, E.DELIVERY_FAILED)
    assert str(caught.value) == (
        "referral 3514-AB12CD34EF-01 is delivered; it cannot become delivery_failed"
    )


@pytest.mark.parametrize("event", [e for e in ReferralEvent if e not in LATE_REPORTS])
@pytest.mark.parametrize("final", [S.COMPLETED, S.CANCELLED, S.ESCALATED])
def test_nothing_but_a_late_delivery_report_follows_a_final_state(
    final: ReferralState, event: ReferralEvent
) -> None:
    with pytest.raises(IllegalTransition):
        next_state("3514-AB12CD34EF-01", final, event)


def test_every_state_can_be_reached() -> None:
    reached = {S.REQUESTED} | set(TRANSITIONS.values())
    assert reached == set(ReferralState)


@pytest.mark.parametrize(
    ("current", "reply"),
    [
        (S.DECLINED, E.ACCEPTED),  # accept after decline
        (S.ACCEPTED, E.DECLINED),
        (S.REQUESTED, E.COMPLETED),  # complete without accepting
        (S.ACKNOWLEDGED, E.ACKNOWLEDGED),
        (S.ESCALATED, E.ACKNOWLEDGED),  # a late acknowledgement of a referral handed on
    ],
)
def test_partner_replies_out_of_order_are_illegal(
    current: ReferralState, reply: ReferralEvent
) -> None:
    with pytest.raises(IllegalTransition, match=f"is {current.value}; it cannot become"):
        next_state("3514-AB12CD34EF-01", current, reply)


def test_every_state_awaiting_acknowledgement_can_be_escalated() -> None:
    assert {S.REQUESTED, S.DELIVERED, S.DELIVERY_FAILED} == AWAITING_ACKNOWLEDGEMENT
    for state in AWAITING_ACKNOWLEDGEMENT | {S.DECLINED}:
        assert next_state("r", state, E.ESCALATED) == S.ESCALATED
    assert S.ACKNOWLEDGED not in AWAITING_ACKNOWLEDGEMENT
    assert {S.COMPLETED, S.CANCELLED, S.ESCALATED} == SETTLED_STATES


CHAIN = ("rsud-bangil", "dp3ap2kb-pasuruan")


def test_escalation_goes_to_the_next_agency_of_the_referrals_own_chain() -> None:
    first = next_escalation("3514-AB12CD34EF-03", 0, CHAIN)
    assert first == EscalationStep("3514-AB12CD34EF-03-e1", "rsud-bangil", CHAIN[1:], 1)
    second = next_escalation("3514-AB12CD34EF-03", first.step, first.chain)
    assert second == EscalationStep("3514-AB12CD34EF-03-e2", "dp3ap2kb-pasuruan", (), 2)
    assert next_escalation("3514-AB12CD34EF-03", second.step, second.chain) is None


def test_escalation_passes_over_an_agency_that_already_holds_the_service() -> None:
    step = next_escalation("3514-AB12CD34EF-03", 0, CHAIN, busy={"rsud-bangil"})
    assert step == EscalationStep("3514-AB12CD34EF-03-e2", "dp3ap2kb-pasuruan", (), 2)


def test_the_coordinator_always_takes_the_last_step_even_when_busy() -> None:
    step = next_escalation("r", 1, ("dp3ap2kb-pasuruan",), busy={"dp3ap2kb-pasuruan"})
    assert step is not None
    assert step.agency_id == "dp3ap2kb-pasuruan"


def test_escalation_ids_are_deterministic() -> None:
    assert next_escalation("r-01", 0, CHAIN) == next_escalation("r-01", 0, CHAIN)
