"""Loading SOPs: the shipped ones are valid, and a broken one says every problem and its line."""

from datetime import time
from pathlib import Path

import pytest

from routing.settings import SHIPPED_SOPS
from routing.sop import SopError, load_sop, load_sop_folder, parse_hours

VALID = """\
sop_id: sop-3514
version: 4
district_code: "3514"
name: Test SOP (invented)
sample_data: true
kecamatan: [Bangil, Pandaan]
coordinator: coord-test
on_call:
  contacts:
    - {id: oncall-test, role: Duty officer (invented), channels: [sms, email]}
  repeat: {rounds: 3, every_minutes: 10}
consent:
  requires_consent: {police: share_with_police}
  mandatory_reporting:
    - age_group: child
      services: [police]
      legal_basis: "UU 35/2014 Perlindungan Anak, Pasal 72"
directory:
  - id: coord-test
    name: Coordinator (invented)
    services: [case_management]
    kecamatan: all
    hours: mon-fri 07:30-15:30
    channels: [nats]
  - id: upt-test
    name: UPT PPA (invented)
    services: [case_management, psychosocial]
    kecamatan: all
    hours: "24/7"
    channels: [nats, webhook]
  - id: police-test
    name: Police (invented)
    services: [police]
    kecamatan: all
    hours: "24/7"
    channels: [nats]
rules:
  - id: case-management
    description: Every case gets a case manager
    when: {}
    refer:
      - service: case_management
        agency: upt-test
        priority: urgent
        acknowledge_within_minutes: 120
  - id: child-sexual
    description: Child sexual violence
    when:
      age_group: child
      any_violence_types: [sexual]
    refer:
      - service: police
        agency: police-test
        priority: urgent
        acknowledge_within_minutes: 60
"""


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing the fragment."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[occurrence - 1]


def errors_of(text: str) -> list[str]:
    with pytest.raises(SopError) as caught:
        load_sop(text)
    return str(caught.value).splitlines()


def test_valid_sop_loads() -> None:
    sop = load_sop(VALID)
    assert sop.label == "SOP 3514 v4"
    assert [rule.id for rule in sop.rules] == ["case-management", "child-sexual"]
    assert sop.agency("upt-test").working_hours is None


@pytest.mark.parametrize("district", ["3514", "3513"])
def test_shipped_sops_load_and_say_they_are_sample_data(district: str) -> None:
    path = SHIPPED_SOPS / f"{district}.yaml"
    sop = load_sop(path)
    assert sop.district_code == district
    assert sop.sample_data
    assert all(agency.sample_data for agency in sop.directory)
    assert "SAMPLE DATA" in path.read_text().splitlines()[0]


def test_shipped_agency_ids_follow_the_naming_of_the_district_partners() -> None:
    ids = {agency.id for agency in load_sop(SHIPPED_SOPS / "3514.yaml").directory}
    assert {"rsud-bangil", "pkm-pandaan", "polres-pasuruan-ppa", "uptppa-pasuruan"} <= ids
    assert load_sop(SHIPPED_SOPS / "3514.yaml").coordinator == "dp3ap2kb-pasuruan"


def test_unknown_agency_in_a_rule_names_the_sop_rule_and_line() -> None:
    text = VALID.replace("agency: police-test", "agency: pkm-bangil")
    assert errors_of(text) == [
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'pkm-bangil')}): "
        "agency 'pkm-bangil' is not in the directory"
    ]


def test_broken_sop_lists_every_error_with_its_line() -> None:
    text = (
        VALID.replace("hours: mon-fri 07:30-15:30", "hours: whenever")
        .replace(
            "priority: urgent\n        acknowledge_within_minutes: 60",
            "priority: high\n        acknowledge_within_minutes: 60\n        colour: red",
        )
        .replace("  - id: police-test", "  - id: Police Test")
        .replace("agency: upt-test", "agency: nowhere")
        .replace("    when: {}\n", "")
    )
    errors = errors_of(text)
    assert errors == [
        f"SOP 3514 v4, agency coord-test (line {line_of(text, 'whenever')}): "
        "hours: must be '24/7' or like 'mon-fri 07:30-15:30', got 'whenever'",
        f"SOP 3514 v4, agency Police Test (line {line_of(text, 'Police Test')}): "
        "id: agency id 'Police Test' must be lowercase letters, digits and dashes "
        "(it becomes a NATS subject token)",
        f"SOP 3514 v4, rule case-management (line {line_of(text, 'id: case-management')}): "
        "'when' is required",
        f"SOP 3514 v4, rule case-management (line {line_of(text, 'nowhere')}): "
        "agency 'nowhere' is not in the directory",
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'agency: police-test')}): "
        "agency 'police-test' is not in the directory",
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'priority: high')}): "
        "refer[0].priority: Input should be 'emergency', 'urgent' or 'routine', got 'high'",
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'colour')}): "
        "'refer[0].colour' is not a known field",
    ]


