"""The rule-by-rule diff of two SOP versions and the impact simulation over past cases (pure)."""

import functools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from routing import cli
from routing.decide import decide
from routing.settings import SHIPPED_SOPS
from routing.simulate import (
    MAX_LISTED_CASES,
    Outcome,
    PastCase,
    Simulation,
    iso_week,
    simulate,
)
from routing.sop import Sop, parse_sop
from routing.sop.diff import rule_diff
from rujuk_contracts.triage import Consent, TriageFacts
from tests.unit.test_routing_properties import triage_facts

TEXT = (SHIPPED_SOPS / "3514.yaml").read_text()
BASE = parse_sop(TEXT)
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # ISO week 2026-W45
EXAMPLES = 50


@functools.cache  # parsing takes ~130 ms; the property tests ask for the same few versions
def edited(*replacements: tuple[str, str], version: int = 2) -> Sop:
    text = TEXT.replace("version: 1", f"version: {version}", 1)
    for old, new in replacements:
        assert text.count(old) >= 1, old
        text = text.replace(old, new, 1)
    return parse_sop(text)


SUICIDAL_HEALTH = (
    "      - service: health\n        agency: rsud-bangil\n        priority: urgent\n"
    "        acknowledge_within_minutes: 60\n"
)
FASTER_HEALTH = SUICIDAL_HEALTH.replace("urgent", "emergency").replace(": 60", ": 30")


def adult(suicidal: bool = False, **consent: bool) -> TriageFacts:
    return TriageFacts(
        violence_types=["psychological"],
        age_group="adult",
        sex="female",
        suicidal_thoughts=suicidal,
        consent=Consent(**consent),
        district_code="3514",
        kecamatan="Bangil",
    )


def case(number: int, facts: TriageFacts | None, at: datetime = MONDAY) -> PastCase:
    return PastCase(f"3514-{number:010d}", at, facts)


# --- diff ----------------------------------------------------------------------------------


def test_a_version_against_itself_differs_in_nothing_but_its_number() -> None:
    diff = rule_diff(BASE, edited())
    assert diff.unchanged
    assert "no change" in diff.text()


def test_a_changed_rule_names_the_fields_and_shows_a_unified_diff() -> None:
    diff = rule_diff(BASE, edited((SUICIDAL_HEALTH, FASTER_HEALTH)))
    [change] = diff.rules
    assert (change.rule_id, change.kind) == ("suicidal-thoughts", "changed")
    assert {(c.path, c.before, c.after) for c in change.changes} == {
        ("refer[health@rsud-bangil].priority", "urgent", "emergency"),
        ("refer[health@rsud-bangil].acknowledge_within_minutes", 60, 30),
    }
    assert "-  acknowledge_within_minutes: 60" in change.text
    assert "+  acknowledge_within_minutes: 30" in change.text
    assert (diff.moved, diff.directory, diff.sections) == ((), (), ())
    assert diff.to_json()["summary"]["rules_changed"] == ["suicidal-thoughts"]


def test_rules_added_removed_and_moved_are_told_apart() -> None:
    rules = [rule.model_dump(exclude_none=True) for rule in BASE.rules]
    by_id = {rule["id"]: rule for rule in rules}
    reordered = [r for r in rules if r["id"] not in ("injury", "disability")]
    reordered.insert(0, by_id["injury"])  # injury fires first now
    reordered.append({**by_id["family-counselling"], "id": "family-counselling-2"})
    after = Sop.model_validate(
        {**BASE.model_dump(exclude_none=True), "version": 2, "rules": reordered}
    )
    diff = rule_diff(BASE, after)
    assert diff.of_kind("added") == ["family-counselling-2"]
    assert diff.of_kind("removed") == ["disability"]
    assert diff.of_kind("changed") == []
    [move] = diff.moved
    assert (move.rule_id, move.position_after) == ("injury", 1)


