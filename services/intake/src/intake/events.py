"""The events intake stages in its outbox, each made here: a case reported, its details
disclosed, one of its notes read, its data erased, which desa-level agency lists its desa; a
token issued or revoked."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from rujuk_contracts import make_event
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import (
    CaseDetailsDisclosed,
    CaseErased,
    CaseNoteRead,
    CaseReported,
    CaseVillageAgencyFound,
    DisclosurePurpose,
    EraseReason,
    NoteKind,
    Role,
    TokenIssued,
    TokenRevoked,
)
from rujuk_contracts.triage import ReportChannel, TriageFacts

SOURCE = "/rujuk/intake"
# Token event ids derive from the token id: announcing a token twice stages the same Nats-Msg-Id.
TOKEN_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rujuk:intake:tokens")
# An answer's id derives from its question's: answering a question again stages the same one.
ANSWER_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rujuk:intake:village-answers")


def case_reported(
    case_id: str,
    channel: ReportChannel,
    reported_at: datetime,
    triage: TriageFacts,
    *,
    traceparent: str | None,
) -> CloudEvent:
    return make_event(
        CaseReported(case_id=case_id, channel=channel, reported_at=reported_at, triage=triage),
        source=SOURCE,
        traceparent=traceparent,
    )


def details_disclosed(
    case_id: str,
    *,
    agency_id: str,
    referral_id: str,
    fields: list[str],
    purpose: DisclosurePurpose,
    note_ref: str | None,
    token_id: str,
    traceparent: str | None,
) -> CloudEvent:
    return make_event(
        CaseDetailsDisclosed(
            case_id=case_id,
            agency_id=agency_id,
            referral_id=referral_id,
            fields=fields,
            purpose=purpose,
            token_id=token_id,
            note_ref=note_ref,
        ),
        source=SOURCE,
        traceparent=traceparent,
    )


def note_read(
    case_id: str,
    *,
    note_id: str,
    kind: NoteKind,
    token_id: str,
    role: Role,
    agency_id: str | None,
    traceparent: str | None,
) -> CloudEvent:
    return make_event(
        CaseNoteRead(
            case_id=case_id,
            note_id=note_id,
            kind=kind,
            token_id=token_id,
            role=role,
            agency_id=agency_id,
        ),
        source=SOURCE,
        traceparent=traceparent,
    )


def case_erased(
    case_id: str, *, erased_by: str, reason: EraseReason, traceparent: str | None
) -> CloudEvent:
    return make_event(
        CaseErased(case_id=case_id, erased_by=erased_by, reason=reason),
        source=SOURCE,
        traceparent=traceparent,
    )


def village_agency_found(
    case_id: str, question_id: str, agency_id: str | None, *, traceparent: str | None
) -> CloudEvent:
    found = CaseVillageAgencyFound(case_id=case_id, question_id=question_id, agency_id=agency_id)
    event_id = str(uuid.uuid5(ANSWER_EVENT_NAMESPACE, question_id))
    return make_event(found, source=SOURCE, traceparent=traceparent, event_id=event_id)


def token_issued(
    token_id: str,
    role: Role,
    agency_id: str | None,
    districts: Sequence[str] | None,
    digest: bytes,
) -> CloudEvent:
    issued = TokenIssued(
        token_id=token_id,
        role=role,
        agency_id=agency_id,
        districts=None if districts is None else list(districts),
        secret_sha256=digest.hex(),
    )
    return make_event(issued, source=SOURCE, event_id=_event_id(issued))


def token_revoked(token_id: str) -> CloudEvent:
    revoked = TokenRevoked(token_id=token_id)
    return make_event(revoked, source=SOURCE, event_id=_event_id(revoked))


def _event_id(payload: TokenIssued | TokenRevoked) -> str:
    return str(uuid.uuid5(TOKEN_EVENT_NAMESPACE, f"{payload.token_id}:{payload.event}"))
