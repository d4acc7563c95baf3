"""Routing decisions under the shipped SOPs of Kabupaten Pasuruan (3514) and Probolinggo (3513)."""

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from routing.decide import Decision, DistrictMismatch, ReferralDecision, decide
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop
from rujuk_contracts.events import Priority, Service
from rujuk_contracts.triage import TriageFacts, ViolenceType

NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
SOPS = {district: load_sop(SHIPPED_SOPS / f"{district}.yaml") for district in ("3514", "3513")}
ALL_CONSENT = {"share_with_health": True, "share_with_police": True, "share_with_shelter": True}
HOME = {"3514": "Bangil", "3513": "Kraksaan"}


def facts(district: str, **overrides: Any) -> TriageFacts:
    """An adult survivor who consented to everything; overrides change what a case needs."""
    base: dict[str, Any] = {
        "violence_types": ["psychological"],
        "age_group": "adult",
        "sex": "female",
        "district_code": district,
        "kecamatan": HOME[district],
        "consent": ALL_CONSENT,
    }
    return TriageFacts.model_validate({**base, **overrides})


def route(district: str, **overrides: Any) -> Decision:
    case_id = f"{district}-AB12CD34EF"
    return decide(SOPS[district], case_id, facts(district, **overrides), NOW)


def referral_to(decision: Decision, service: Service, agency_id: str) -> ReferralDecision:
    """The referral, or a pick by village as it goes when no listed desa is the case's."""
    as_if_no_village = [pick.referral(pick.none_agency_id, NOW) for pick in decision.pending_picks]
    for referral in (*decision.referrals, *as_if_no_village):
        if referral.service == service and referral.agency_id == agency_id:
            return referral
    raise AssertionError(f"no {service} referral to {agency_id} in {decision.referrals}")


def services(decision: Decision) -> set[Service]:
    return {referral.service for referral in decision.referrals}


# --- every rule of both shipped SOPs, as a table ------------------------------------------

H, P, SH, PS, L, SO, CM, M = (
    Service.HEALTH,
    Service.POLICE,
    Service.SHELTER,
    Service.PSYCHOSOCIAL,
    Service.LEGAL,
    Service.SOCIAL,
    Service.CASE_MANAGEMENT,
    Service.MEDIATION,
)
EMERGENCY, URGENT, ROUTINE = Priority.EMERGENCY, Priority.URGENT, Priority.ROUTINE


@dataclass(frozen=True)
class RuleSpec:
    district: str
    rule_id: str
    expected: list[tuple[Service, str, Priority, int]]  # service, agency, priority, minutes
    case: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.district}:{self.rule_id}"