def test_directory_consent_and_on_call_changes_are_reported_by_section() -> None:
    after = edited(
        ("hours: mon-sat 08:00-15:00", "hours: mon-fri 08:00-15:00"),
        ("rounds: 3", "rounds: 5"),
        ("services: [health, shelter]", "services: [health]"),
    )
    diff = rule_diff(BASE, after)
    [agency] = diff.directory
    assert (agency.agency_id, agency.kind, [c.path for c in agency.changes]) == (
        "puspaga-pasuruan",
        "changed",
        ["hours"],
    )
    sections = {section.section: section for section in diff.sections}
    assert set(sections) == {"consent", "on_call"}
    assert [c.path for c in sections["on_call"].changes] == ["on_call.repeat.rounds"]
    assert "+  rounds: 5" in sections["on_call"].text


# --- simulation ----------------------------------------------------------------------------


def test_a_faster_health_deadline_changes_only_the_cases_it_concerns() -> None:
    after = edited((SUICIDAL_HEALTH, FASTER_HEALTH))
    cases = [
        case(1, adult(suicidal=True, share_with_health=True)),
        case(2, adult(suicidal=True, share_with_health=True), MONDAY + timedelta(days=7)),
        case(3, adult()),
        case(4, None),
    ]
    result = simulate(BASE, after, cases)
    assert (result.cases_total, result.cases_simulated, result.cases_changed) == (4, 3, 2)
    assert result.cases_not_simulable == {"no_triage_facts": 1}
    assert [c["case_id"] for c in result.changed_cases] == ["3514-0000000001", "3514-0000000002"]
    assert [c["week"] for c in result.changed_cases] == ["2026-W45", "2026-W46"]
    assert result.priority_changes == [
        {"agency_id": "rsud-bangil", "service": "health", "priority_before": "urgent",
         "priority_after": "emergency", "cases": 2}
    ]  # fmt: skip
    assert result.deadline_changes == [
        {"agency_id": "rsud-bangil", "service": "health", "minutes_before": 60,
         "minutes_after": 30, "cases": 2}
    ]  # fmt: skip
    assert result.newly_withheld == result.newly_overriding_consent == []
    assert result.referrals_added == result.referrals_removed == []
    health = [w for w in result.weekly_referrals if w.agency_id == "rsud-bangil"]
    assert [(w.week, w.before, w.after) for w in health] == [("2026-W45", 1, 1), ("2026-W46", 1, 1)]


def test_a_service_that_newly_needs_consent_is_withheld_and_said_so() -> None:
    consent_for_psychosocial = (
        "    shelter: share_with_shelter\n    psychosocial: share_with_health\n"
    )
    after = edited(("    shelter: share_with_shelter\n", consent_for_psychosocial))
    result = simulate(BASE, after, [case(1, adult()), case(2, adult(share_with_health=True))])
    assert result.cases_changed == 1
    assert [c["case_id"] for c in result.changed_cases] == ["3514-0000000001"]
    withheld = [{"agency_id": "puspaga-pasuruan", "service": "psychosocial", "cases": 1}]
    assert result.newly_withheld == withheld
    assert result.referrals_removed == withheld
    assert result.newly_overriding_consent == []


POLICE_FOR_CHILDREN = (
    "    - age_group: child\n      services: [police]\n"
    '      legal_basis: "UU 35/2014 Perlindungan Anak, Pasal 72; UU 12/2022 TPKS"\n'
)


def test_mandatory_reporting_to_the_police_overrides_consent_where_it_was_withheld() -> None:
    child = adult().model_copy(update={"age_group": "child"})
    without_mandatory_reporting = edited((POLICE_FOR_CHILDREN, ""), version=1)
    result = simulate(without_mandatory_reporting, BASE, [case(1, child), case(2, adult())])
    police = {"agency_id": "polres-pasuruan-ppa", "service": "police"}
    basis = "UU 35/2014 Perlindungan Anak, Pasal 72; UU 12/2022 TPKS"
    assert result.cases_changed == 1
    assert result.newly_overriding_consent == [{**police, "legal_basis": basis, "cases": 1}]
    assert result.no_longer_withheld == [{**police, "cases": 1}]
    assert result.referrals_added == [{**police, "cases": 1}]
    assert result.newly_withheld == []


def test_decisions_are_made_once_per_distinct_facts() -> None:
    facts = [adult(), adult(suicidal=True), adult()]
    simulation = Simulation(BASE, BASE)
    simulation.add(case(n, facts[n % 3]) for n in range(3000))
    result = simulation.result()
    assert (result.distinct_facts, result.cases_simulated) == (2, 3000)


