"""The SOP cross-checks one by one, on documents broken in one place each: what each problem
says and where it points, and that a malformed part is left to the schema instead of
crashing the checks (issue 26: each test here kills mutants of routing/sop/checks.py)."""

import copy
from typing import Any

import pytest
import yaml

from routing.sop import SopError, load_sop
from routing.sop.checks import (
    Problem,
    _from_pydantic,
    cross_check_problems,
    duplicate_keys,
    schema_problems,
)
from tests.unit.test_routing_sop import VALID, line_of

BASE: dict[str, Any] = yaml.safe_load(VALID)


def document(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def police_item(**changes: Any) -> dict[str, Any]:
    item = {
        "service": "police",
        "agency": "police-test",
        "priority": "urgent",
        "acknowledge_within_minutes": 60,
    }
    return {**item, **changes}


def with_police_item(**changes: Any) -> dict[str, Any]:
    data = document()
    data["rules"][1]["refer"] = [police_item(**changes)]
    return data


def fact(location: tuple[str | int, ...], reason: str) -> Problem:
    return Problem(location, reason, show_path=False)


HERE = ("rules", 1, "refer", 0)


# --- duplicated YAML keys --------------------------------------------------------------------


def test_a_key_repeated_deep_inside_is_named_by_its_full_location_once() -> None:
    text = "rules:\n  - id: a\n    id: b\n    id: c\n    when: {injury: true, injury: false}\n"
    assert list(duplicate_keys(yaml.compose(text))) == [
        fact(("rules", 0, "id"), "key 'id' appears more than once"),
        fact(("rules", 0, "when", "injury"), "key 'injury' appears more than once"),
    ]


def test_a_key_that_is_not_text_is_not_checked_for_repeats() -> None:
    text = "? [a, b]\n: 1\n? [a, b]\n: 2\nc: {d: 1}\n"
    assert list(duplicate_keys(yaml.compose(text))) == []


# --- pydantic's errors as problems --------------------------------------------------------------


def test_a_missing_field_deep_in_a_rule_is_named_with_its_path() -> None:
    text = VALID.replace("        priority: urgent\n        acknowledge_within_minutes: 60\n", "")
    text += "        acknowledge_within_minutes: 60\n"
    with pytest.raises(SopError) as caught:
        load_sop(text)
    assert str(caught.value) == (
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, '- service: police')}): "
        "'refer[0].priority' is required"
    )


def test_a_missing_field_is_marked_missing() -> None:
    data = with_police_item()
    del data["rules"][1]["refer"][0]["priority"]
    assert schema_problems(data) == [
        Problem(("rules", 1, "refer", 0, "priority"), "'{path}' is required", missing=True)
    ]


@pytest.mark.parametrize(
    ("changes", "location", "got"),
    [
        ({"pick": "by_desa", "fallback": "police-test"}, "pick", "'by_desa'"),
        ({"service": "dukun"}, "service", "'dukun'"),
    ],
)
def test_a_value_outside_its_choices_says_what_was_given(
    changes: dict[str, Any], location: str, got: str
) -> None:
    data = with_police_item(**changes)
    if "pick" in changes:
        del data["rules"][1]["refer"][0]["agency"]
    problems = [p for p in schema_problems(data) if p.location[-1] == location]
    assert problems
    assert all(p.reason.endswith(f", got {got}") for p in problems)


def test_a_pattern_mismatch_says_what_was_given() -> None:
    [problem] = schema_problems(document(sop_id="SOP Pasuruan"))
    assert problem.location == ("sop_id",)
    assert problem.reason.endswith(", got 'SOP Pasuruan'")


@pytest.mark.parametrize("prefix", ["Value error, ", "Assertion failed, "])
def test_pydantics_prefixes_are_taken_off_the_reason(prefix: str) -> None:
    error = {"type": "value_error", "loc": ("rules", 0), "msg": f"{prefix}CONTOH reason"}
    assert _from_pydantic(error) == Problem(("rules", 0), "CONTOH reason")