def test_error_reports_missing_top_level_fields_at_the_document_start() -> None:
    text = VALID.replace("coordinator: coord-test\n", "")
    assert errors_of(text) == ["SOP 3514 v4 (line 1): 'coordinator' is required"]


def test_coordinator_must_be_in_the_directory() -> None:
    text = VALID.replace("coordinator: coord-test", "coordinator: dp3ap2kb-nowhere")
    assert errors_of(text) == [
        "SOP 3514 v4 (line 7): coordinator 'dp3ap2kb-nowhere' is not in the directory"
    ]


def test_agency_ids_and_rule_ids_must_be_unique() -> None:
    text = VALID.replace("id: police-test", "id: upt-test").replace(
        "id: child-sexual", "id: case-management"
    )
    errors = errors_of(text)
    assert (
        f"SOP 3514 v4, agency upt-test (line {line_of(text, 'id: upt-test', 2)}): "
        "agency id 'upt-test' is used twice" in errors
    )
    assert any("rule id 'case-management' is used twice" in error for error in errors)


def test_agency_must_offer_the_service_it_is_referred() -> None:
    text = VALID.replace("agency: police-test", "agency: upt-test")
    assert errors_of(text) == [
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'agency: upt-test', 2)}): "
        "agency 'upt-test' does not offer police (it offers case_management, psychosocial)"
    ]


def test_sop_without_a_case_manager_for_every_case_is_refused() -> None:
    text = VALID.replace("    when: {}\n", "    when: {injury: true}\n")
    [error] = errors_of(text)
    assert "no rule gives every case a case manager" in error


def test_coordinator_may_only_be_the_last_escalation_step() -> None:
    text = VALID.replace(
        "acknowledge_within_minutes: 60",
        "acknowledge_within_minutes: 60\n        escalate_to: [coord-test, upt-test]",
    )
    assert errors_of(text) == [
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'escalate_to')}): "
        "the coordinator 'coord-test' may only be the last escalation step"
    ]


def test_pick_by_kecamatan_needs_a_fallback_and_excludes_a_fixed_agency() -> None:
    text = VALID.replace("agency: police-test", "agency: police-test\n        pick: by_kecamatan")
    assert errors_of(text) == [
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, '- service: police')}): "
        "refer[0]: give either 'agency' or 'pick' (by_kecamatan, by_village), not both or neither",
        f"SOP 3514 v4, rule child-sexual (line {line_of(text, 'pick:')}): "
        "no agency lists kecamatan for police: the pick would always use the fallback",
    ]


def test_directory_kecamatan_must_be_one_of_the_district() -> None:
    text = VALID.replace(
        '    kecamatan: all\n    hours: "24/7"\n    channels: [nats, webhook]',
        '    kecamatan: [Bangil, Pandan]\n    hours: "24/7"\n    channels: [nats, webhook]',
    )
    assert errors_of(text) == [
        f"SOP 3514 v4, agency upt-test (line {line_of(text, 'Pandan]')}): "
        "kecamatan 'Pandan' is not one of the district's kecamatan"
    ]


def test_yaml_syntax_error_names_its_line() -> None:
    text = VALID.replace("kecamatan: [Bangil, Pandaan]", "kecamatan: [Bangil, Pandaan")
    [error] = errors_of(text)
    assert error.startswith("SOP <text> (line 7): not valid YAML")


def test_a_date_that_is_none_is_a_refusal_with_its_line_not_a_crash() -> None:
    assert errors_of("2026-02-30") == [
        "SOP <text> (line 1): not valid YAML: day is out of range for month"
    ]
    text = VALID.replace("version: 4\n", "version: 4\nreviewed: 2026-02-30\n")
    [error] = errors_of(text)
    assert error.startswith("SOP <text> (line 3): not valid YAML: day is out of range")


def test_a_key_given_twice_is_an_error_not_silently_the_last() -> None:
    text = VALID.replace("version: 4\n", "version: 4\nversion: 5\n")
    assert errors_of(text) == ["SOP 3514 v5 (line 2): key 'version' appears more than once"]


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert errors_of("- just\n- a list\n") == [
        "SOP <text> (line 1): the document must be a mapping"
    ]


def test_load_sop_reads_a_path_or_a_path_string_or_text(tmp_path: Path) -> None:
    path = tmp_path / "3514.yaml"
    path.write_text(VALID)
    assert load_sop(path) == load_sop(str(path)) == load_sop(VALID)


def test_error_from_a_file_names_the_file_when_the_district_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "3514.yaml"
    path.write_text("sop_id: [\n")
    with pytest.raises(SopError, match=r"^SOP 3514.yaml \(line 2\): not valid YAML"):
        load_sop(path)


