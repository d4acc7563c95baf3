"""SOP examples: each kind of expectation passes, or fails with a sentence and its line."""

from pathlib import Path

import pytest

from routing.settings import SHIPPED_SOPS
from routing.sop import Sop, SopError, SopIssue, load_sop, parse_sop
from routing.sop.examples import example_problems, run_examples
from routing.sops import SopsInForce
from rujuk_contracts.events import Service

SOP = """\
sop_id: sop-3514
version: 4
district_code: "3514"
name: Test SOP (invented)
sample_data: true
kecamatan: [Bangil, Pandaan]
coordinator: coord-test
on_call:
  contacts:
    - {id: oncall-test, role: Duty officer (invented), channels: [sms]}
  repeat: {rounds: 3, every_minutes: 10}
consent:
  requires_consent: {police: share_with_police, health: share_with_health}
  mandatory_reporting:
    - age_group: child
      services: [police, health]
      legal_basis: "UU 35/2014 Perlindungan Anak (contoh)"
directory:
  - {id: coord-test, name: Coordinator (invented), services: [case_management],
     kecamatan: all, hours: "24/7", channels: [nats]}
  - {id: upt-test, name: UPT (invented), services: [case_management, mediation],
     kecamatan: all, hours: "24/7", channels: [nats]}
  - {id: police-test, name: Police (invented), services: [police],
     kecamatan: all, hours: "24/7", channels: [nats]}
  - {id: clinic-bangil, name: Clinic (invented), services: [health],
     kecamatan: [Bangil], hours: "24/7", channels: [nats]}
  - {id: hospital-test, name: Hospital (invented), services: [health],
     kecamatan: all, hours: "24/7", channels: [nats]}
rules:
  - id: case-management
    description: Every case gets a case manager
    when: {}
    refer:
      - {service: case_management, agency: upt-test, priority: urgent,
         acknowledge_within_minutes: 120}
  - id: sexual
    description: Sexual violence - health at the nearest clinic, police
    when: {any_violence_types: [sexual]}
    refer:
      - {service: health, pick: by_kecamatan, fallback: hospital-test, priority: emergency,
         acknowledge_within_minutes: 30}
      - {service: police, agency: police-test, priority: urgent, acknowledge_within_minutes: 60}
  - id: child
    description: A child - police under mandatory reporting
    when: {age_group: child}
    refer:
      - {service: police, agency: police-test, priority: urgent, acknowledge_within_minutes: 240}
  - id: mediation
    description: Psychological violence - mediation (invented rule, for the tests)
    when: {any_violence_types: [psychological]}
    refer:
      - {service: mediation, agency: upt-test, priority: routine,
         acknowledge_within_minutes: 2880}
examples:
"""

ADULT_SEXUAL = "{violence_types: [sexual], age_group: adult, sex: female, kecamatan: Bangil"
WITH_HEALTH = ", consent: {share_with_health: true}}"


def with_example(facts: str, expect: str, example_id: str = "the-example") -> str:
    """The test SOP with one example; ``expect`` is the YAML under ``expect:``."""
    body = "\n".join(f"      {line}" for line in expect.strip().splitlines())
    return (
        SOP
        + f"  - id: {example_id}\n    speaks_for: clinic-bangil\n"
        + f"    facts: {facts}\n    expect:\n{body}\n"
    )


def checked(text: str) -> Sop:
    """The SOP, as `rujuk sop check` and publishing read it: its examples must pass."""
    return parse_sop(text, run_examples=example_problems)


def issues_of(text: str) -> list[SopIssue]:
    with pytest.raises(SopError) as caught:
        checked(text)
    return caught.value.issues


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing the fragment."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[occurrence - 1]


def one_failure(text: str) -> tuple[int | None, str]:
    [issue] = issues_of(text)
    assert (issue.label, issue.where) == ("SOP 3514 v4", "example the-example")
    return issue.line, issue.reason


