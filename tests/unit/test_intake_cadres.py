"""A cadre token's binding and the places its reports may name (issue 25): one district,
kecamatan or villages in it; a report outside them is refused naming the field."""

from datetime import UTC, datetime, timedelta

import pytest

from intake.auth import (
    PlaceRefused,
    Role,
    TokenError,
    cadre_place,
    check_areas,
    check_binding,
    parse_bootstrap_tokens,
)
from intake.villages import agency_listing, too_late_to_answer
from rujuk_contracts.events import VillageCandidate

VILLAGES = ("Kraksaan/Desa Contoh Satu", "Kraksaan/Desa Contoh Dua")


def test_a_cadre_token_names_one_district_and_at_least_one_area() -> None:
    assert check_binding(Role.CADRE, None, ["35.13"]) == ("3513",)
    for districts, province in (([], False), (["3513", "3514"], False), ([], True)):
        with pytest.raises(TokenError, match="cadre"):
            check_binding(Role.CADRE, None, districts, province=province)
    with pytest.raises(TokenError, match="--area"):
        check_areas(Role.CADRE, [])
    with pytest.raises(TokenError, match="only a cadre"):
        check_areas(Role.OPERATOR, ["Kraksaan"])
    assert check_areas(Role.OPERATOR, []) is None


def test_a_cadres_areas_are_tidied_and_each_a_kecamatan_or_one_of_its_villages() -> None:
    tidied = check_areas(Role.CADRE, ["  Kraksaan / Desa  Contoh Satu ", "maron", "Maron"])
    assert tidied == ("Kraksaan/Desa Contoh Satu", "maron")
    for bad in ("A/B/C", "/Desa", "Kraksaan/", "x" * 65):
        with pytest.raises(TokenError, match="KECAMATAN"):
            check_areas(Role.CADRE, [bad])
    with pytest.raises(TokenError, match="at most 20"):
        check_areas(Role.CADRE, [f"Kecamatan {n}" for n in range(21)])


def test_a_cadre_token_is_never_a_bootstrap_token() -> None:
    with pytest.raises(TokenError, match="rujuk token create --role cadre"):
        parse_bootstrap_tokens("cadre:3513=" + "s" * 40)


def test_a_cadres_report_is_placed_in_its_own_village_when_it_has_one() -> None:
    one = ("Kraksaan/Desa Contoh Satu",)
    assert cadre_place(one, None, None) == ("Kraksaan", "Desa Contoh Satu")
    assert cadre_place(one, "kraksaan", "desa contoh  satu") == ("Kraksaan", "Desa Contoh Satu")
    assert cadre_place(VILLAGES, "Kraksaan", "Desa Contoh Dua") == ("Kraksaan", "Desa Contoh Dua")
    assert cadre_place(("Maron",), None, "Desa Mana Saja") == ("Maron", "Desa Mana Saja")
    assert cadre_place(("Maron",), "MARON", None) == ("Maron", None)


@pytest.mark.parametrize(
    ("areas", "kecamatan", "village", "field"),
    [
        (VILLAGES, "Paiton", None, "kecamatan"),
        (VILLAGES, "Kraksaan", "Desa Lain", "village"),
        (VILLAGES, "Kraksaan", None, "village"),  # two villages: which one?
        (("Kraksaan", "Maron"), None, None, "kecamatan"),  # two kecamatan: which one?
    ],
)
def test_a_place_outside_the_cadres_areas_is_refused_naming_the_field(
    areas: tuple[str, ...], kecamatan: str | None, village: str | None, field: str
) -> None:
    refused = cadre_place(areas, kecamatan, village)
    assert isinstance(refused, PlaceRefused)
    assert refused.field == field
    assert " / " in refused.reason  # Bahasa Indonesia, then English


# --- the answer to a pick by village (intake.villages) -------------------------------------


def test_the_candidate_listing_the_cases_kecamatan_and_desa_is_the_answer() -> None:
    candidates = [
        VillageCandidate(agency_id="sae-satu", villages=["Kraksaan/Desa Sampel Satu"]),
        VillageCandidate(agency_id="sae-dua", villages=["Paiton/Desa Sampel Satu"]),
    ]
    assert agency_listing(candidates, "paiton", "desa  sampel SATU") == "sae-dua"
    assert agency_listing(candidates, "Kraksaan", "Desa Sampel Satu") == "sae-satu"
    assert agency_listing(candidates, "Maron", "Desa Sampel Satu") is None  # same desa name
    assert agency_listing(candidates, "Kraksaan", "Desa Lain Rekaan") is None
    assert agency_listing(candidates, "Kraksaan", None) is None
    assert agency_listing(candidates, None, "Desa Sampel Satu") is None


ANSWER_BY = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "too_late"),
    [
        (ANSWER_BY - timedelta(seconds=4), False),
        (ANSWER_BY - timedelta(milliseconds=1), False),
        (ANSWER_BY, True),  # routing's timer takes a pick due at or before its now
        (ANSWER_BY + timedelta(milliseconds=1), True),
        (ANSWER_BY + timedelta(hours=3), True),  # a backlog after an outage
    ],
)
def test_a_question_past_its_answer_by_is_not_answered(now: datetime, too_late: bool) -> None:
    """Routing has resolved such a pick by its timer: an answer would only tell the ledger which
    desa-level agency lists the case's desa, while no referral names it."""
    assert too_late_to_answer(now, ANSWER_BY) is too_late


def test_a_question_without_answer_by_is_answered_whenever_it_is_read() -> None:
    """Published before the field existed: answered as it always was."""
    assert too_late_to_answer(ANSWER_BY + timedelta(days=30), None) is False