def test_changed_cases_are_all_counted_and_the_first_ones_listed() -> None:
    after = edited((SUICIDAL_HEALTH, FASTER_HEALTH))
    facts = adult(suicidal=True, share_with_health=True)
    cases = [case(n, facts) for n in range(MAX_LISTED_CASES + 5)]
    result = simulate(BASE, after, cases)
    assert (result.cases_changed, result.changed_cases_listed) == (
        MAX_LISTED_CASES + 5,
        MAX_LISTED_CASES,
    )


def test_weeks_are_iso_weeks_in_the_districts_time_zone() -> None:
    from zoneinfo import ZoneInfo

    sunday_night_utc = datetime(2026, 11, 1, 20, 0, tzinfo=UTC)  # Monday 03:00 in WIB
    assert iso_week(sunday_night_utc, UTC) == "2026-W44"
    assert iso_week(sunday_night_utc, ZoneInfo("Asia/Jakarta")) == "2026-W45"


# --- properties ----------------------------------------------------------------------------

pasuruan_facts = triage_facts().filter(lambda facts: facts.district == "3514")
past_cases = st.lists(
    st.tuples(pasuruan_facts, st.integers(min_value=0, max_value=90 * 24)), max_size=30
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(past_cases)
def test_a_version_simulated_against_itself_changes_nothing(
    drawn: list[tuple[TriageFacts, int]],
) -> None:
    cases = [case(n, facts, MONDAY + timedelta(hours=h)) for n, (facts, h) in enumerate(drawn)]
    result = simulate(BASE, edited(), cases)
    assert (result.cases_changed, result.changed_cases) == (0, [])
    assert all(w.before == w.after for w in result.weekly_referrals)
    changes = (
        result.priority_changes,
        result.deadline_changes,
        result.newly_withheld,
        result.newly_overriding_consent,
        result.referrals_added,
        result.referrals_removed,
    )
    assert changes == ([], [], [], [], [], [])  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(past_cases)
def test_counts_before_are_the_referrals_decide_makes_case_by_case(
    drawn: list[tuple[TriageFacts, int]],
) -> None:
    after = edited((SUICIDAL_HEALTH, FASTER_HEALTH))
    cases = [case(n, facts, MONDAY + timedelta(hours=h)) for n, (facts, h) in enumerate(drawn)]
    expected: Counter[tuple[str, str]] = Counter()
    expected_after: Counter[tuple[str, str]] = Counter()
    for past in cases:
        assert past.triage is not None
        week = iso_week(past.reported_at, UTC)
        for sop, counter in ((BASE, expected), (after, expected_after)):
            for referral in decide(sop, past.case_id, past.triage, past.reported_at).referrals:
                counter[referral.agency_id, week] += 1
    result = simulate(BASE, after, cases)
    assert {
        (w.agency_id, w.week): w.before for w in result.weekly_referrals if w.before
    } == expected
    assert {(w.agency_id, w.week): w.after for w in result.weekly_referrals if w.after} == (
        expected_after
    )
    assert result.cases_simulated == len(cases)


# --- `rujuk sop simulate` --------------------------------------------------------------------


def test_the_cli_follows_the_job_to_its_end_and_summarises_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    after = edited((SUICIDAL_HEALTH, FASTER_HEALTH))
    candidate = tmp_path / "3514-v2.yaml"
    candidate.write_text(
        TEXT.replace("version: 1", "version: 2", 1).replace(SUICIDAL_HEALTH, FASTER_HEALTH, 1)
    )
    result = simulate(
        BASE, after, [case(1, adult(suicidal=True, share_with_health=True)), case(2, None)]
    )
    job = {
        "simulation_id": "sim-" + "1" * 32, "cases_done": 0, "cases_total": None,
        "period": {"from": "2026-08-04T09:00:00Z", "to": "2026-11-02T09:00:00Z"},
        "diff": rule_diff(BASE, after).to_json(), "result": None, "failure": None,
    }  # fmt: skip
    states = iter([("queued", 0, None), ("running", 1, 2), ("done", 2, 2)])
    asked: list[tuple[str, str]] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append((request.method, request.url.path))
        assert request.headers["Authorization"] == "Bearer secret-token"
        if request.method == "POST":
            assert request.url.params["days"] == "30"
            assert request.content == candidate.read_bytes()
            url = f"/v1/sops/simulations/{job['simulation_id']}"
            return httpx.Response(202, json={"simulation_id": job["simulation_id"], "url": url})
        state, done, total = next(states)
        finished = result.to_json() if state == "done" else None
        body = {**job, "state": state, "cases_done": done, "cases_total": total, "result": finished}
        return httpx.Response(200, json=json.loads(json.dumps(body, default=str)))

    real_client = httpx.Client
    monkeypatch.setattr(cli, "POLL_SECONDS", 0)
    monkeypatch.setattr(
        cli.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(server), **kw)
    )
    monkeypatch.setenv("RUJUK_TOKEN", "secret-token")
    output = CliRunner().invoke(cli.app, ["simulate", str(candidate), "--days", "30"])
    assert output.exit_code == 0, output.output
    assert [method for method, _ in asked] == ["POST", "GET", "GET", "GET"]
    text = output.output
    assert "SOP 3514 v1 -> SOP 3514 v2" in text
    assert "diubah / changed: suicidal-thoughts" in text
    assert "Dirujuk berbeda / referred differently: 1 kasus / cases" in text
    assert "tidak bisa disimulasikan / not simulable 1" in text
    assert "rsud-bangil health: 60 -> 30 min: 1 kasus / cases" in text
    assert "rsud-bangil health: urgent -> emergency: 1 kasus / cases" in text