# --- each expectation passes --------------------------------------------------------------


def test_an_example_of_every_kind_that_holds_passes() -> None:
    text = with_example(
        ADULT_SEXUAL + WITH_HEALTH,
        """
refer:
  - {service: health, agency: clinic-bangil, min_priority: emergency,
     max_acknowledge_minutes: 30}
  - case_management
never: [mediation, hospital-test]
withheld: police
""",
    )
    sop = checked(text)
    [result] = run_examples(sop)
    assert result.passed
    assert result.example.speaks_for == "clinic-bangil"
    assert result.example.facts.district_code == "3514"  # the SOP's, unless the facts say


def test_a_childs_case_under_mandatory_reporting_passes_a_consent_override() -> None:
    text = with_example(
        "{violence_types: [sexual], age_group: child, sex: male}",
        "consent_override: [police, health]",
    )
    assert all(result.passed for result in run_examples(checked(text)))


def test_a_refer_item_may_name_only_the_service() -> None:
    sop = checked(with_example(ADULT_SEXUAL + "}", "refer: case_management"))
    assert sop.examples[0].expect.refer[0].service == Service.CASE_MANAGEMENT


# --- each expectation fails, with its sentence and its line --------------------------------


def test_a_missing_referral_names_the_service_and_the_rules_that_fired() -> None:
    text = with_example(
        "{violence_types: [physical], age_group: adult, sex: female}", "refer: police"
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "refer: police")
    assert reason == (
        "tidak ada rujukan police / no police referral follows "
        "(aturan yang berlaku / rules fired: case-management)"
    )


def test_a_referral_to_another_agency_says_where_it_goes() -> None:
    text = with_example(
        "{violence_types: [sexual], age_group: adult, sex: female, kecamatan: Pandaan"
        + WITH_HEALTH,
        "refer:\n  - {service: health, agency: clinic-bangil}",
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "{service: health, agency: clinic-bangil}")
    assert reason == (
        "health dirujuk ke hospital-test, bukan clinic-bangil / health goes to hospital-test, "
        "not clinic-bangil (aturan / rules: sexual)"
    )


def test_an_expected_referral_that_consent_withholds_says_so() -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: [health]")
    _, reason = one_failure(text)
    assert reason == (
        "health ditahan / health is withheld: no consent to share with health "
        "(share_with_health is false) (aturan / rules: sexual)"
    )


def test_a_priority_below_the_minimum_points_at_min_priority() -> None:
    text = with_example(
        ADULT_SEXUAL + "}",
        "refer:\n  - service: case_management\n    min_priority: emergency",
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "min_priority: emergency")
    assert reason == (
        "case_management -> upt-test: prioritas urgent, seharusnya paling rendah emergency / "
        "priority urgent, expected emergency or more urgent (aturan / rules: case-management)"
    )


def test_a_deadline_above_the_maximum_points_at_max_acknowledge_minutes() -> None:
    text = with_example(
        ADULT_SEXUAL + "}",
        "refer:\n  - service: case_management\n    max_acknowledge_minutes: 60",
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "max_acknowledge_minutes: 60")
    assert reason == (
        "case_management -> upt-test: dikonfirmasi dalam 120 menit, seharusnya paling lama 60 / "
        "to be acknowledged within 120 minutes, expected 60 at most "
        "(aturan / rules: case-management)"
    )


def test_one_referral_meeting_every_term_is_enough() -> None:
    # Two health referrals cannot follow here; two terms on one referral must hold together.
    text = with_example(
        ADULT_SEXUAL + WITH_HEALTH,
        "refer:\n  - {service: health, min_priority: emergency, max_acknowledge_minutes: 29}",
    )
    _, reason = one_failure(text)
    assert "within 30 minutes, expected 29 at most" in reason