def test_broken_file_is_refused_and_other_districts_still_load(tmp_path: Path) -> None:
    (tmp_path / "3514.yaml").write_text(VALID)
    (tmp_path / "3513.yaml").write_text(
        VALID.replace('"3514"', '"3513"').replace("version: 4", "version: four")
    )
    library = load_sop_folder(tmp_path)
    assert set(library.sops) == {"3514"}
    assert "version" in library.refused["3513.yaml"]


def test_file_must_be_named_for_its_district(tmp_path: Path) -> None:
    (tmp_path / "3513.yaml").write_text(VALID)
    library = load_sop_folder(tmp_path)
    assert library.sops == {}
    assert library.refused["3513.yaml"] == (
        "SOP 3514 v4: file 3513.yaml holds district 3514; name it 3514.yaml"
    )


def test_shipped_folder_has_both_districts_and_refuses_nothing() -> None:
    library = load_sop_folder(SHIPPED_SOPS)
    assert set(library.sops) == {"3513", "3514"}
    assert library.refused == {}


@pytest.mark.parametrize(
    ("text", "days", "opens", "closes"),
    [
        ("mon-fri 07:30-15:30", ("mon", "tue", "wed", "thu", "fri"), time(7, 30), time(15, 30)),
        ("sat-sun 08:00-12:00", ("sat", "sun"), time(8), time(12)),
    ],
)
def test_working_hours_are_parsed(
    text: str, days: tuple[str, ...], opens: time, closes: time
) -> None:
    hours = parse_hours(text)
    assert hours is not None
    assert (hours.days, hours.opens, hours.closes) == (days, opens, closes)


@pytest.mark.parametrize(
    "text", ["always", "fri-mon 08:00-12:00", "mon-fri 16:00-08:00", "mon-fri 25:00-26:00"]
)
def test_impossible_working_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"hours|must be"):
        parse_hours(text)


def test_no_sop_can_send_an_adult_case_to_the_police_without_consent() -> None:
    ungated = VALID.replace("requires_consent: {police: share_with_police}", "requires_consent: {}")
    assert errors_of(ungated) == [
        f"SOP 3514 v4 (line {line_of(ungated, 'consent:')}): "
        "consent: requires_consent must map police to share_with_police"
    ]
    adults = VALID.replace("- age_group: child", "- age_group: adult")
    assert errors_of(adults) == [
        f"SOP 3514 v4 (line {line_of(adults, 'consent:')}): "
        "consent: mandatory reporting to the police is for children only"
    ]


ON_CALL = """\
on_call:
  contacts:
    - {id: oncall-test, role: Duty officer (invented), channels: [sms, email]}
  repeat: {rounds: 3, every_minutes: 10}
"""


def test_every_sop_must_name_who_is_paged_past_the_coordinator() -> None:
    assert ON_CALL in VALID
    assert errors_of(VALID.replace(ON_CALL, "")) == ["SOP 3514 v4 (line 1): 'on_call' is required"]
    no_one = VALID.replace(
        ON_CALL, "on_call: {contacts: [], repeat: {rounds: 1, every_minutes: 5}}\n"
    )
    [error] = errors_of(no_one)
    assert "on_call.contacts" in error
    assert "at least 1 item" in error


def test_on_call_entries_are_checked_with_their_lines() -> None:
    text = VALID.replace(
        ON_CALL,
        """\
on_call:
  contacts:
    - {id: oncall-test, role: Duty officer, channels: [sms, sms]}
    - {id: oncall-test, role: Head of office, channels: [nats]}
    - {id: Not A Slug, role: Someone, channels: [email]}
  repeat: {rounds: 0, every_minutes: 10}
""",
    )
    errors = errors_of(text)
    assert any(
        f"(line {line_of(text, 'channels: [sms, sms]')})" in e and "a channel is listed twice" in e
        for e in errors
    ), errors
    assert any(
        f"(line {line_of(text, 'channels: [nats]')})" in e and "'nats'" in e for e in errors
    ), errors
    twice = line_of(text, "id: oncall-test", 2)
    assert f"SOP 3514 v4 (line {twice}): on-call id 'oncall-test' is used twice" in errors, errors
    assert any("Not A Slug" in e for e in errors), errors
    assert any(
        f"(line {line_of(text, 'rounds: 0')})" in e and "greater than or equal to 1" in e
        for e in errors
    ), errors


def test_the_on_call_list_is_read_with_its_repeat_policy() -> None:
    sop = load_sop(VALID)
    [entry] = sop.on_call.contacts
    assert (entry.id, entry.role) == ("oncall-test", "Duty officer (invented)")
    assert [str(c) for c in entry.page_channels()] == ["sms", "email"]
    assert (sop.on_call.repeat.rounds, sop.on_call.repeat.every_minutes) == (3, 10)
