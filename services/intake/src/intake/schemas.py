"""The bodies of intake's HTTP API, as the OpenAPI document names them: the erasure and note
requests and every response."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from intake.notes import MAX_NOTE_CHARS
from rujuk_contracts.events import DisclosurePurpose, EraseReason, NoteKind, PickedBy


class ReportAccepted(BaseModel):
    case_id: str
    status: str
    status_url: str


class ReferralStatus(BaseModel):
    referral_id: str
    agency_id: str
    service: str
    priority: str
    state: str
    updated_at: datetime
    picked_by: PickedBy | None = Field(
        default=None,
        description="How the case's desa picked the agency (SOP pick: by_village), as routing's "
        "referral.requested says: village, kecamatan_no_village / fallback_no_village (no "
        "agency lists the desa), kecamatan_timeout / fallback_timeout (intake did not answer "
        "routing in time); null for every other referral",
    )


class CaseStatus(BaseModel):
    case_id: str
    district_code: str
    channel: str
    reported_at: datetime
    status: str
    violence_types: list[str]
    erased_at: datetime | None
    referrals: list[ReferralStatus]


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: EraseReason = Field(description="Why the case's identifying data is erased")
    note: str | None = Field(
        default=None,
        max_length=MAX_NOTE_CHARS,
        description="Optional words of the coordinator. Not kept anywhere: a note sealed under "
        "the case's key would be shredded in this same transaction, and kept otherwise it "
        "would outlive the erasure. Not logged, not in the event.",
    )


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: NoteKind = Field(
        description="decline_note, disclosure_note (a partner); close_note (a coordinator)"
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_NOTE_CHARS,
        description="Free text; kept only sealed under the case's key, shredded with the case",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("catatan kosong / the note is empty")
        return text


class NoteWritten(BaseModel):
    note_id: str = Field(description="Send it as note_ref with the action it explains")
    case_id: str
    kind: NoteKind
    created_at: datetime


class Note(BaseModel):
    note_id: str
    case_id: str
    kind: NoteKind
    text: str
    author_token_id: str
    author_role: str
    author_agency_id: str | None
    created_at: datetime


class WhoAmI(BaseModel):
    """Who a token belongs to: never its secret."""

    token_id: str
    role: str
    agency_id: str | None
    districts: list[str] | None = Field(
        description="The districts an operator, coordinator or auditor token serves; null "
        "for a province-level token (every district) and for a partner (bound to its agency)"
    )
    scope: str = Field(description="What the token is bound to: agency:…, province, or codes")
    areas: list[str] | None = Field(
        default=None,
        description="A cadre's kecamatan or villages (`Kraksaan`, `Kraksaan/Desa Contoh`); "
        "null for every other role",
    )


class Erasure(BaseModel):
    case_id: str
    erased_at: datetime
    already_erased: bool


class DisclosedVictim(BaseModel):
    name: str | None = None
    nik: str | None = None
    birth_date: str | None = None
    age_years: int | None = None
    sex: str | None = None
    disability: bool | None = None
    phone: str | None = None
    address: str | None = None


class DisclosedReporter(BaseModel):
    name: str | None = None
    phone: str | None = None


class DisclosedIncident(BaseModel):
    occurred_at: str | None = None
    place: str | None = None
    narrative: str | None = None


class DisclosedDetails(BaseModel):
    """Only the fields the partner's service needs; the others are absent."""

    victim: DisclosedVictim | None = None
    reporter: DisclosedReporter | None = None
    incident: DisclosedIncident | None = None
    village: str | None = None


class Disclosure(BaseModel):
    case_id: str
    agency_id: str
    referral_id: str
    services: list[str]
    fields: list[str]
    details: DisclosedDetails


class DisclosureLogEntry(BaseModel):
    """One read of a case's identifying data: its details (fields named, purpose given) or
    one of its notes (``note_id``; then fields is ``["note.<kind>"]``)."""

    event_id: str
    referral_id: str | None = Field(description="Null for a note read by a coordinator")
    agency_id: str | None = Field(description="Null unless a partner read")
    token_id: str
    role: str
    fields: list[str]
    purpose: DisclosurePurpose | str | None = Field(
        description="A DisclosurePurpose code (free text only in rows written before codes); "
        "null for a note read"
    )
    note_ref: str | None = Field(description="The disclosure note the partner gave, if any")
    note_id: str | None = Field(description="Set when the read was of a note")
    disclosed_at: datetime
