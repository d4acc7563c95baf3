"""Intake's logic: case ids, the request hash, the release of details to a partner. (That
the logic imports no I/O is tests/unit/test_service_layout.py's, for every service.)"""

import re

from intake.disclosure import fields_for, release
from intake.report import CASE_ID_ALPHABET, Report, new_case_id, request_hash
from rujuk.samples import INVENTED_NIK
from rujuk_contracts.events import CASE_ID_PATTERN

LOGIC = ("auth", "disclosure", "events", "projection", "report", "schemas", "vault")
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
