"""Which ledger entries a district-bound token may read: the rule audit's routes apply."""

import pytest

from audit import scope
from rujuk_contracts.events import EVENT_MODELS, CaseEvent

ACCOUNTED_FOR = {"token"}  # aggregates that belong to no district: province level only


@pytest.mark.parametrize(
    ("subject", "district"),
    [
        ("3514-AB12CD34EF", "3514"),
        ("3513-0123456789", "3513"),
        ("sop-3514", None),  # an SOP id: its district is in the payload
        ("aud-0123456789ab", None),  # a token id
        ("3514-ab12cd34ef", None),  # not a case id: lower case
        ("3514-AB12CD34EF-01", None),  # a referral id is not a case id
    ],
)
def test_a_case_belongs_to_the_district_its_id_begins_with(
    subject: str, district: str | None
) -> None:
    assert scope.case_district(subject) == district


def test_a_case_of_another_district_is_hidden_from_a_district_token_only() -> None:
    assert scope.hidden_case(["3514"], "3513-0123456789")
    assert not scope.hidden_case(["3514"], "3514-AB12CD34EF")
    assert not scope.hidden_case(["3513", "3514"], "3513-0123456789")
    assert not scope.hidden_case(None, "3513-0123456789")  # province level
    # Not a case id: what the token reads of it is decided by the entries (store._in_scope).
    assert not scope.hidden_case(["3514"], "sop-3513")


def test_every_event_type_has_a_district_rule() -> None:
    """A new aggregate must be given a rule here before a district token can read it."""
    for event_type, model in EVENT_MODELS.items():
        if model.aggregate in scope.CASE_AGGREGATES:
            assert issubclass(model, CaseEvent), f"{event_type}: its subject is no case id"
            assert event_type.startswith(scope.CASE_TYPE_PREFIXES)
        elif model.aggregate in scope.DISTRICT_IN_PAYLOAD:
            assert "district_code" in model.model_fields, event_type
            assert event_type.startswith(scope.PAYLOAD_TYPE_PREFIXES)
        else:
            assert model.aggregate in ACCOUNTED_FOR, f"{event_type}: which district is it?"