def test_a_service_that_must_never_appear_names_the_referral_and_its_rule() -> None:
    text = with_example(
        "{violence_types: [psychological], age_group: adult, sex: female}",
        "never: [police, mediation]",
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "never: [police, mediation]")
    assert reason == (
        "mediation -> upt-test dirujuk, padahal tidak boleh / mediation -> upt-test is "
        "referred, but must never be (aturan / rules: mediation)"
    )


def test_an_agency_that_must_never_appear_is_named() -> None:
    text = with_example(ADULT_SEXUAL + WITH_HEALTH, "never: clinic-bangil")
    _, reason = one_failure(text)
    assert reason.startswith("health -> clinic-bangil dirujuk, padahal tidak boleh / ")


def test_withheld_fails_when_consent_was_given() -> None:
    text = with_example(
        ADULT_SEXUAL + ", consent: {share_with_police: true}}", "withheld: [police]"
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "withheld: [police]")
    assert reason == (
        "police dirujuk, tidak ditahan / police is referred, not withheld for lack of consent "
        "(aturan / rules: sexual)"
    )


def test_withheld_fails_when_the_law_overrides_consent() -> None:
    text = with_example(
        "{violence_types: [sexual], age_group: child, sex: female}", "withheld: police"
    )
    _, reason = one_failure(text)
    assert "police is referred without consent under a legal basis (UU 35/2014" in reason


def test_withheld_fails_when_no_rule_asks_for_the_service() -> None:
    text = with_example(
        "{violence_types: [other], age_group: adult, sex: female}", "withheld: police"
    )
    _, reason = one_failure(text)
    assert reason == (
        "tidak ada rujukan police yang ditahan / no police referral is withheld: no rule asks "
        "for it (aturan yang berlaku / rules fired: case-management)"
    )


def test_consent_override_fails_when_sent_with_consent() -> None:
    text = with_example(
        "{violence_types: [sexual], age_group: child, sex: female, "
        "consent: {share_with_police: true, given_by: guardian}}",
        "consent_override: police",
    )
    line, reason = one_failure(text)
    assert line == line_of(text, "consent_override: police")
    assert reason == (
        "police dirujuk dengan persetujuan, bukan atas dasar hukum / police is referred with "
        "consent, not under a legal basis (aturan / rules: sexual, child)"
    )


def test_consent_override_fails_for_an_adult_whom_no_law_overrides() -> None:
    text = with_example(ADULT_SEXUAL + "}", "consent_override: police")
    _, reason = one_failure(text)
    assert reason == (
        "police ditahan, tidak ada dasar hukum / police is withheld, no legal basis overrides "
        "consent: no consent to share with police (share_with_police is false)"
    )


def test_consent_override_fails_when_nothing_is_referred() -> None:
    text = with_example(
        "{violence_types: [other], age_group: child, sex: female}", "consent_override: health"
    )
    _, reason = one_failure(text)
    assert reason == (
        "tidak ada rujukan health / no health referral follows "
        "(aturan yang berlaku / rules fired: case-management, child)"
    )


def test_every_failing_example_is_listed_with_its_own_line() -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: police", example_id="first") + (
        "  - id: second\n    speaks_for: upt-test\n"
        "    facts: {violence_types: [psychological], age_group: adult, sex: male}\n"
        "    expect: {never: mediation}\n"
    )
    results = run_examples(parse_sop(text))
    assert [(r.example.id, r.index, r.passed) for r in results] == [
        ("first", 0, False),
        ("second", 1, False),
    ]
    issues = issues_of(text)
    assert [(issue.where, issue.line) for issue in issues] == [
        ("example first", line_of(text, "refer: police")),
        ("example second", line_of(text, "expect: {never: mediation}")),
    ]
    assert str(issues[1]).startswith(
        f"SOP 3514 v4, example second (line {line_of(text, 'never: mediation')}): mediation"
    )


# --- what an example may say, checked before it runs --------------------------------------


