"""Which desa-level agency lists a case's desa: intake's answer to routing's pick by village.

Pure. The desa is compared as the SOP compares places (``auth.same_place``: ignoring case and
repeated spaces), as a pair with its kecamatan: ``Kraksaan/Desa Contoh`` lists the desa
"Desa Contoh" of kecamatan Kraksaan, not a desa of that name elsewhere. The answer names an
agency or none, never the desa.

A question carries its ``answer_by`` (the pick's due time at routing): past it, routing has
resolved the pick with its agency for no match (or is about to), and an answer would only tell
the ledger, kept for ever, which desa-level agency lists the case's desa. So none is given.
"""

from collections.abc import Sequence
from datetime import datetime

from intake.auth import same_place
from rujuk_contracts.events import VILLAGE_SEPARATOR, VillageCandidate


def agency_listing(
    candidates: Sequence[VillageCandidate], kecamatan: str | None, village: str | None
) -> str | None:
    """The first candidate whose villages list (kecamatan, village); None when none does, or
    the case has no kecamatan or no village."""
    if not kecamatan or not village:
        return None
    for candidate in candidates:
        for entry in candidate.villages:
            listed_kecamatan, _, listed_desa = entry.partition(VILLAGE_SEPARATOR)
            if same_place(listed_kecamatan, kecamatan) and same_place(listed_desa, village):
                return candidate.agency_id
    return None


def too_late_to_answer(now: datetime, answer_by: datetime | None) -> bool:
    """Whether a question is at or past its ``answer_by`` by intake's clock (routing's timer
    takes a pick due at or before its now); a question without one (published before it
    existed) is answered whenever it is read."""
    return answer_by is not None and now >= answer_by
