"""Intake's HTTP door: operators file reports and read a case's status, partners read the
details their referral needs, coordinators erase, auditors read the access log; partners and
coordinators keep free-text notes about their actions, sealed in the vault, and those who may
read them back do so, each read logged and announced.

An operator, coordinator or auditor reaches only the cases of the districts its token serves
(``Principal.district_filter``, applied in the query): a case elsewhere answers the very 404
of a case that does not exist, so a token cannot learn which cases exist outside its reach.

Each route is a module-level function on ``router``; what it needs at request time (the
runtime's pool and relay, the vault, the token verifier) comes from ``app.state``, which
``intake.bootstrap`` fills in."""

from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request

from intake import events, store
from intake.auth import PlaceRefused, cadre_place
from intake.disclosure import release
from intake.districts import DistrictsInForce
from intake.notes import (
    StoredNote,
    kinds_written_by,
    may_read,
    may_write,
    new_note_id,
    valid_disclosure_note,
)
from intake.report import Report, identifying_data, new_case_id, request_hash, triage_of
from intake.schemas import (
    CaseStatus,
    DisclosedDetails,
    Disclosure,
    DisclosureLogEntry,
    Erasure,
    ErasureRequest,
    Note,
    NoteRequest,
    NoteWritten,
    ReportAccepted,
    WhoAmI,
)
from intake.vault import SealedRecord, Vault, VaultError
from rujuk_contracts.events import CASE_ID_PATTERN, NOTE_ID_PATTERN, DisclosurePurpose
from rujuk_contracts.triage import ReportChannel
from rujuk_runtime.access import Principal, Role, require
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.problems import documented as _problems
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import current_traceparent, span_from
from rujuk_runtime.webapp import Runtime, from_app_state

log = get_logger(__name__)

router = APIRouter()


VaultDep = Annotated[Vault, from_app_state("vault")]
InForce = Annotated[DistrictsInForce, from_app_state("districts_in_force")]
CaseIdPath = Annotated[str, Path(pattern=CASE_ID_PATTERN, description="Pseudonymous case id")]
NoteIdPath = Annotated[str, Path(pattern=NOTE_ID_PATTERN, description="A note's id (note_ref)")]

NO_ACTIVE_REFERRAL = (
    "lembaga Anda tidak memegang rujukan aktif untuk kasus ini / "
    "your agency holds no active referral for this case"
)
ERASED = "data kasus telah dihapus / the case's data was erased"
VAULT_CANNOT_OPEN = "brankas tidak dapat membuka data / the vault cannot open this record"
NOT_A_DISCLOSURE_NOTE = {
    "field": "query.note_ref",
    "problem": "bukan catatan pembukaan kasus ini dari lembaga Anda / not a disclosure_note "
    "your agency wrote for this case",
}


def cadre_report(report: Report, principal: Principal) -> Report:
    """A cadre's report as filed: outreach (jemput bola), in the cadre's kecamatan and
    village; 422 naming the field when it names a place outside the cadre's areas."""
    place = cadre_place(principal.areas or (), report.kecamatan, report.village)
    if isinstance(place, PlaceRefused):
        raise HTTPException(422, [{"field": place.field, "problem": place.reason}])
    kecamatan, village = place
    return report.model_copy(
        update={"channel": ReportChannel.OUTREACH, "kecamatan": kecamatan, "village": village}
    )


@router.get(
    "/v1/whoami",
    response_model=WhoAmI,
    responses=_problems(401),
    tags=["tokens"],
    summary="The calling token's id, role, agency and districts (any role)",
)
async def whoami(principal: Annotated[Principal, Depends(require(*Role))]) -> WhoAmI:
    return WhoAmI(
        token_id=principal.token_id,
        role=principal.role.value,
        agency_id=principal.agency_id,
        districts=None if principal.districts is None else sorted(principal.districts),
        scope=principal.scope,
        areas=None if principal.areas is None else list(principal.areas),
    )