RULE_SPECS = [
    # Kabupaten Pasuruan, Sakera Jempol
    RuleSpec("3514", "case-management", [(CM, "uptppa-pasuruan", URGENT, 120)]),
    RuleSpec(
        "3514",
        "immediate-danger",
        [(CM, "uptppa-pasuruan", EMERGENCY, 15), (SH, "rumah-aman-pasuruan", EMERGENCY, 30)],
        {"immediate_danger": True},
    ),
    RuleSpec(
        "3514",
        "perpetrator-has-access",
        [(SH, "rumah-aman-pasuruan", URGENT, 120)],
        {"perpetrator_has_access": True},
    ),
    RuleSpec(
        "3514",
        "sexual-within-72h",
        [(H, "pkm-pandaan", EMERGENCY, 30)],
        {"violence_types": ["sexual"], "hours_since_sexual_assault": 20, "kecamatan": "Pandaan"},
    ),
    RuleSpec(
        "3514",
        "sexual-time-unknown",
        [(H, "pkm-tosari", EMERGENCY, 30)],
        {"violence_types": ["sexual"], "kecamatan": "Tutur"},
    ),
    RuleSpec(
        "3514",
        "sexual-after-72h",
        [(H, "rsud-bangil", URGENT, 240)],
        {"violence_types": ["sexual"], "hours_since_sexual_assault": 100},
    ),
    RuleSpec(
        "3514",
        "injury",
        [(H, "pkm-gempol", URGENT, 120)],
        {"injury": True, "kecamatan": "Gempol"},
    ),
    RuleSpec(
        "3514",
        "suicidal-thoughts",
        [(PS, "uptppa-pasuruan", EMERGENCY, 30), (H, "rsud-bangil", URGENT, 60)],
        {"suicidal_thoughts": True},
    ),
    RuleSpec(
        "3514",
        "child-protection",
        [(P, "polres-pasuruan-ppa", URGENT, 240), (PS, "uptppa-pasuruan", URGENT, 240)],
        {"age_group": "child"},
    ),
    RuleSpec(
        "3514",
        "child-sexual",
        [(P, "polres-pasuruan-ppa", URGENT, 60), (L, "uptppa-pasuruan", URGENT, 240)],
        {"age_group": "child", "violence_types": ["sexual"], "hours_since_sexual_assault": 200},
    ),
    RuleSpec(
        "3514",
        "adult-police-report",
        [(P, "polres-pasuruan-ppa", URGENT, 480)],
        {"violence_types": ["physical"]},
    ),
    RuleSpec("3514", "legal-aid-for-police-process", [(L, "lbh-pasuruan", ROUTINE, 1440)]),
    RuleSpec(
        "3514",
        "trafficking",
        [
            (P, "polres-pasuruan-ppa", URGENT, 60),
            (SO, "dinsos-pasuruan", URGENT, 240),
            (SH, "rumah-aman-pasuruan", URGENT, 120),
            (L, "uptppa-pasuruan", URGENT, 240),
        ],
        {"violence_types": ["trafficking"]},
    ),
    RuleSpec(
        "3514",
        "exploitation-or-neglect",
        [(SO, "dinsos-pasuruan", ROUTINE, 1440)],
        {"violence_types": ["neglect"]},
    ),
    RuleSpec("3514", "disability", [(SO, "dinsos-pasuruan", URGENT, 480)], {"disability": True}),
    RuleSpec("3514", "family-counselling", [(PS, "puspaga-pasuruan", ROUTINE, 2880)]),
    RuleSpec(
        "3514",
        "sexual-violence-rights",
        [(L, "uptppa-pasuruan", URGENT, 240), (PS, "uptppa-pasuruan", URGENT, 240)],
        {"violence_types": ["sexual"], "hours_since_sexual_assault": 10, "consent": {}},
    ),
    RuleSpec(
        "3514",
        "family-mediation",
        [(M, "uptppa-pasuruan", ROUTINE, 2880)],
        {"violence_types": ["neglect"]},
    ),
    # Kabupaten Probolinggo, Rumah SAE
    RuleSpec("3513", "case-management", [(CM, "uptppa-probolinggo", URGENT, 120)]),
    RuleSpec(
        "3513",
        "village-accompaniment",
        [(PS, "rumah-sae-paiton", ROUTINE, 1440)],
        {"kecamatan": "Paiton"},
    ),
    RuleSpec(
        "3513",
        "immediate-danger",
        [(CM, "uptppa-probolinggo", EMERGENCY, 15), (SH, "rumah-aman-probolinggo", EMERGENCY, 30)],
        {"immediate_danger": True},
    ),
    RuleSpec(
        "3513",
        "perpetrator-has-access",
        [(SH, "rumah-aman-probolinggo", URGENT, 120)],
        {"perpetrator_has_access": True},
    ),
    RuleSpec(
        "3513",
        "sexual-within-72h",
        [(H, "pkm-paiton", EMERGENCY, 30)],
        {"violence_types": ["sexual"], "hours_since_sexual_assault": 71.5, "kecamatan": "Paiton"},
    ),
    RuleSpec(
        "3513",
        "sexual-time-unknown",
        [(H, "pkm-dringu", EMERGENCY, 30)],
        {"violence_types": ["sexual"], "kecamatan": "Leces"},
    ),
    RuleSpec(
        "3513",
        "sexual-after-72h",
        [(H, "rsud-waluyo-jati", URGENT, 240)],
        {"violence_types": ["sexual"], "hours_since_sexual_assault": 72.5},
    ),
    RuleSpec(
        "3513", "injury", [(H, "pkm-krucil", URGENT, 120)], {"injury": True, "kecamatan": "Krucil"}
    ),
    RuleSpec(
        "3513",
        "suicidal-thoughts",
        [(PS, "uptppa-probolinggo", EMERGENCY, 30), (H, "rsud-waluyo-jati", URGENT, 60)],
        {"suicidal_thoughts": True},
    ),
    RuleSpec(
        "3513",
        "child-protection",
        [(P, "polres-probolinggo-ppa", URGENT, 240), (PS, "lpa-probolinggo", URGENT, 480)],
        {"age_group": "child"},
    ),
    RuleSpec(
        "3513",
        "child-sexual",
        [(P, "polres-probolinggo-ppa", URGENT, 60), (L, "uptppa-probolinggo", URGENT, 240)],
        {"age_group": "child", "violence_types": ["sexual"], "hours_since_sexual_assault": 200},
    ),
    RuleSpec(
        "3513",
        "adult-police-report",
        [(P, "polres-probolinggo-ppa", URGENT, 480)],
        {"violence_types": ["exploitation"]},
    ),
    RuleSpec("3513", "legal-aid-for-police-process", [(L, "lbh-probolinggo", ROUTINE, 1440)]),
    RuleSpec(
        "3513",
        "trafficking",
        [
            (P, "polres-probolinggo-ppa", URGENT, 60),
            (SO, "dinsos-probolinggo", URGENT, 240),
            (SH, "rumah-aman-probolinggo", URGENT, 120),
            (L, "uptppa-probolinggo", URGENT, 240),
        ],
        {"violence_types": ["trafficking"]},
    ),
    RuleSpec(
        "3513",
        "exploitation-or-neglect",
        [(SO, "dinsos-probolinggo", ROUTINE, 1440)],
        {"violence_types": ["exploitation"]},
    ),
    RuleSpec("3513", "disability", [(SO, "dinsos-probolinggo", URGENT, 480)], {"disability": True}),
    RuleSpec("3513", "family-counselling", [(PS, "lk3-probolinggo", ROUTINE, 2880)]),
    RuleSpec(
        "3513",
        "sexual-violence-rights",
        [(L, "uptppa-probolinggo", URGENT, 240)],
        {"violence_types": ["sexual"], "hours_since_sexual_assault": 10, "consent": {}},
    ),
    RuleSpec(
        "3513",
        "family-mediation",
        [(M, "uptppa-probolinggo", ROUTINE, 2880)],
        {"violence_types": ["neglect"]},
    ),
]