def test_the_cli_prints_every_error_of_a_refused_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    candidate = tmp_path / "3514.yaml"
    candidate.write_text(TEXT)
    refusal = {"detail": "SOP refused", "errors": ["SOP 3514 v1, rule x (line 7): bad"]}
    real_client = httpx.Client
    refusing = httpx.MockTransport(lambda _: httpx.Response(422, json=refusal))
    monkeypatch.setattr(cli.httpx, "Client", lambda **kw: real_client(transport=refusing, **kw))
    output = CliRunner().invoke(cli.app, ["simulate", str(candidate), "--token", "t"])
    assert output.exit_code == 1
    assert "Ditolak / refused (422): SOP refused" in output.output
    assert "(line 7): bad" in output.output


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    pasuruan_facts,
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(min_value=0, max_value=2000, allow_nan=False)),
            st.one_of(st.none(), st.sampled_from(BASE.kecamatan), st.text(max_size=12)),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_facts_decided_once_get_what_decide_gives_each_of_them(
    facts: TriageFacts, variants: list[tuple[float | None, str | None, bool]]
) -> None:
    """Facts that differ only where the versions may not look (hours between the same
    thresholds, a kecamatan nobody names, a flag no rule reads) share one decision: each
    must still get exactly what decide() gives it."""
    after = edited((SUICIDAL_HEALTH, FASTER_HEALTH))
    others = [
        facts.model_copy(update={"hours_since_sexual_assault": hours, "kecamatan": kecamatan,
                                 "sex": "male" if male else "female"})
        for hours, kecamatan, male in variants
    ]  # fmt: skip
    simulation = Simulation(BASE, after)
    simulation.add(case(n, other) for n, other in enumerate([*others, facts]))
    for each in [facts, *others]:
        comparison = simulation.comparison(each)
        assert comparison is not None
        assert comparison.before == Outcome.of(decide(BASE, "3514-0000000001", each, MONDAY))
        assert comparison.after == Outcome.of(decide(after, "3514-0000000001", each, MONDAY))


def test_a_changed_case_shows_every_field_of_its_referrals_and_withholdings() -> None:
    from dataclasses import asdict

    from routing.simulate import ReferralOutcome, WithheldOutcome, _referral_view, _withheld_view

    referral = ReferralOutcome("rsud-bangil", "health", "emergency", 30, ("uptppa",), "UU 35")
    assert _referral_view(referral) == {**asdict(referral), "escalation_chain": ["uptppa"]}
    withheld = WithheldOutcome("polres-pasuruan-ppa", "police")
    assert _withheld_view(withheld) == asdict(withheld)
