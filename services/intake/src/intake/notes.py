"""Free-text notes: who may write which kind, who may read one back. Pure policy, no I/O.

A note explains an action in a person's own words (why a partner declines, why a coordinator
closes, why details are read). Its text lives only in the vault, sealed under its case's key;
the action's event carries its id (``note_ref``). Each kind is written by the role whose
action it explains and by no other, so no note is kept that nothing refers to (UU PDP 27/2022:
collected for a stated purpose, no more than it needs).
"""

import secrets
from dataclasses import dataclass

from rujuk_contracts.events import NoteKind, Role

MAX_NOTE_CHARS = 1000

WRITERS: dict[NoteKind, Role] = {
    NoteKind.DECLINE_NOTE: Role.PARTNER,
    NoteKind.DISCLOSURE_NOTE: Role.PARTNER,
    NoteKind.CLOSE_NOTE: Role.COORDINATOR,
}


def new_note_id() -> str:
    return "note-" + secrets.token_hex(16)


def kinds_written_by(role: Role) -> list[NoteKind]:
    return [kind for kind, writer in WRITERS.items() if writer is role]


def may_write(role: Role, kind: NoteKind) -> bool:
    return WRITERS[kind] is role


@dataclass(frozen=True)
class StoredNote:
    """A note as intake keeps it: everything but the text, which is sealed (None: shredded)."""

    note_id: str
    case_id: str
    district_code: str
    kind: NoteKind
    sealed: bytes | None
    author_token_id: str
    author_role: Role
    author_agency_id: str | None


def may_read(role: Role, agency_id: str | None, serves_district: bool, note: StoredNote) -> bool:
    """A coordinator or auditor serving the case's district; the partner agency that wrote
    the note. No one else (an operator files reports, it does not read what others wrote)."""
    if role is Role.PARTNER:
        return agency_id is not None and agency_id == note.author_agency_id
    if role in (Role.COORDINATOR, Role.AUDITOR):
        return serves_district
    return False


def valid_disclosure_note(note: StoredNote | None, case_id: str, agency_id: str) -> bool:
    """A disclosure's ``note_ref`` names a disclosure note of the same case that the same
    agency wrote."""
    return (
        note is not None
        and note.case_id == case_id
        and note.kind is NoteKind.DISCLOSURE_NOTE
        and note.author_agency_id == agency_id
    )