@pytest.mark.parametrize("spec", RULE_SPECS, ids=str)
def test_each_rule_of_the_shipped_sops_refers_what_it_says(spec: RuleSpec) -> None:
    decision = route(spec.district, **spec.case)
    assert spec.rule_id in decision.rules_fired
    for service, agency_id, priority, minutes in spec.expected:
        referral = referral_to(decision, service, agency_id)
        assert spec.rule_id in referral.rule_ids
        assert referral.priority == priority
        assert referral.acknowledgement_deadline == NOW + timedelta(minutes=minutes)


@pytest.mark.parametrize("district", sorted(SOPS))
def test_every_rule_of_a_shipped_sop_has_a_specification_above(district: str) -> None:
    specified = {spec.rule_id for spec in RULE_SPECS if spec.district == district}
    assert specified == {rule.id for rule in SOPS[district].rules}


# --- consent and mandatory reporting ------------------------------------------------------

VIOLENCE = [[violence] for violence in ViolenceType]


def case_variations(district: str, **fixed: Any) -> list[TriageFacts]:
    """Many cases: every violence type, with and without danger, injury, hours, disability."""
    return [
        facts(
            district,
            violence_types=violence,
            immediate_danger=danger,
            injury=injury,
            hours_since_sexual_assault=hours,
            disability=disability,
            perpetrator_has_access=access,
            **fixed,
        )
        for violence, danger, injury, hours, disability, access in itertools.product(
            VIOLENCE, [False, True], [False, True], [None, 3, 200], [False, True], [False, True]
        )
    ]


@pytest.mark.parametrize("district", sorted(SOPS))
def test_adult_case_never_reaches_police_without_consent(district: str) -> None:
    no_police = {**ALL_CONSENT, "share_with_police": False}
    for case in case_variations(district, consent=no_police):
        decision = decide(SOPS[district], f"{district}-AB12CD34EF", case, NOW)
        assert Service.POLICE not in services(decision)
        assert "legal-aid-for-police-process" not in decision.rules_fired


@pytest.mark.parametrize("district", sorted(SOPS))
def test_adult_police_referral_withheld_for_lack_of_consent_is_recorded(district: str) -> None:
    decision = route(
        district, violence_types=["physical"], consent={**ALL_CONSENT, "share_with_police": False}
    )
    [withheld] = [w for w in decision.withheld if w.service == Service.POLICE]
    assert withheld.rule_ids == ("adult-police-report",)
    assert "share_with_police is false" in withheld.reason


