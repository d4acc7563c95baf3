"""Token formats, bootstrap tokens and the per-service disclosure policy."""

import pytest

from intake import auth, disclosure
from intake.auth import Role, TokenError
from rujuk_contracts.events import Service
from rujuk_runtime.access import hash_secret

SECRET = "x" * 40


def test_secrets_are_random_prefixed_and_hashed() -> None:
    first, second = auth.new_secret(), auth.new_secret()
    assert first != second
    assert first.startswith("rujuk_")
    assert len(first) >= 6 + 43  # 256 random bits
    assert hash_secret(first) != hash_secret(second)
    assert len(hash_secret(first)) == 32


def test_bootstrap_tokens_parse_and_refuse_bad_entries() -> None:
    parsed = auth.parse_bootstrap_tokens(
        f"operator:3514={SECRET}, partner:rsud-bangil={SECRET}y, "
        f"coordinator:3514+35.13={SECRET}z, auditor:province={SECRET}w"
    )
    assert parsed == [
        auth.BootstrapToken(Role.OPERATOR, None, ("3514",), SECRET),
        auth.BootstrapToken(Role.PARTNER, "rsud-bangil", None, SECRET + "y"),
        auth.BootstrapToken(Role.COORDINATOR, None, ("3513", "3514"), SECRET + "z"),
        auth.BootstrapToken(Role.AUDITOR, None, None, SECRET + "w"),
    ]
    for bad in (f"operator:3514={'x' * 10}", f"wizard={SECRET}", f"partner={SECRET}",
                f"operator:rsud={SECRET}", f"partner:Bad_Agency={SECRET}", "operator",
                f"operator={SECRET}", f"operator:3514+rsud={SECRET}",
                f"coordinator:351={SECRET}"):  # fmt: skip
        with pytest.raises(TokenError):
            auth.parse_bootstrap_tokens(bad)


def test_a_token_states_its_reach_never_neither() -> None:
    assert auth.check_binding(Role.COORDINATOR, None, ["35.14", "3513", "3514"]) == (
        "3513",
        "3514",
    )
    assert auth.check_binding(Role.AUDITOR, None, province=True) is None
    assert auth.check_binding(Role.PARTNER, "rsud-bangil") is None
    for role, agency, districts, province in (
        (Role.OPERATOR, None, [], False),  # neither districts nor province
        (Role.OPERATOR, None, ["3514"], True),  # both
        (Role.PARTNER, "rsud-bangil", ["3514"], False),  # a partner goes by its agency
        (Role.COORDINATOR, "rsud-bangil", ["3514"], False),
        (Role.OPERATOR, None, ["Pasuruan"], False),
    ):
        with pytest.raises(TokenError):
            auth.check_binding(role, agency, districts, province=province)


def test_every_service_has_a_policy_and_health_sees_no_nik_or_address() -> None:
    assert set(disclosure.FIELD_POLICY) == set(Service)
    health = disclosure.fields_for(["health"])
    assert "victim.name" in health
    assert "incident.narrative" in health
    assert "victim.nik" not in health
    assert "victim.address" not in health
    assert "victim.nik" in disclosure.fields_for(["police"])
    shelter = disclosure.fields_for(["shelter"])
    assert "incident.narrative" not in shelter
    assert set(disclosure.fields_for(["health", "shelter"])) == set(health) | set(shelter)


def test_select_keeps_only_the_named_fields() -> None:
    record = {"victim": {"name": "CONTOH A", "nik": "9999"}, "village": "Desa Contoh"}
    assert disclosure.select(record, ["victim.name", "incident.place"]) == {
        "victim": {"name": "CONTOH A"},
        "incident": {"place": None},
    }


def test_a_partner_token_needs_an_agency_an_sop_in_force_names_and_says_what_was_checked() -> None:
    named = {"3514": ["rsud-bangil", "pkm-bangil"], "3513": ["rsud-waluyo-jati"]}
    auth.check_agency_in_force("pkm-bangil", named)
    with pytest.raises(TokenError) as refused:
        auth.check_agency_in_force("pkm-khayalan", named)
    message = str(refused.value)
    assert "agency pkm-khayalan is not in the directory of any SOP in force" in message
    assert "districts 3513, 3514" in message
    assert "rsud-bangil" not in message  # which agencies exist is not told
    with pytest.raises(TokenError, match="intake knows no SOP in force yet"):
        auth.check_agency_in_force("pkm-bangil", {})


def test_an_agency_an_open_proposal_asks_may_hold_a_partner_token_in_that_district() -> None:
    named = {"3514": ["rsud-bangil"], "3513": ["rsud-waluyo-jati"]}
    asked = {"3514": ["lk3-contoh"]}
    auth.check_agency_in_force("lk3-contoh", named, asked)
    auth.check_agency_in_force("lk3-contoh", named, asked, districts=("3514",))
    auth.check_agency_in_force("rsud-bangil", named, asked, districts=("3514",))
    with pytest.raises(TokenError) as refused:
        auth.check_agency_in_force("lk3-contoh", named, asked, districts=("3513",))
    message = str(refused.value)
    assert "tidak diminta menyetujui usulan SOP yang terbuka" in message
    assert "nor asked to sign off an open SOP proposal (open proposals: districts -)" in message
    assert "SOPs checked: districts 3513)" in message
    with pytest.raises(TokenError, match=r"open proposals: districts 3514\)"):
        auth.check_agency_in_force("lk3-lain", named, asked)
    auth.check_agency_in_force("lk3-contoh", {}, asked)  # a district's first SOP, proposed


def test_a_partners_district_says_where_its_agency_is_named_and_binds_nothing() -> None:
    assert auth.partner_scope(Role.PARTNER, ["35.14", "3514"]) == ("3514",)
    assert auth.partner_scope(Role.COORDINATOR, ["3514"]) == ()
    with pytest.raises(TokenError, match="BPS regency code"):
        auth.partner_scope(Role.PARTNER, ["Pasuruan"])