# --- malformed parts are the schema's, not a crash ---------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"directory": "CONTOH", "rules": 5},
        {"directory": ["CONTOH", {"id": 5}, {"id": 5}]},
        {"rules": ["CONTOH", {"id": "no-refer", "when": {}}]},
    ],
)
def test_malformed_sections_are_skipped_by_the_cross_checks(changes: dict[str, Any]) -> None:
    problems = cross_check_problems(document(**changes))
    assert all("used twice" not in p.reason for p in problems)
    assert all(p.location[0] != "directory" for p in problems)


def test_a_refer_item_that_is_not_a_mapping_or_names_no_service_is_skipped() -> None:
    data = document()
    data["rules"][1]["refer"] = ["CONTOH", police_item(service="dukun"), {"refer": "x"}]
    assert cross_check_problems(data) == []


def test_a_rule_whose_refer_is_not_a_list_is_skipped() -> None:
    data = document()
    data["rules"][1]["refer"] = police_item(agency="nowhere")
    assert cross_check_problems(data) == []


# --- the cross-checks, exactly ------------------------------------------------------------------


def test_a_repeated_rule_id_points_at_the_second_ones_id() -> None:
    data = document()
    data["rules"].insert(0, {"description": "no id (CONTOH)"})
    data["rules"][2]["id"] = "case-management"
    assert cross_check_problems(data) == [
        fact(("rules", 2, "id"), "rule id 'case-management' is used twice")
    ]


def test_without_a_case_manager_the_problem_points_at_the_rules() -> None:
    data = document()
    data["rules"][0]["when"] = {"injury": True}
    assert cross_check_problems(data) == [
        fact(
            ("rules",),
            "no rule gives every case a case manager: add a rule with an empty 'when' "
            "that refers case_management",
        )
    ]


def test_every_unknown_kecamatan_is_named_in_agencies_and_rules() -> None:
    data = document()
    data["directory"][1]["kecamatan"] = ["Bangil", "Pandan"]
    data["directory"][2]["kecamatan"] = ["Gempoll"]
    data["rules"][1]["when"]["kecamatan"] = ["pandaan", "Nowhere"]
    unknown = "kecamatan '{}' is not one of the district's kecamatan"
    assert cross_check_problems(data) == [
        fact(("directory", 1, "kecamatan", 1), unknown.format("Pandan")),
        fact(("directory", 2, "kecamatan", 0), unknown.format("Gempoll")),
        fact(("rules", 1, "when", "kecamatan", 1), unknown.format("Nowhere")),
    ]


def test_an_unknown_fallback_is_named_even_when_the_agency_is_picked() -> None:
    data = with_police_item(agency=None, pick="by_kecamatan", fallback="polres-nowhere")
    del data["rules"][1]["refer"][0]["agency"]
    data["directory"][2]["kecamatan"] = ["Bangil"]
    assert cross_check_problems(data) == [
        fact((*HERE, "fallback"), "agency 'polres-nowhere' is not in the directory")
    ]


def test_an_escalation_chain_names_each_unknown_repeated_or_self_step() -> None:
    data = with_police_item(escalate_to=["nowhere", "upt-test", "upt-test", "police-test"])
    at = (*HERE, "escalate_to")
    assert cross_check_problems(data) == [
        fact((*at, 0), "agency 'nowhere' is not in the directory"),
        fact((*at, 2), "agency 'upt-test' appears twice in escalate_to"),
        fact((*at, 3), "agency 'police-test' cannot escalate to itself"),
    ]


def test_a_chain_ending_at_the_coordinator_is_fine() -> None:
    data = with_police_item(escalate_to=["upt-test", "coord-test"])
    assert cross_check_problems(data) == []


def test_the_coordinator_before_the_end_of_the_chain_is_named() -> None:
    data = with_police_item(escalate_to=["coord-test", "upt-test"])
    assert cross_check_problems(data) == [
        fact(
            (*HERE, "escalate_to", 0),
            "the coordinator 'coord-test' may only be the last escalation step",
        )
    ]