def test_an_example_naming_what_the_sop_does_not_have_is_refused_with_its_line() -> None:
    text = (
        SOP
        + "  - id: dup\n    speaks_for: nobody-test\n"
        + "    facts: {violence_types: [sexual], age_group: adult, sex: female,"
        + " kecamatan: Gempol, district_code: '3513'}\n"
        + "    expect:\n      refer: [{service: police, agency: clinic-bangil}, "
        + "{service: health, agency: ghost-test}]\n      never: [nothing-test]\n"
        + "  - id: dup\n    speaks_for: upt-test\n"
        + "    facts: {violence_types: [other], age_group: adult, sex: male}\n"
        + "    expect: {refer: case_management}\n"
    )
    reasons = [f"{issue.line}: {issue.reason}" for issue in issues_of(text)]
    facts_line, refer_line = line_of(text, "kecamatan: Gempol"), line_of(text, "ghost-test")
    assert reasons == [
        f"{line_of(text, 'nobody-test')}: agency 'nobody-test' is not in the directory",
        f"{facts_line}: kecamatan 'Gempol' is not one of the district's kecamatan",
        f"{facts_line}: the facts are of district 3513, not this SOP's 3514: "
        "leave district_code out",
        f"{refer_line}: agency 'clinic-bangil' does not offer police (it offers health)",
        f"{refer_line}: agency 'ghost-test' is not in the directory",
        f"{line_of(text, 'nothing-test')}: 'nothing-test' is neither a service nor an agency "
        "in the directory",
        f"{line_of(text, '  - id: dup', 2)}: example id 'dup' is used twice",
    ]


def test_an_example_that_expects_nothing_or_has_unknown_facts_is_refused() -> None:
    text = (
        SOP
        + "  - id: empty\n    speaks_for: upt-test\n"
        + "    facts: {violence_types: [other], age_group: adult, sex: male, name: Contoh}\n"
        + "    expect: {}\n"
    )
    assert [(issue.line, issue.reason) for issue in issues_of(text)] == [
        (line_of(text, "name: Contoh"), "'facts.name' is not a known field"),
        (
            line_of(text, "expect: {}"),
            "expect: say what must follow: refer, never, withheld or consent_override",
        ),
    ]


def test_examples_run_only_once_the_document_itself_is_sound() -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: police").replace(
        "agency: police-test", "agency: ghost-test", 1
    )
    [issue] = issues_of(text)
    assert issue.reason == "agency 'ghost-test' is not in the directory"


def test_parse_sop_leaves_the_examples_unrun_unless_given_the_runner() -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: police")
    sop = parse_sop(text)  # a version already published: its examples passed then
    [result] = run_examples(sop)
    assert not result.passed


def test_facts_of_another_district_fail_even_where_no_loader_checked_them() -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: case_management")
    data = checked(text).model_dump(mode="json")
    data["examples"][0]["facts"]["district_code"] = "3513"
    [result] = run_examples(Sop.model_validate(data))
    assert (result.example.id, result.index) == ("the-example", 0)
    [failure] = result.failures
    assert failure.location == ("examples", 0, "facts", "district_code")
    assert failure.reason == (
        "fakta dari kabupaten lain / the facts are of district 3513, not 3514"
    )


def test_facts_may_write_the_district_with_a_dot() -> None:
    text = with_example(
        "{violence_types: [other], age_group: adult, sex: male, district_code: '35.14'}",
        "refer: case_management",
    )
    assert run_examples(checked(text))[0].passed


# --- the shipped SOPs ---------------------------------------------------------------------


@pytest.mark.parametrize("district", ["3514", "3513"])
def test_every_example_of_a_shipped_sop_passes(district: str) -> None:
    sop = load_sop(SHIPPED_SOPS / f"{district}.yaml", run_examples=example_problems)
    results = run_examples(sop)
    assert len(results) >= 25
    assert [r.example.id for r in results if not r.passed] == []


