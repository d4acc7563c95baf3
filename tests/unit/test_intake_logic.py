"""Intake's logic: case ids, the request hash, the release of details to a partner. (That
the logic imports no I/O is tests/unit/test_service_layout.py's, for every service.)"""

import re

import pytest

from intake.disclosure import fields_for, release
from intake.districts import DistrictsInForce, refusal
from intake.notes import (
    WRITERS,
    StoredNote,
    kinds_written_by,
    may_read,
    may_write,
    new_note_id,
    valid_disclosure_note,
)
from intake.report import CASE_ID_ALPHABET, Report, new_case_id, request_hash
from rujuk.samples import INVENTED_NIK
from rujuk_contracts.events import CASE_ID_PATTERN, NOTE_ID_PATTERN, NoteKind, Role

LOGIC = (
    "auth",
    "disclosure",
    "districts",
    "events",
    "notes",
    "projection",
    "report",
    "schemas",
    "vault",
)
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


# --- notes: who writes which kind, who reads one back --------------------------------------


def _note(kind: NoteKind = NoteKind.DECLINE_NOTE, agency: str | None = "rsud-bangil") -> StoredNote:
    return StoredNote(
        note_id=new_note_id(),
        case_id="3514-AB12CD34EF",
        district_code="3514",
        kind=kind,
        sealed=b"...",
        author_token_id="tok-0a1b2c",
        author_role=Role.PARTNER if agency else Role.COORDINATOR,
        author_agency_id=agency,
    )


def test_each_kind_of_note_is_written_by_the_role_whose_action_it_explains() -> None:
    assert kinds_written_by(Role.PARTNER) == [NoteKind.DECLINE_NOTE, NoteKind.DISCLOSURE_NOTE]
    assert kinds_written_by(Role.COORDINATOR) == [NoteKind.CLOSE_NOTE]
    assert kinds_written_by(Role.OPERATOR) == []  # no action of an operator takes a note
    assert kinds_written_by(Role.AUDITOR) == []
    assert set(WRITERS) == set(NoteKind)  # a new kind must say who writes it
    assert may_write(Role.PARTNER, NoteKind.DECLINE_NOTE)
    assert not may_write(Role.COORDINATOR, NoteKind.DECLINE_NOTE)


@pytest.mark.parametrize(
    ("role", "agency", "serves", "allowed"),
    [
        (Role.PARTNER, "rsud-bangil", False, True),  # the agency that wrote it
        (Role.PARTNER, "polres-pasuruan", False, False),  # another agency
        (Role.COORDINATOR, None, True, True),
        (Role.COORDINATOR, None, False, False),  # another district's coordinator
        (Role.AUDITOR, None, True, True),
        (Role.AUDITOR, None, False, False),
        (Role.OPERATOR, None, True, False),  # operators file reports; they read no notes
    ],
)
def test_who_may_read_a_note_back(
    role: Role, agency: str | None, serves: bool, allowed: bool
) -> None:
    assert may_read(role, agency, serves, _note()) is allowed


def test_a_disclosure_names_only_a_disclosure_note_of_its_case_by_its_agency() -> None:
    mine = _note(NoteKind.DISCLOSURE_NOTE)
    assert valid_disclosure_note(mine, "3514-AB12CD34EF", "rsud-bangil")
    assert not valid_disclosure_note(mine, "3514-ZZ98YY76XX", "rsud-bangil")  # other case
    assert not valid_disclosure_note(mine, "3514-AB12CD34EF", "polres-pasuruan")  # not theirs
    assert not valid_disclosure_note(_note(), "3514-AB12CD34EF", "rsud-bangil")  # a decline's
    assert not valid_disclosure_note(None, "3514-AB12CD34EF", "rsud-bangil")
    assert re.fullmatch(NOTE_ID_PATTERN, new_note_id())
