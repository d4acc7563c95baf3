"""Routing decisions at their edges: kecamatan conditions, the 72-hour boundary, merging and
tie-breaks (issue 26: each test here kills mutants of routing/decide.py that survived)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from routing.decide import Decision, decide
from routing.settings import SHIPPED_SOPS
from routing.sop import Sop, load_sop
from rujuk_contracts.events import Priority, Service
from rujuk_contracts.triage import TriageFacts

NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
CASE = "3514-AB12CD34EF"
SHIPPED = load_sop(SHIPPED_SOPS / "3514.yaml")


def agency(agency_id: str, *services: str) -> dict[str, Any]:
    return {
        "id": agency_id,
        "name": f"CONTOH {agency_id}",
        "services": list(services),
        "kecamatan": "all",
        "hours": "24/7",
        "channels": ["nats"],
    }


def refer(service: str, agency_id: str, priority: str, minutes: int, *chain: str) -> dict[str, Any]:
    return {
        "service": service,
        "agency": agency_id,
        "priority": priority,
        "acknowledge_within_minutes": minutes,
        "escalate_to": list(chain),
    }


def sop(*rules: dict[str, Any]) -> Sop:
    """An invented SOP for district 3514 with the given rules after a case-management one."""
    return Sop.model_validate(
        {
            "sop_id": "sop-3514",
            "version": 7,
            "district_code": "3514",
            "name": "CONTOH SOP",
            "sample_data": True,
            "kecamatan": ["Bangil", "Pandaan", "Tosari"],
            "coordinator": "coord",
            "on_call": {
                "contacts": [{"id": "piket", "role": "CONTOH piket", "channels": ["sms"]}],
                "repeat": {"rounds": 3, "every_minutes": 10},
            },
            "consent": {
                "requires_consent": {"police": "share_with_police"},
                "mandatory_reporting": [
                    {"age_group": "child", "services": ["police"], "legal_basis": "CONTOH UU"}
                ],
            },
            "directory": [
                agency("coord", "case_management"),
                agency("upt", "case_management", "psychosocial", "legal"),
                agency("police", "police"),
                agency("alpha", "social"),
                agency("zulu", "social"),
            ],
            "rules": [
                {
                    "id": "case-management",
                    "description": "CONTOH",
                    "when": {},
                    "refer": [refer("case_management", "upt", "routine", 600)],
                },
                *rules,
            ],
        }
    )


def rule(rule_id: str, when: dict[str, Any], *refers: dict[str, Any]) -> dict[str, Any]:
    return {"id": rule_id, "description": "CONTOH", "when": when, "refer": list(refers)}


def case(**overrides: Any) -> TriageFacts:
    base: dict[str, Any] = {
        "violence_types": ["psychological"],
        "age_group": "adult",
        "sex": "female",
        "district_code": "3514",
        "kecamatan": "Bangil",
    }
    return TriageFacts.model_validate({**base, **overrides})


def run(the_sop: Sop, **overrides: Any) -> Decision:
    return decide(the_sop, CASE, case(**overrides), NOW)


# --- kecamatan conditions -----------------------------------------------------------------

ON_KECAMATAN = sop(
    rule("in-pandaan", {"kecamatan": ["  PANDAAN ", "Tosari"]}, refer("legal", "upt", "urgent", 60))
)


@pytest.mark.parametrize("kecamatan", ["Pandaan", "pandaan", " tosari  "])
def test_a_rule_on_kecamatan_matches_only_that_kecamatan(kecamatan: str) -> None:
    assert "in-pandaan" in run(ON_KECAMATAN, kecamatan=kecamatan).rules_fired
    assert "in-pandaan" not in run(ON_KECAMATAN, kecamatan="Bangil").rules_fired


def test_a_rule_on_kecamatan_never_matches_a_case_without_one() -> None:
    assert run(ON_KECAMATAN, kecamatan=None).rules_fired == ("case-management",)


# --- the 72-hour boundary ------------------------------------------------------------------


def test_exactly_72_hours_is_within_the_window() -> None:
    decision = decide(
        SHIPPED,
        CASE,
        case(
            violence_types=["sexual"],
            hours_since_sexual_assault=72,
            consent={"share_with_health": True},
        ),
        NOW,
    )
    assert "sexual-within-72h" in decision.rules_fired
    assert "sexual-after-72h" not in decision.rules_fired


def test_just_over_72_hours_is_after_the_window() -> None:
    decision = decide(
        SHIPPED,
        CASE,
        case(
            violence_types=["sexual"],
            hours_since_sexual_assault=72.01,
            consent={"share_with_health": True},
        ),
        NOW,
    )
    assert "sexual-within-72h" not in decision.rules_fired
    assert "sexual-after-72h" in decision.rules_fired


# --- merging and order ---------------------------------------------------------------------


def test_a_merged_chain_of_equal_priority_keeps_sop_order_not_alphabetical() -> None:
    the_sop = sop(
        rule("first", {}, refer("psychosocial", "upt", "urgent", 60, "zulu")),
        rule("second", {}, refer("psychosocial", "upt", "urgent", 90, "alpha")),
    )
    (merged,) = [r for r in run(the_sop).referrals if r.service == Service.PSYCHOSOCIAL]
    assert merged.escalation_chain == ("zulu", "alpha", "coord")


def test_a_merged_chain_puts_the_more_urgent_rules_chain_first() -> None:
    the_sop = sop(
        rule("routine", {}, refer("psychosocial", "upt", "routine", 60, "alpha")),
        rule("urgent", {}, refer("psychosocial", "upt", "urgent", 90, "zulu")),
    )
    (merged,) = [r for r in run(the_sop).referrals if r.service == Service.PSYCHOSOCIAL]
    assert merged.escalation_chain == ("zulu", "alpha", "coord")
    assert merged.priority == Priority.URGENT


@pytest.mark.parametrize(
    ("less", "more"),
    [("routine", "urgent"), ("urgent", "emergency"), ("routine", "emergency")],
)
def test_merging_keeps_the_more_urgent_priority_whichever_rule_comes_first(
    less: str, more: str
) -> None:
    for first, second in ((less, more), (more, less)):
        the_sop = sop(
            rule("a", {}, refer("legal", "upt", first, 60)),
            rule("b", {}, refer("legal", "upt", second, 60)),
        )
        (legal,) = [r for r in run(the_sop).referrals if r.service == Service.LEGAL]
        assert legal.priority == Priority(more)


def test_referrals_tied_on_priority_and_deadline_keep_sop_order() -> None:
    the_sop = sop(
        rule("social-z", {}, refer("social", "zulu", "urgent", 60)),
        rule("social-a", {}, refer("social", "alpha", "urgent", 60)),
        rule("legal", {}, refer("legal", "upt", "urgent", 60)),
    )
    decision = run(the_sop)
    assert [r.agency_id for r in decision.referrals] == ["zulu", "alpha", "upt", "upt"]
    assert [r.referral_id for r in decision.referrals] == [f"{CASE}-{n:02d}" for n in (1, 2, 3, 4)]


def test_an_urgent_referral_comes_before_a_routine_one_with_a_shorter_deadline() -> None:
    the_sop = sop(
        rule("routine", {}, refer("social", "alpha", "routine", 5)),
        rule("urgent", {}, refer("legal", "upt", "urgent", 500)),
    )
    assert [r.service for r in run(the_sop).referrals] == [
        Service.LEGAL,
        Service.SOCIAL,
        Service.CASE_MANAGEMENT,
    ]


def test_a_referral_states_how_long_the_agency_has_to_acknowledge() -> None:
    the_sop = sop(rule("legal", {}, refer("legal", "upt", "urgent", 45)))
    decision = decide(the_sop, CASE, case(), NOW, minute=timedelta(seconds=2))
    legal = next(r for r in decision.referrals if r.service == Service.LEGAL)
    assert legal.acknowledge_within == timedelta(seconds=90)
    assert legal.acknowledgement_deadline == NOW + timedelta(seconds=90)


def test_a_decision_names_its_case() -> None:
    assert run(sop()).case_id == CASE


def test_a_merged_child_referral_keeps_the_legal_basis() -> None:
    the_sop = sop(
        rule("child", {"age_group": "child"}, refer("police", "police", "urgent", 60)),
        rule("child-again", {"age_group": "child"}, refer("police", "police", "emergency", 30)),
    )
    decision = run(the_sop, age_group="child")
    (police,) = [r for r in decision.referrals if r.service == Service.POLICE]
    assert police.rule_ids == ("child", "child-again")
    assert police.consent_override == "CONTOH UU"
    assert decision.consent_overrides() == {police.referral_id: "CONTOH UU"}


def test_a_withheld_referral_names_agency_service_rules_and_reason() -> None:
    the_sop = sop(
        rule("police", {}, refer("police", "police", "urgent", 60)),
        rule("police-again", {}, refer("police", "police", "urgent", 60)),
    )
    (withheld,) = run(the_sop).withheld
    assert (withheld.service, withheld.agency_id) == (Service.POLICE, "police")
    assert withheld.rule_ids == ("police", "police-again")
    assert withheld.reason == "no consent to share with police (share_with_police is false)"
