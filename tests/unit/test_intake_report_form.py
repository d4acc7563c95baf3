"""The report form and the triage facts derived from it: the victim's age on a day, the age
group at 18, what is passed on and what stays in the vault (issue 26: each test here kills
mutants of intake/report.py that survived)."""

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from intake.report import Report, Victim, identifying_data, triage_of
from rujuk.samples import INVENTED_NIK
from rujuk.stack import Stack
from rujuk_contracts.triage import AgeGroup, Consent, ConsentGiver, ViolenceType
from tests.service_apps import build_app, environment

DAY = date(2026, 3, 2)


def report(**changes: Any) -> Report:
    body: dict[str, Any] = {
        "channel": "hotline",
        "district_code": "35.14",
        "kecamatan": "Bangil",
        "village": "Desa Contoh",
        "victim": {
            "name": "CONTOH Nama Rekaan",
            "nik": INVENTED_NIK,
            "birth_date": "2010-03-03",
            "sex": "female",
            "disability": True,
            "phone": "+62 800 0000",
            "address": "Jalan Rekaan 1",
        },
        "reporter": {"name": "CONTOH Pelapor", "phone": "+62 800 1111", "relationship": "parent"},
        "incident": {
            "violence_types": ["sexual", "physical", "sexual"],
            "occurred_at": "2026-03-01T20:00:00+07:00",
            "place": "rumah rekaan",
            "narrative": "cerita rekaan",
        },
        "risk": {
            "immediate_danger": True,
            "injury": True,
            "hours_since_sexual_assault": 5.5,
            "perpetrator_has_access": True,
            "suicidal_thoughts": True,
        },
        "consent": {"share_with_health": True, "given_by": "guardian"},
    }
    return Report.model_validate({**body, **changes})


def victim(**changes: Any) -> Victim:
    return Victim.model_validate({"name": "CONTOH", "sex": "male", **changes})


@pytest.mark.parametrize(
    ("born", "age"),
    [
        ("2008-03-02", 18),  # the birthday itself
        ("2008-03-03", 17),  # the day before the birthday
        ("2008-02-28", 18),
        ("2008-04-01", 17),
        ("2007-12-31", 18),
    ],
)
def test_the_age_on_a_day_counts_the_birthdays_passed(born: str, age: int) -> None:
    assert victim(birth_date=born).age_on(DAY) == age


def test_without_a_birth_date_the_age_given_is_the_age() -> None:
    assert victim(age_years=17).age_on(DAY) == 17


def test_a_victim_needs_a_birth_date_or_an_age() -> None:
    with pytest.raises(ValidationError, match=r"give victim\.birth_date or victim\.age_years"):
        victim()


def test_hours_since_a_sexual_assault_need_sexual_violence() -> None:
    with pytest.raises(ValidationError, match="has no 'sexual'"):
        report(incident={"violence_types": ["physical"]})
    assert report(risk={}, incident={"violence_types": ["physical"]}).risk.injury is False


@pytest.mark.parametrize(("born", "group"), [("2008-03-02", "adult"), ("2008-03-03", "child")])
def test_a_victim_is_a_child_until_their_18th_birthday(born: str, group: str) -> None:
    form = report(victim={"name": "CONTOH", "sex": "female", "birth_date": born})
    assert triage_of(form, DAY).age_group == AgeGroup(group)


def test_the_triage_facts_carry_the_risk_consent_and_place_but_no_identity() -> None:
    facts = triage_of(report(), DAY)
    assert facts.violence_types == [ViolenceType.PHYSICAL, ViolenceType.SEXUAL]
    assert facts.age_group == AgeGroup.CHILD
    assert facts.sex == "female"
    assert facts.disability is True
    assert facts.immediate_danger is True
    assert facts.injury is True
    assert facts.hours_since_sexual_assault == 5.5
    assert facts.perpetrator_has_access is True
    assert facts.suicidal_thoughts is True
    assert facts.consent == Consent(share_with_health=True, given_by=ConsentGiver.GUARDIAN)
    assert facts.district_code == "3514"
    assert facts.kecamatan == "Bangil"
    assert "CONTOH" not in facts.model_dump_json()


