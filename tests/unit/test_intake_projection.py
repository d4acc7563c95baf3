"""Intake's projection as a fold over a run of events: the same result as applying them one by
one, in order, with routing's lifecycle deciding which replies move a referral on."""

from dataclasses import replace

from intake.projection import ProjectedReferral, fold, referrals_read
from rujuk_contracts.events import (
    CaseClosed,
    CaseRouted,
    DeliveryChannel,
    EventPayload,
    PickedBy,
    ReferralAccepted,
    ReferralCompleted,
    ReferralDelivered,
    ReferralRequested,
)

CASE = "3514-ZZZZZZ0001"


def routed(*referral_ids: str) -> CaseRouted:
    return CaseRouted.model_validate(
        {
            "case_id": CASE,
            "sop_id": "sop-3514",
            "sop_version": 1,
            "rules_fired": ["uji"],
            "referrals": [
                {
                    "referral_id": referral_id,
                    "agency_id": "pkm-uji",
                    "service": "health",
                    "priority": "urgent",
                }
                for referral_id in referral_ids
            ],
        }
    )


def delivered(referral_id: str) -> ReferralDelivered:
    return ReferralDelivered(
        case_id=CASE,
        referral_id=referral_id,
        agency_id="pkm-uji",
        channels=[DeliveryChannel.NATS],
        attempts=1,
    )


def row(referral_id: str, state: str) -> ProjectedReferral:
    return ProjectedReferral(referral_id, CASE, "pkm-uji", "health", "urgent", state)


def test_a_whole_journey_in_one_run_ends_as_its_last_allowed_state() -> None:
    events: list[EventPayload] = [
        routed("ref-a", "ref-b"),
        delivered("ref-a"),
        ReferralAccepted(case_id=CASE, referral_id="ref-a", agency_id="pkm-uji"),
        delivered("ref-b"),
    ]

    changes = fold(events, {})

    assert changes.case_status == {CASE: "routed"}
    assert changes.referrals == {
        "ref-a": row("ref-a", "accepted"),
        "ref-b": row("ref-b", "delivered"),
    }


def test_a_reply_out_of_turn_and_a_late_delivery_report_leave_the_state_alone() -> None:
    current = {"ref-a": row("ref-a", "accepted"), "ref-b": row("ref-b", "requested")}
    events: list[EventPayload] = [
        delivered("ref-a"),  # after the reply: not back to delivered
        ReferralCompleted(case_id=CASE, referral_id="ref-b", agency_id="pkm-uji"),  # refused
    ]

    assert fold(events, current).referrals == {}


def test_a_requested_referral_is_added_only_when_new() -> None:
    requested = ReferralRequested.model_validate(
        {
            "case_id": CASE,
            "referral_id": "ref-a",
            "agency_id": "pkm-uji",
            "service": "health",
            "priority": "urgent",
            "acknowledgement_deadline": "2026-11-30T10:00:00Z",
            "escalation_chain": ["dinas-uji"],
            "sop_id": "sop-3514",
            "sop_version": 1,
            "rule_ids": ["uji"],
        }
    )
    assert fold([requested], {"ref-a": row("ref-a", "delivered")}).referrals == {}
    assert fold([requested], {}).referrals == {"ref-a": row("ref-a", "requested")}
    assert fold([requested], {}).referrals["ref-a"].picked_by is None


def test_a_referral_the_desa_picked_keeps_how_through_its_later_states() -> None:
    picked = ReferralRequested.model_validate(
        {
            "case_id": CASE,
            "referral_id": "ref-p",
            "agency_id": "pkm-uji",
            "service": "health",
            "priority": "urgent",
            "acknowledgement_deadline": "2026-11-30T10:00:00Z",
            "escalation_chain": [],
            "sop_id": "sop-3513",
            "sop_version": 1,
            "rule_ids": ["uji"],
            "picked_by": "kecamatan_timeout",
        }
    )
    changes = fold([picked, delivered("ref-p")], {})
    assert changes.referrals["ref-p"] == replace(
        row("ref-p", "delivered"), picked_by=PickedBy.KECAMATAN_TIMEOUT
    )


def test_events_about_unknown_referrals_change_nothing_and_closing_is_the_last_word() -> None:
    events: list[EventPayload] = [
        delivered("ref-x"),
        routed("ref-a"),
        CaseClosed(case_id=CASE, closed_by="uji", reason="selesai"),
    ]

    changes = fold(events, {})

    assert "ref-x" not in changes.referrals
    assert changes.case_status == {CASE: "closed"}
    assert referrals_read(events) == ["ref-x", "ref-a"]
