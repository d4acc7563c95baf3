"""Intake's logic: case ids, the request hash, the release of details to a partner. (That
the logic imports no I/O is tests/unit/test_service_layout.py's, for every service.)"""

import re

from intake.disclosure import fields_for, release
from intake.districts import DistrictsInForce, refusal
from intake.report import CASE_ID_ALPHABET, Report, new_case_id, request_hash
from rujuk.samples import INVENTED_NIK
from rujuk_contracts.events import CASE_ID_PATTERN

LOGIC = ("auth", "disclosure", "districts", "events", "projection", "report", "schemas", "vault")
IO_LIBRARIES = {"faststream", "nats", "asyncpg", "httpx", "fastapi", "starlette", "uvicorn"}


def test_case_ids_match_the_contract_and_differ() -> None:
    ids = {new_case_id("3514") for _ in range(100)}
    assert len(ids) == 100
    for case_id in ids:
        assert re.fullmatch(CASE_ID_PATTERN, case_id)
        district, random_part = case_id.split("-")
        assert district == "3514"
        assert set(random_part) <= set(CASE_ID_ALPHABET)


def test_the_request_hash_tells_reports_apart() -> None:
    body = {
        "channel": "hotline",
        "district_code": "3514",
        "victim": {"name": "CONTOH A", "age_years": 30, "sex": "female"},
        "reporter": {"relationship": "self"},
        "incident": {"violence_types": ["physical"]},
    }
    first = Report.model_validate(body)
    assert request_hash(first) == request_hash(Report.model_validate(body))
    other = Report.model_validate({**body, "village": "Desa Contoh"})
    assert request_hash(first) != request_hash(other)


def test_release_adds_the_triage_facts_and_keeps_only_the_needed_fields() -> None:
    record: dict[str, object] = {
        "victim": {"name": "CONTOH A", "nik": INVENTED_NIK, "phone": "+62 800 0000"},
        "incident": {"narrative": "cerita rekaan", "place": "rumah"},
        "village": "Desa Contoh",
    }
    triage = {"sex": "female", "disability": True, "district_code": "3514"}
    shown = release(record, triage, ["shelter", "health", "shelter"])
    assert shown.services == ["health", "shelter"]
    assert shown.fields == fields_for(["health", "shelter"])
    assert shown.details["victim"]["sex"] == "female"
    assert shown.details["victim"]["disability"] is True
    assert "nik" not in shown.details["victim"]
    assert "village" not in shown.details
    assert "place" not in shown.details["incident"]


def test_a_report_is_refused_for_a_district_without_an_sop_naming_those_the_token_can_use() -> None:
    in_force = {"3513", "3514"}
    assert refusal("3514", in_force, lambda _: True) is None
    no_sop = refusal("3515", in_force, lambda _: True)
    assert no_sop is not None
    assert "no SOP in force for district 3515" in no_sop
    assert no_sop.endswith("you can file for: 3513, 3514")


def test_a_report_is_refused_for_a_district_the_token_does_not_serve() -> None:
    only_pasuruan = {"3514"}.__contains__
    refused = refusal("3513", {"3513", "3514"}, only_pasuruan)
    assert refused is not None
    assert "your token does not serve district 3513" in refused
    assert refused.endswith("you can file for: 3514")
    nowhere = refusal("3599", {"3513"}, only_pasuruan)
    assert nowhere is not None
    assert nowhere.endswith("you can file for: tidak ada / none")


async def test_a_district_once_known_is_not_looked_up_again_and_a_new_one_is_at_once() -> None:
    in_force: set[str] = {"3514"}
    lookups = 0

    async def load() -> set[str]:
        nonlocal lookups
        lookups += 1
        return set(in_force)

    known = DistrictsInForce()
    assert await known.refusal("3514", lambda _: True, load) is None
    assert await known.refusal("3514", lambda _: True, load) is None
    assert lookups == 1
    assert await known.refusal("3513", lambda _: True, load) is not None  # not in force yet
    in_force.add("3513")  # routing announced it meanwhile
    assert await known.refusal("3513", lambda _: True, load) is None
    assert lookups == 3


def test_a_report_for_35_14_is_a_report_for_3514() -> None:
    body = {
        "channel": "hotline",
        "district_code": "35.14",
        "victim": {"name": "CONTOH A", "age_years": 30, "sex": "female"},
        "reporter": {"relationship": "self"},
        "incident": {"violence_types": ["physical"]},
    }
    assert Report.model_validate(body).district == "3514"