@router.post(
    "/v1/reports",
    status_code=202,
    response_model=ReportAccepted,
    responses=_problems(401, 403, 409, 413, 415),
    tags=["reports"],
    summary="File a report (operator; a district with an SOP in force that the token serves; "
    "a cadre: within its kecamatan or villages, recorded as outreach)",
)
async def file_report(
    report: Report,
    request: Request,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.CADRE))],
    runtime: Runtime,
    vault: VaultDep,
    in_force: InForce,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> ReportAccepted:
    """422 naming ``district_code`` (and the districts the token can file for) when the
    district has no SOP in force or the token does not serve it; nothing is written then.
    A cadre's report is recorded as outreach, in the cadre's village when it has one; a
    kecamatan or village outside its areas is refused with 422 naming that field."""
    if principal.role is Role.CADRE:
        report = cadre_report(report, principal)
    refused = await in_force.refusal(
        report.district, principal.serves, partial(_districts_in_force, runtime)
    )
    if refused is not None:
        raise HTTPException(422, [{"field": "district_code", "problem": refused}])
    fingerprint = request_hash(report)
    with span_from("intake file report", None) as span:
        triage = triage_of(report)
        case_id = new_case_id(triage.district)
        reported_at = datetime.now(UTC)
        event = events.case_reported(
            case_id, report.channel, reported_at, triage, traceparent=current_traceparent()
        )
        async with runtime.pool.acquire() as conn:
            inserted = await store.insert_case(
                conn,
                case_id=case_id,
                channel=report.channel,
                triage=triage,
                reported_at=reported_at,
                sealed=vault.seal(case_id, identifying_data(report)),
                event=event,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                filed_by=principal.token_id,
            )
            if not inserted:  # the Idempotency-Key is a case's already
                assert idempotency_key is not None
                existing = await store.find_by_idempotency_key(conn, idempotency_key)
                if (
                    existing is None
                    or existing.request_hash != fingerprint
                    or (principal.role is Role.CADRE and existing.filed_by != principal.token_id)
                ):
                    raise HTTPException(
                        409, "Idempotency-Key was already used for a different report"
                    )
                return _accepted(request, existing.case_id)
        span.set_attribute("rujuk.case_id", case_id)
    runtime.wake_relay()
    log.info("report accepted", case_id=case_id, event_id=event.id, token_id=principal.token_id)
    return _accepted(request, case_id)


@router.get(
    "/v1/cases/{case_id}",
    response_model=CaseStatus,
    responses=_problems(401, 403, 404),
    tags=["reports"],
    summary="A case's status and referrals (operator, coordinator; of a district served; a "
    "cadre: only a case it filed)",
)
async def read_case(
    case_id: CaseIdPath,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.COORDINATOR, Role.CADRE))],
    runtime: Runtime,
) -> dict[str, Any]:
    """Another cadre's case, like one outside the token's districts, is 404: as a case that
    does not exist."""
    filed_by = principal.token_id if principal.role is Role.CADRE else None
    async with runtime.pool.acquire() as conn:
        status = await store.case_status(conn, case_id, principal.district_filter, filed_by)
    if status is None:
        raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
    return status


@router.get(
    "/v1/cases/{case_id}/details",
    response_model=Disclosure,
    response_model_exclude_unset=True,
    responses=_problems(401, 403, 410, 503),
    tags=["partners"],
    summary="Identifying details a partner's referral needs (partner with an active referral)",
)
async def disclose(
    case_id: CaseIdPath,
    purpose: Annotated[
        DisclosurePurpose,
        Query(
            description="Why the details are read, a code (kept in the access log and the "
            "event); the partner's own words go in a disclosure note, named by note_ref"
        ),
    ],
    principal: Annotated[Principal, Depends(require(Role.PARTNER))],
    runtime: Runtime,
    vault: VaultDep,
    note_ref: Annotated[
        str | None,
        Query(
            pattern=NOTE_ID_PATTERN,
            description="A disclosure note of this case your agency wrote (POST "
            "/v1/cases/{case_id}/notes): free text never goes in a URL",
        ),
    ] = None,
) -> Disclosure:
    agency_id = principal.agency_id
    assert agency_id is not None  # a partner token is always bound to an agency
    async with runtime.pool.acquire() as conn, conn.transaction():
        referrals = await store.active_referrals(conn, case_id, agency_id)
        entry = await store.vault_entry(conn, case_id) if referrals else None
        if entry is None:  # the same answer whether or not the case exists
            raise HTTPException(403, NO_ACTIVE_REFERRAL)
        if entry.sealed is None:
            raise HTTPException(410, ERASED)
        if note_ref is not None:
            found = await store.note_of(conn, note_ref)
            if not valid_disclosure_note(found[0] if found else None, case_id, agency_id):
                raise HTTPException(422, [NOT_A_DISCLOSURE_NOTE])
        record = _open(vault, case_id, entry.sealed)
        shown = release(record, entry.triage, (r.service for r in referrals))
        referral_id = referrals[0].referral_id
        event = events.details_disclosed(
            case_id,
            agency_id=agency_id,
            referral_id=referral_id,
            fields=shown.fields,
            purpose=purpose,
            note_ref=note_ref,
            token_id=principal.token_id,
            traceparent=current_traceparent(),
        )
        await store.record_disclosure(
            conn,
            event=event,
            case_id=case_id,
            referral_id=referral_id,
            agency_id=agency_id,
            token_id=principal.token_id,
            fields=shown.fields,
            purpose=purpose,
            note_ref=note_ref,
        )
    runtime.wake_relay()
    log.info(
        "details disclosed",
        case_id=case_id,
        agency_id=agency_id,
        token_id=principal.token_id,
        fields=len(shown.fields),
    )
    return Disclosure(
        case_id=case_id,
        agency_id=agency_id,
        referral_id=referral_id,
        services=shown.services,
        fields=shown.fields,
        details=DisclosedDetails.model_validate(shown.details),
    )