def test_the_flags_left_out_are_false_in_the_triage_facts() -> None:
    facts = triage_of(report(risk={}, incident={"violence_types": ["psychological"]}), DAY)
    flags = (facts.immediate_danger, facts.injury, facts.perpetrator_has_access)
    assert flags == (False, False, False)
    assert facts.suicidal_thoughts is False
    assert facts.hours_since_sexual_assault is None


@pytest.fixture
def machine_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def _years_before(day: date, years: int, *, missing: date) -> date:
    """``day``, ``years`` earlier; ``missing`` when that year has no such day (29 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return missing


def test_without_a_day_the_age_is_taken_on_todays_date_in_utc(
    machine_zone: Callable[[str], None],
) -> None:
    for _ in range(2):  # once more if UTC midnight passed meanwhile: the day it read changed
        today = datetime.now(UTC).date()
        tomorrow = today + timedelta(days=1)
        eighteen_today = _years_before(today, 18, missing=date(today.year - 18, 2, 28))
        eighteen_tomorrow = _years_before(tomorrow, 18, missing=date(today.year - 18, 3, 1))
        cases = ((eighteen_today, AgeGroup.ADULT), (eighteen_tomorrow, AgeGroup.CHILD))
        found = []
        # Far ahead of UTC and far behind it: at any moment one of the two has another date.
        for zone in ("Etc/GMT-14", "Etc/GMT+12"):
            machine_zone(zone)
            for born, group in cases:
                form = report(victim={"name": "CONTOH", "sex": "male", "birth_date": born})
                found.append((zone, born, triage_of(form).age_group, group))
        if datetime.now(UTC).date() == today:
            break
    assert [(zone, born, got) for zone, born, got, _ in found] == [
        (zone, born, wanted) for zone, born, _, wanted in found
    ]


def test_the_identifying_data_is_what_the_vault_keeps() -> None:
    assert identifying_data(report()) == {
        "victim": {
            "name": "CONTOH Nama Rekaan",
            "nik": INVENTED_NIK,
            "birth_date": "2010-03-03",
            "age_years": None,
            "phone": "+62 800 0000",
            "address": "Jalan Rekaan 1",
        },
        "reporter": {"name": "CONTOH Pelapor", "phone": "+62 800 1111"},
        "incident": {
            "place": "rumah rekaan",
            "narrative": "cerita rekaan",
            "occurred_at": "2026-03-01T20:00:00+07:00",
        },
        "village": "Desa Contoh",
    }


def test_intakes_openapi_says_a_victim_needs_a_birth_date_or_an_age(tmp_path: Path) -> None:
    """A client generated from /openapi.json learns the rule the form enforces: a victim
    without either is invalid by the document as by intake, with either (not null) valid."""
    stack = Stack(tmp_path, external_nats_url="nats://127.0.0.1:1", external_database_url="x")
    with environment(stack.service_env("intake", 0)):
        document = build_app("intake").openapi()
    schemas = document["components"]["schemas"]
    victim = {**schemas["Victim"], "$defs": schemas}
    victim = json.loads(json.dumps(victim).replace("#/components/schemas/", "#/$defs/"))
    validator = jsonschema_rs.Draft202012Validator(victim)
    base = {"name": "CONTOH Nama Rekaan", "sex": "female"}
    for fields, valid in [
        ({}, False),
        ({"birth_date": None, "age_years": None}, False),
        ({"birth_date": None}, False),
        ({"birth_date": "2010-03-03"}, True),
        ({"age_years": 15}, True),
        ({"birth_date": "2010-03-03", "age_years": 15}, True),
    ]:
        body = {**base, **fields}
        assert validator.is_valid(body) is valid, fields
        try:
            Victim.model_validate(body)
        except ValidationError:
            assert not valid, fields
        else:
            assert valid, fields
    assert "under 18" in schemas["Victim"]["properties"]["birth_date"]["description"]
    assert "triage.kecamatan" in schemas["Report"]["properties"]["kecamatan"]["description"]