@pytest.mark.parametrize("district", sorted(SOPS))
@pytest.mark.parametrize(
    ("service", "flag"),
    [(Service.HEALTH, "share_with_health"), (Service.SHELTER, "share_with_shelter")],
)
def test_adult_case_reaches_health_and_shelter_only_with_consent(
    district: str, service: Service, flag: str
) -> None:
    for case in case_variations(district, consent={**ALL_CONSENT, flag: False}):
        assert service not in services(decide(SOPS[district], f"{district}-AB12CD34EF", case, NOW))


@pytest.mark.parametrize("district", sorted(SOPS))
def test_child_case_reaches_police_under_mandatory_reporting_with_legal_basis(
    district: str,
) -> None:
    decision = route(
        district, age_group="child", violence_types=["sexual"], consent={"given_by": "guardian"}
    )
    police = next(r for r in decision.referrals if r.service == Service.POLICE)
    assert police.consent_override is not None
    assert "UU 35/2014" in police.consent_override
    assert "UU 12/2022 TPKS" in police.consent_override
    assert decision.consent_overrides()[police.referral_id] == police.consent_override
    assert not decision.withheld


@pytest.mark.parametrize("district", sorted(SOPS))
def test_every_child_case_reaches_police_and_upt_ppa_whatever_the_consent(district: str) -> None:
    for case in case_variations(district, age_group="child", consent={}):
        decision = decide(SOPS[district], f"{district}-AB12CD34EF", case, NOW)
        assert Service.POLICE in services(decision)
        assert referral_to(decision, Service.CASE_MANAGEMENT, f"uptppa-{_name(district)}")


@pytest.mark.parametrize("district", sorted(SOPS))
def test_child_sexual_assault_within_72_hours_reaches_health_without_guardian_consent(
    district: str,
) -> None:
    decision = route(
        district,
        age_group="child",
        violence_types=["sexual"],
        hours_since_sexual_assault=5,
        consent={},
    )
    health = next(r for r in decision.referrals if r.service == Service.HEALTH)
    assert health.priority == Priority.EMERGENCY
    assert health.consent_override is not None


@pytest.mark.parametrize("district", sorted(SOPS))
def test_child_case_with_guardian_consent_records_no_override(district: str) -> None:
    decision = route(district, age_group="child", consent={**ALL_CONSENT, "given_by": "guardian"})
    assert decision.consent_overrides() == {}


# --- post-rape care -----------------------------------------------------------------------


@pytest.mark.parametrize("district", sorted(SOPS))
@pytest.mark.parametrize("hours", [0, 1, 24, 71.9, 72])
def test_sexual_assault_within_72_hours_is_a_health_emergency_within_30_minutes(
    district: str, hours: float
) -> None:
    decision = route(district, violence_types=["sexual"], hours_since_sexual_assault=hours)
    health = next(r for r in decision.referrals if r.service == Service.HEALTH)
    assert health.priority == Priority.EMERGENCY
    assert health.acknowledgement_deadline == NOW + timedelta(minutes=30)


@pytest.mark.parametrize("district", sorted(SOPS))
def test_sexual_assault_after_72_hours_is_urgent_not_emergency(district: str) -> None:
    decision = route(district, violence_types=["sexual"], hours_since_sexual_assault=72.1)
    health = [r for r in decision.referrals if r.service == Service.HEALTH]
    assert [r.priority for r in health] == [Priority.URGENT]
    assert "sexual-within-72h" not in decision.rules_fired


@pytest.mark.parametrize("district", sorted(SOPS))
def test_mediation_is_never_offered_for_sexual_violence(district: str) -> None:
    decision = route(district, violence_types=["sexual", "psychological", "neglect"])
    assert "family-counselling" not in decision.rules_fired
    assert Service.MEDIATION not in services(decision)


# --- how referrals are put together -------------------------------------------------------


@pytest.mark.parametrize("district", sorted(SOPS))
def test_every_case_gets_exactly_one_case_manager_at_upt_ppa(district: str) -> None:
    for case in case_variations(district):
        decision = decide(SOPS[district], f"{district}-AB12CD34EF", case, NOW)
        managers = [r for r in decision.referrals if r.service == Service.CASE_MANAGEMENT]
        assert [r.agency_id for r in managers] == [f"uptppa-{_name(district)}"]


def test_two_rules_referring_one_service_to_one_agency_merge_into_the_most_urgent() -> None:
    decision = route("3514", immediate_danger=True)
    manager = referral_to(decision, Service.CASE_MANAGEMENT, "uptppa-pasuruan")
    assert manager.priority == Priority.EMERGENCY
    assert manager.acknowledgement_deadline == NOW + timedelta(minutes=15)
    assert manager.rule_ids == ("case-management", "immediate-danger")
    pairs = [(r.agency_id, r.service) for r in decision.referrals]
    assert len(pairs) == len(set(pairs))


