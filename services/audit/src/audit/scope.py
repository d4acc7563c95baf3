"""Which ledger entries a district-bound token may read (no I/O).

A case belongs to the district its id begins with (``3514-AB12CD34EF``): the entries of
``case.*`` and ``referral.*`` events, whose subject is the case id. An ``sop.published``
entry belongs to the district named in its payload. Every other entry (``token.*``, a type
this code does not know) belongs to no district: only a province-level token reads it.
``store._in_scope`` says the same in SQL; ``districts`` None is province level.
"""

import re
from collections.abc import Collection

from rujuk_contracts.events import CASE_ID_PATTERN, TYPE_PREFIX, district_of

CASE_AGGREGATES = ("case", "referral", "oncall")  # their entries' subject is the case id
DISTRICT_IN_PAYLOAD = ("sop",)  # their payload names its ``district_code``
CASE_TYPE_PREFIXES = tuple(f"{TYPE_PREFIX}.{aggregate}." for aggregate in CASE_AGGREGATES)
PAYLOAD_TYPE_PREFIXES = tuple(f"{TYPE_PREFIX}.{aggregate}." for aggregate in DISTRICT_IN_PAYLOAD)

_CASE_ID = re.compile(CASE_ID_PATTERN)


def case_district(subject: str) -> str | None:
    """The district a case id begins with; None for a subject that is no case id."""
    return district_of(subject) if _CASE_ID.fullmatch(subject) else None


def hidden_case(districts: Collection[str] | None, subject: str) -> bool:
    """True if ``subject`` is the id of a case in a district outside ``districts``: such a
    case is answered exactly as one that does not exist, before anything is read."""
    district = case_district(subject)
    return districts is not None and district is not None and district not in districts
