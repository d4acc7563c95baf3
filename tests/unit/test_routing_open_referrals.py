"""Which of a case's referrals are still open: everything not settled (issue 26)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from routing.lifecycle import SETTLED_STATES, ReferralState, StoredCase, StoredReferral
from rujuk_contracts.events import Priority, Service

REFERRAL = StoredReferral(
    referral_id="3514-AB12CD34EF-01",
    case_id="3514-AB12CD34EF",
    agency_id="contoh-agency",
    state=ReferralState.REQUESTED,
    service=Service.HEALTH,
    priority=Priority.URGENT,
    acknowledgement_deadline=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
    escalation_chain=("contoh-coordinator",),
    escalation_step=0,
    rule_ids=("contoh-rule",),
    consent_override=None,
    sop_id="sop-3514",
    sop_version=1,
    acknowledge_within=timedelta(minutes=30),
    root_referral_id="3514-AB12CD34EF-01",
)


def test_a_case_lists_as_open_exactly_its_referrals_that_are_not_settled() -> None:
    referrals = tuple(
        replace(REFERRAL, referral_id=f"3514-AB12CD34EF-{n:02d}", state=state)
        for n, state in enumerate(ReferralState, start=1)
    )
    case = StoredCase(case_id="3514-AB12CD34EF", closed_at=None, referrals=referrals)
    open_states = [r.state for r in case.open_referrals()]
    assert open_states == [s for s in ReferralState if s not in SETTLED_STATES]
    assert ReferralState.REQUESTED in open_states
    assert ReferralState.COMPLETED not in open_states
