"""Which agencies a proposed SOP version must be signed off by: those it asks more of."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.settings import SHIPPED_SOPS
from routing.sop import Sop, load_sop
from routing.sop.duties import AgencyDutyChanges, duty_changes, reachable_agencies
from rujuk_contracts.events import DutyChange, Priority, Service

PASURUAN = load_sop(SHIPPED_SOPS / "3514.yaml")
PROBOLINGGO = load_sop(SHIPPED_SOPS / "3513.yaml")
EXAMPLES = 60


def edited(sop: Sop, edit: Any) -> Sop:
    """``sop`` with ``edit(document)`` applied to its data, validated again."""
    document = sop.model_dump(mode="json", exclude_none=True)
    edit(document)
    document["version"] = sop.version + 1
    return Sop.model_validate(document)


def rule(document: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in document["rules"] if r["id"] == rule_id)


def asked(changes: list[AgencyDutyChanges]) -> dict[str, list[DutyChange]]:
    return {agency.agency_id: agency.codes for agency in changes}


def test_the_version_in_force_itself_asks_nobody() -> None:
    assert duty_changes(PASURUAN, PASURUAN) == []
    assert duty_changes(PROBOLINGGO, edited(PROBOLINGGO, lambda d: None)) == []


def test_a_shorter_deadline_under_a_rule_asks_that_agency() -> None:
    def shorter(document: dict[str, Any]) -> None:
        rule(document, "child-sexual")["refer"][0]["acknowledge_within_minutes"] = 30

    [police] = duty_changes(PASURUAN, edited(PASURUAN, shorter))
    assert police.agency_id == "polres-pasuruan-ppa"
    [change] = police.changes
    assert (change.code, change.service, change.rule_id) == (
        DutyChange.SHORTER_DEADLINE,
        Service.POLICE,
        "child-sexual",
    )
    assert (change.before, change.after) == ("60 min", "30 min")


def test_a_longer_deadline_a_lower_priority_or_a_rule_removed_asks_nobody() -> None:
    def relaxed(document: dict[str, Any]) -> None:
        item = rule(document, "child-sexual")["refer"][0]
        item["acknowledge_within_minutes"] = 600
        item["priority"] = Priority.ROUTINE.value
        document["rules"] = [r for r in document["rules"] if r["id"] != "injury"]

    assert duty_changes(PASURUAN, edited(PASURUAN, relaxed)) == []


def test_a_higher_priority_asks_that_agency() -> None:
    def urgent(document: dict[str, Any]) -> None:
        rule(document, "adult-police-report")["refer"][0]["priority"] = "emergency"

    assert asked(duty_changes(PASURUAN, edited(PASURUAN, urgent))) == {
        "polres-pasuruan-ppa": [DutyChange.HIGHER_PRIORITY]
    }


def test_a_new_service_asks_the_agency_and_a_new_rule_no_stricter_asks_nobody() -> None:
    def more(document: dict[str, Any]) -> None:
        rule(document, "child-protection")["refer"].append(
            {
                "service": "shelter",
                "agency": "uptppa-pasuruan",
                "priority": "urgent",
                "acknowledge_within_minutes": 240,
            }
        )
        renamed = dict(rule(document, "child-sexual"), id="child-sexual-renamed")
        document["rules"].append(renamed)

    changes = duty_changes(PASURUAN, edited(PASURUAN, more))
    assert asked(changes) == {"uptppa-pasuruan": [DutyChange.NEW_SERVICE]}
    assert changes[0].changes[0].service is Service.SHELTER


def test_joining_the_directory_and_a_new_escalation_step_are_asked() -> None:
    def newcomer(document: dict[str, Any]) -> None:
        document["directory"].append(
            {
                "id": "lk3-contoh",
                "name": "LK3 (invented)",
                "services": ["psychosocial"],
                "kecamatan": "all",
                "hours": "24/7",
                "channels": ["nats"],
            }
        )
        rule(document, "suicidal-thoughts")["refer"][0]["escalate_to"] = ["lk3-contoh"]
        rule(document, "child-sexual")["refer"][0]["escalate_to"] = ["rsud-bangil"]

    assert asked(duty_changes(PASURUAN, edited(PASURUAN, newcomer))) == {
        "lk3-contoh": [DutyChange.JOINS_DIRECTORY, DutyChange.NEW_ESCALATION_STEP],
    }  # rsud-bangil is in other chains already: not a new step for it


def test_pick_by_kecamatan_asks_every_agency_it_may_reach() -> None:
    def faster(document: dict[str, Any]) -> None:
        rule(document, "injury")["refer"][0]["acknowledge_within_minutes"] = 60

    changes = asked(duty_changes(PASURUAN, edited(PASURUAN, faster)))
    assert "pkm-bangil" in changes  # a puskesmas
    assert "rsud-bangil" in changes  # and the fallback
    assert all(codes == [DutyChange.SHORTER_DEADLINE] for codes in changes.values())


def test_the_coordinator_proposes_and_is_never_asked() -> None:
    def coordinator_more(document: dict[str, Any]) -> None:
        rule(document, "case-management")["refer"].append(
            {
                "service": "case_management",
                "agency": "dp3ap2kb-pasuruan",
                "priority": "emergency",
                "acknowledge_within_minutes": 10,
            }
        )

    assert duty_changes(PASURUAN, edited(PASURUAN, coordinator_more)) == []


def test_with_no_sop_in_force_every_agency_but_the_coordinator_is_asked() -> None:
    changes = asked(duty_changes(None, PASURUAN))
    assert set(changes) == {a.id for a in PASURUAN.directory} - {PASURUAN.coordinator}
    assert all(codes[0] is DutyChange.JOINS_DIRECTORY for codes in changes.values())


# --- properties -----------------------------------------------------------------------------


@st.composite
def variants(draw: st.DrawFn) -> Sop:
    """A shipped SOP with random deadlines and priorities on some of its refer items."""
    sop = draw(st.sampled_from([PASURUAN, PROBOLINGGO]))
    document = sop.model_dump(mode="json", exclude_none=True)
    items = [item for r in document["rules"] for item in r["refer"]]
    for item in draw(st.lists(st.sampled_from(items), max_size=5)):
        item["acknowledge_within_minutes"] = draw(st.integers(min_value=1, max_value=2000))
        item["priority"] = draw(st.sampled_from([p.value for p in Priority]))
    return Sop.model_validate(document)


@settings(max_examples=EXAMPLES, deadline=None)
@given(variants())
def test_a_proposal_identical_to_the_version_in_force_asks_nobody(sop: Sop) -> None:
    assert duty_changes(sop, sop) == []
    assert duty_changes(sop, Sop.model_validate(sop.model_dump())) == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(variants(), st.data())
def test_only_relaxing_every_duty_asks_nobody(sop: Sop, data: st.DataObject) -> None:
    document = sop.model_dump(mode="json", exclude_none=True)
    for r in document["rules"]:
        for item in r["refer"]:
            item["acknowledge_within_minutes"] += data.draw(st.integers(0, 500))
            if data.draw(st.booleans()):
                item["priority"] = Priority.ROUTINE.value
    assert duty_changes(sop, Sop.model_validate(document)) == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(variants(), st.data())
def test_tightening_a_fixed_agency_deadline_asks_that_agency(sop: Sop, data: st.DataObject) -> None:
    document = sop.model_dump(mode="json", exclude_none=True)
    fixed = [
        (r["id"], item)
        for r in document["rules"]
        for item in r["refer"]
        if item.get("agency") not in (None, sop.coordinator)
        and item["acknowledge_within_minutes"] > 1
    ]
    rule_id, item = data.draw(st.sampled_from(fixed))
    item["acknowledge_within_minutes"] = data.draw(
        st.integers(1, item["acknowledge_within_minutes"] - 1)
    )
    changes = {a.agency_id: a for a in duty_changes(sop, Sop.model_validate(document))}
    assert any(
        c.code is DutyChange.SHORTER_DEADLINE and c.rule_id == rule_id
        for c in changes[item["agency"]].changes
    )


def test_a_rule_firing_on_other_cases_asks_every_agency_it_reaches() -> None:
    """Police would get every adult case too: the referral's terms are unchanged, but not
    the cases that reach it."""

    def wider(document: dict[str, Any]) -> None:
        rule(document, "child-protection")["when"] = {}

    changes = duty_changes(PASURUAN, edited(PASURUAN, wider))
    reached = {
        agency_id
        for item in next(r for r in PASURUAN.rules if r.id == "child-protection").refer
        for agency_id in reachable_agencies(PASURUAN, item)
    } - {PASURUAN.coordinator}
    assert reached
    assert {a for a, codes in asked(changes).items() if DutyChange.CONDITIONS_CHANGED in codes} == (
        reached
    )


def test_a_consent_policy_change_asks_the_agencies_of_that_service() -> None:
    def without_consent(document: dict[str, Any]) -> None:
        document["consent"]["mandatory_reporting"][0]["legal_basis"] = "UU 35/2014 (invented)"

    changes = asked(duty_changes(PASURUAN, edited(PASURUAN, without_consent)))
    assert changes
    assert all(codes == [DutyChange.CONSENT_POLICY_CHANGED] for codes in changes.values())


def test_a_new_coordinator_is_asked_whatever_else_changes_for_it() -> None:
    new_coordinator = next(a.id for a in PASURUAN.directory if a.id != PASURUAN.coordinator)

    def handed_over(document: dict[str, Any]) -> None:
        document["coordinator"] = new_coordinator

    changes = asked(duty_changes(PASURUAN, edited(PASURUAN, handed_over)))
    assert DutyChange.BECOMES_COORDINATOR in changes[new_coordinator]
    assert PASURUAN.coordinator not in changes