def test_merged_deadline_is_the_shortest_even_from_a_less_urgent_rule() -> None:
    decision = route("3514", age_group="child", violence_types=["sexual"])
    police = referral_to(decision, Service.POLICE, "polres-pasuruan-ppa")
    assert police.rule_ids == ("child-protection", "child-sexual")
    assert police.acknowledgement_deadline == NOW + timedelta(minutes=60)


def test_rules_fired_are_listed_in_sop_order() -> None:
    decision = route("3514", violence_types=["trafficking"], immediate_danger=True)
    order = [rule.id for rule in SOPS["3514"].rules]
    assert list(decision.rules_fired) == sorted(decision.rules_fired, key=order.index)


def test_referral_ids_are_numbered_from_the_most_urgent() -> None:
    decision = route("3514", violence_types=["sexual"], hours_since_sexual_assault=2)
    ids = [r.referral_id for r in decision.referrals]
    assert ids == [f"3514-AB12CD34EF-{n:02d}" for n in range(1, len(ids) + 1)]
    rank = {Priority.EMERGENCY: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}
    keys = [(rank[r.priority], r.acknowledgement_deadline) for r in decision.referrals]
    assert keys == sorted(keys)


@pytest.mark.parametrize("district", sorted(SOPS))
def test_same_input_gives_the_same_decision(district: str) -> None:
    for case in case_variations(district)[:50]:
        first = decide(SOPS[district], f"{district}-AB12CD34EF", case, NOW)
        again = decide(SOPS[district], f"{district}-AB12CD34EF", case.model_copy(), NOW)
        assert first == again


@pytest.mark.parametrize("district", sorted(SOPS))
def test_every_escalation_chain_ends_at_the_coordinator(district: str) -> None:
    sop = SOPS[district]
    for case in case_variations(district):
        for referral in decide(sop, f"{district}-AB12CD34EF", case, NOW).referrals:
            assert referral.escalation_chain[-1] == sop.coordinator
            assert referral.agency_id not in referral.escalation_chain
            assert len(set(referral.escalation_chain)) == len(referral.escalation_chain)


def test_nearest_health_facility_escalates_to_the_district_hospital_then_coordinator() -> None:
    decision = route("3514", injury=True, kecamatan="Prigen")
    health = referral_to(decision, Service.HEALTH, "pkm-pandaan")
    assert health.escalation_chain == ("rsud-bangil", "dp3ap2kb-pasuruan")


@pytest.mark.parametrize("kecamatan", [None, "Somewhere Else"])
def test_kecamatan_pick_falls_back_when_no_agency_serves_it(kecamatan: str | None) -> None:
    decision = route("3514", injury=True, kecamatan=kecamatan)
    health = referral_to(decision, Service.HEALTH, "rsud-bangil")
    assert health.escalation_chain == ("dp3ap2kb-pasuruan",)


def test_kecamatan_is_matched_regardless_of_case_and_spacing() -> None:
    decision = route("3513", injury=True, kecamatan="  dringu ")
    assert referral_to(decision, Service.HEALTH, "pkm-dringu")


def test_district_code_with_a_dot_is_the_same_district() -> None:
    decision = route("3514", district_code="35.14")
    assert decision.sop_id == "sop-3514"


def test_decide_refuses_a_case_of_another_district() -> None:
    with pytest.raises(DistrictMismatch, match="SOP 3514 v1 cannot route case 3513-AB12CD34EF"):
        decide(SOPS["3514"], "3513-AB12CD34EF", facts("3513"), NOW)


def test_decision_names_the_sop_and_its_version() -> None:
    decision = route("3513")
    assert (decision.sop_id, decision.sop_version) == ("sop-3513", 1)


def _name(district: str) -> str:
    return {"3514": "pasuruan", "3513": "probolinggo"}[district]


def test_every_condition_field_is_checked_by_exactly_one_check() -> None:
    """A field added to Condition and to no check would be ignored by every rule."""
    from routing.decide import _CHECK_FIELDS, FLAG_FIELDS
    from routing.sop import Condition

    covered = [*FLAG_FIELDS, *(name for _, fields in _CHECK_FIELDS for name in fields)]
    assert sorted(covered) == sorted(Condition.model_fields)