@router.get(
    "/v1/cases/{case_id}/disclosures",
    response_model=list[DisclosureLogEntry],
    responses=_problems(401, 403, 404),
    tags=["partners"],
    summary="The access log of a case: who read which fields or notes, why (auditor, "
    "coordinator; of a district served)",
)
async def disclosure_log(
    case_id: CaseIdPath,
    principal: Annotated[Principal, Depends(require(Role.AUDITOR, Role.COORDINATOR))],
    runtime: Runtime,
) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        if not await store.case_exists(conn, case_id, principal.district_filter):
            raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
        return await store.disclosures_of(conn, case_id)


@router.post(
    "/v1/cases/{case_id}/erase",
    response_model=Erasure,
    responses=_problems(401, 403, 404, 413, 415),
    tags=["reports"],
    summary="Crypto-shred a case's identifying data and its notes (coordinator; of a district "
    "served)",
    description="Drops the case's data key and the sealed text of every note of the case, in "
    "one transaction, and publishes `case.erased` with the reason's code. The optional "
    "`note` is not kept anywhere (not stored, logged or published): sealed under the case's "
    "key it would be shredded in this same transaction, and kept any other way it would "
    "outlive the erasure.",
)
async def erase(
    case_id: CaseIdPath,
    body: ErasureRequest,
    principal: Annotated[Principal, Depends(require(Role.COORDINATOR))],
    runtime: Runtime,
) -> Erasure:
    async with runtime.pool.acquire() as conn, conn.transaction():
        exists, erased_at = await store.lock_case_for_erasure(
            conn, case_id, principal.district_filter
        )
        if not exists:
            raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
        if erased_at is not None:
            return Erasure(case_id=case_id, erased_at=erased_at, already_erased=True)
        erased_at = datetime.now(UTC)
        event = events.case_erased(
            case_id,
            erased_by=f"{principal.role.value}:{principal.token_id}",
            reason=body.reason,
            traceparent=current_traceparent(),
        )
        await store.erase_case(conn, case_id, erased_at, event)
    runtime.wake_relay()
    log.info("case erased", case_id=case_id, token_id=principal.token_id)
    return Erasure(case_id=case_id, erased_at=erased_at, already_erased=False)


@router.post(
    "/v1/cases/{case_id}/notes",
    status_code=201,
    response_model=NoteWritten,
    responses=_problems(401, 403, 404, 410, 413, 415, 503),
    tags=["notes"],
    summary="Keep free text about an action, sealed under the case's key (partner with an "
    "active referral: decline_note, disclosure_note; coordinator of the case's district: "
    "close_note)",
    description="The text is sealed (AES-GCM) under the case's own data key and shredded with "
    "the case. Send the returned `note_id` as `note_ref` with the action it explains (a "
    "decline to notify, a close to routing, a disclosure here): events and the ledger carry "
    "the id only. Reading it back is a disclosure: GET …/notes/{note_id}.",
)
async def write_note(
    case_id: CaseIdPath,
    body: NoteRequest,
    principal: Annotated[Principal, Depends(require(Role.PARTNER, Role.COORDINATOR))],
    runtime: Runtime,
    vault: VaultDep,
) -> NoteWritten:
    if not may_write(principal.role, body.kind):
        kinds = ", ".join(kinds_written_by(principal.role))
        raise HTTPException(
            403,
            f"peran {principal.role.value} hanya menulis catatan {kinds} / a "
            f"{principal.role.value} writes {kinds} notes only",
        )
    note_id = new_note_id()
    async with runtime.pool.acquire() as conn, conn.transaction():
        sealed_case = await _case_open_to_writer(conn, case_id, principal)
        created_at = await store.insert_note(
            conn,
            note_id=note_id,
            case_id=case_id,
            kind=body.kind,
            sealed=_seal_note(vault, case_id, sealed_case, note_id, body.text),
            author=principal,
        )
    log.info("case note written", case_id=case_id, note_id=note_id, kind=body.kind.value,
             token_id=principal.token_id)  # fmt: skip
    return NoteWritten(note_id=note_id, case_id=case_id, kind=body.kind, created_at=created_at)


