"""The vault's retention as an SOP states it: optional, bounded, announced in `sop.in_force`
for intake, which names the SOP as the one that erased (`case.erased`)."""

from datetime import UTC, datetime

import pytest

from intake.retention import erased_by
from intake.store import RetentionDue
from routing.events import sop_in_force
from routing.sop import SopError, load_sop
from rujuk_contracts import parse_event
from rujuk_contracts.events import SopInForce, SopOrigin
from tests.unit.test_routing_sop import VALID, errors_of, line_of

WITH_RETENTION = VALID + "retention:\n  vault_days_after_close: 1825\n"


def announced(text: str) -> SopInForce:
    event = sop_in_force(load_sop(text), "0" * 64, SopOrigin.PUBLISHED, datetime.now(UTC), None)
    _, payload = parse_event(event.to_bytes())  # as intake reads it off the bus
    assert isinstance(payload, SopInForce)
    return payload


def test_an_sop_without_retention_keeps_the_vault_until_someone_erases_it() -> None:
    assert load_sop(VALID).retention is None
    assert announced(VALID).vault_days_after_close is None


def test_the_retention_an_sop_states_reaches_intake_in_sop_in_force() -> None:
    sop = load_sop(WITH_RETENTION)
    assert sop.retention is not None
    assert sop.retention.vault_days_after_close == 1825
    assert announced(WITH_RETENTION).vault_days_after_close == 1825


@pytest.mark.parametrize("days", [0, -1, 36_501, "forever"])
def test_a_retention_out_of_bounds_is_refused_with_its_line(days: object) -> None:
    text = VALID + f"retention:\n  vault_days_after_close: {days}\n"
    errors = errors_of(text)
    assert any(f"(line {line_of(text, 'vault_days_after_close')})" in e for e in errors), errors


def test_an_unknown_retention_key_is_refused() -> None:
    with pytest.raises(SopError, match="vault_days"):
        load_sop(VALID + "retention:\n  vault_days: 30\n")


def test_an_expiry_names_the_sop_that_ended_the_record_never_a_person() -> None:
    assert erased_by(RetentionDue("3514-AB12CD34EF", "sop-3514", 7)) == "retention:sop-3514:v7"