@pytest.mark.parametrize("district", ["3514", "3513"])
def test_shipped_examples_cover_the_national_service_standard(district: str) -> None:
    sop = load_sop(SHIPPED_SOPS / f"{district}.yaml")
    expected = {item.service for example in sop.examples for item in example.expect.refer}
    # pengaduan and pengelolaan kasus, penjangkauan, penampungan sementara, mediasi,
    # pendampingan (psychosocial and legal), post-rape care, mandatory reporting
    assert {
        Service.CASE_MANAGEMENT,
        Service.SHELTER,
        Service.MEDIATION,
        Service.PSYCHOSOCIAL,
        Service.LEGAL,
        Service.HEALTH,
        Service.POLICE,
        Service.SOCIAL,
    } <= expected
    sexual_never_mediation = [
        example
        for example in sop.examples
        if "sexual" in example.facts.violence_types and "mediation" in example.expect.never
    ]
    assert sexual_never_mediation
    assert any(example.expect.consent_override for example in sop.examples)
    assert any(example.expect.withheld for example in sop.examples)


@pytest.mark.parametrize("district", ["3514", "3513"])
def test_every_health_facility_of_a_shipped_sop_speaks_for_its_post_rape_mandate(
    district: str,
) -> None:
    sop = load_sop(SHIPPED_SOPS / f"{district}.yaml")
    health = {agency.id for agency in sop.directory if Service.HEALTH in agency.services}
    speaking = {
        example.speaks_for
        for example in sop.examples
        if any(item.service == Service.HEALTH for item in example.expect.refer)
    }
    assert health <= speaking


@pytest.mark.parametrize("district", ["3514", "3513"])
def test_every_kecamatan_has_a_puskesmas_of_its_own_for_post_rape_care(district: str) -> None:
    sop = load_sop(SHIPPED_SOPS / f"{district}.yaml")
    for kecamatan in sop.kecamatan:
        local = [
            agency.id
            for agency in sop.directory
            if Service.HEALTH in agency.services and agency.serves(kecamatan)
        ]
        assert local, f"{sop.label}: no puskesmas lists {kecamatan}"


def test_routing_refuses_at_start_a_file_whose_examples_fail(tmp_path: Path) -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: police")
    (tmp_path / "3514.yaml").write_text(text)
    library = SopsInForce().load_sops(tmp_path)
    assert library.sops == {}
    assert library.refused["3514.yaml"].startswith(
        f"SOP 3514 v4, example the-example (line {line_of(text, 'refer: police')}): "
        "police ditahan / police is withheld"
    )


def test_a_missing_service_is_not_mistaken_for_another_one_withheld() -> None:
    text = with_example(ADULT_SEXUAL + "}", "refer: mediation")  # health, police withheld
    _, reason = one_failure(text)
    assert reason == (
        "tidak ada rujukan mediation / no mediation referral follows "
        "(aturan yang berlaku / rules fired: case-management, sexual)"
    )


def test_a_service_sent_to_other_agencies_names_them_all() -> None:
    text = with_example(
        ADULT_SEXUAL + "}", "refer:\n  - {service: case_management, agency: hospital-test}"
    ).replace(
        "services: [health],\n     kecamatan: all",
        "services: [health, case_management],\n     kecamatan: all",
    )
    text = text.replace(
        "      - {service: police, agency: police-test, priority: urgent, "
        "acknowledge_within_minutes: 60}",
        "      - {service: police, agency: police-test, priority: urgent, "
        "acknowledge_within_minutes: 60}\n"
        "      - {service: case_management, agency: coord-test, priority: emergency,\n"
        "         acknowledge_within_minutes: 15}",
    )
    _, reason = one_failure(text)
    assert reason == (
        "case_management dirujuk ke coord-test, upt-test, bukan hospital-test / "
        "case_management goes to coord-test, upt-test, not hospital-test (aturan / rules: sexual)"
    )