@router.get(
    "/v1/cases/{case_id}/notes/{note_id}",
    response_model=Note,
    responses=_problems(401, 403, 404, 410, 503),
    tags=["notes"],
    summary="Read a note back (coordinator or auditor of the case's district; the partner "
    "agency that wrote it); each read is logged and announced",
    description="Each read writes an access-log row and a `case.note_read` event (who, which "
    "note; never the text) in one transaction. 404 for a note that is not there or not "
    "yours to read (the same answer); 410 once the case was erased.",
)
async def read_note(
    case_id: CaseIdPath,
    note_id: NoteIdPath,
    principal: Annotated[Principal, Depends(require(Role.COORDINATOR, Role.AUDITOR, Role.PARTNER))],
    runtime: Runtime,
    vault: VaultDep,
) -> Note:
    async with runtime.pool.acquire() as conn, conn.transaction():
        found = await store.note_of(conn, note_id)
        if found is None or not _may_read(principal, found[0], case_id):
            raise HTTPException(404, f"catatan tidak ada / no note {note_id} in case {case_id}")
        note, created_at = found
        entry = await store.vault_entry(conn, case_id)
        if note.sealed is None or entry is None or entry.sealed is None:
            raise HTTPException(410, ERASED)
        try:
            text = vault.open_note(case_id, entry.sealed, note_id, note.sealed)
        except VaultError as exc:
            log.error("vault cannot open a note", case_id=case_id, note_id=note_id,
                      error=str(exc))  # fmt: skip
            raise HTTPException(503, VAULT_CANNOT_OPEN) from exc
        event = events.note_read(
            case_id,
            note_id=note_id,
            kind=note.kind,
            token_id=principal.token_id,
            role=principal.role,
            agency_id=principal.agency_id,
            traceparent=current_traceparent(),
        )
        await store.record_note_read(conn, event=event, note=note, reader=principal)
    runtime.wake_relay()
    log.info("case note read", case_id=case_id, note_id=note_id, token_id=principal.token_id)
    return Note(
        note_id=note_id,
        case_id=case_id,
        kind=note.kind,
        text=text,
        author_token_id=note.author_token_id,
        author_role=note.author_role.value,
        author_agency_id=note.author_agency_id,
        created_at=created_at,
    )


async def _case_open_to_writer(
    conn: Connection, case_id: str, principal: Principal
) -> SealedRecord:
    """The case's sealed record, when ``principal`` may write a note about it: a partner
    holding an active referral (403 otherwise, as for details), a coordinator serving its
    district (404 otherwise, as for no case). 410 once erased. The case row is share-locked
    until the transaction ends, so an erasure waits for the note and then shreds it."""
    if principal.role is Role.PARTNER:
        assert principal.agency_id is not None  # a partner token is always bound to an agency
        if not await store.active_referrals(conn, case_id, principal.agency_id):
            raise HTTPException(403, NO_ACTIVE_REFERRAL)
    entry = await store.vault_entry(conn, case_id, for_share=True)
    if entry is None or (principal.role is not Role.PARTNER
                         and not principal.serves(entry.district_code)):  # fmt: skip
        raise HTTPException(404, f"kasus tidak ada / no case {case_id}")
    if entry.sealed is None:
        raise HTTPException(410, ERASED)
    return entry.sealed


def _may_read(principal: Principal, note: StoredNote, case_id: str) -> bool:
    serves = principal.serves(note.district_code)
    return note.case_id == case_id and may_read(principal.role, principal.agency_id, serves, note)


def _open(vault: Vault, case_id: str, sealed: SealedRecord) -> dict[str, object]:
    try:
        return vault.open(case_id, sealed)
    except VaultError as exc:
        log.error("vault cannot open a case", case_id=case_id, error=str(exc))
        raise HTTPException(503, VAULT_CANNOT_OPEN) from exc


def _seal_note(vault: Vault, case_id: str, sealed: SealedRecord, note_id: str, text: str) -> bytes:
    try:
        return vault.seal_note(case_id, sealed, note_id, text)
    except VaultError as exc:
        log.error("vault cannot seal a note", case_id=case_id, error=str(exc))
        raise HTTPException(503, VAULT_CANNOT_OPEN) from exc


async def _districts_in_force(runtime: ServiceRuntime) -> list[str]:
    async with runtime.pool.acquire() as conn:
        return list(await store.sops_in_force(conn))


def _accepted(request: Request, case_id: str) -> ReportAccepted:
    return ReportAccepted(
        case_id=case_id,
        status="accepted",
        status_url=str(request.url_for("read_case", case_id=case_id)),
    )
