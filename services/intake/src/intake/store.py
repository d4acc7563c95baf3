"""Intake's PostgreSQL adapter, the only module that writes SQL: cases, the vault and the notes
sealed in it, the referral projection, the SOPs in force, the access log and the tokens intake
issues."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from intake import events
from intake.auth import (
    BOOTSTRAP_LABEL,
    Role,
    TokenError,
    TokenInfo,
    bootstrap_token_id,
    check_areas,
    check_binding,
    new_secret,
    new_token_id,
    parse_bootstrap_tokens,
)
from intake.disclosure import INACTIVE_REFERRAL_STATES
from intake.notes import StoredNote
from intake.projection import ProjectedReferral
from intake.vault import SealedRecord
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import DisclosurePurpose, NoteKind, SopInForce, SopProposed
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.access import Principal, districts_of, hash_secret
from rujuk_runtime.db import Connection, columns
from rujuk_runtime.outbox import OUTBOX_COLUMNS, add_to_outbox, outbox_row


@dataclass(frozen=True)
class ExistingCase:
    case_id: str
    request_hash: bytes | None
    filed_by: str | None = None  # the token that filed it


async def find_by_idempotency_key(conn: Connection, key: str) -> ExistingCase | None:
    row = await conn.fetchrow(
        "SELECT case_id, request_hash, filed_by FROM cases WHERE idempotency_key = $1", key
    )
    return ExistingCase(row["case_id"], row["request_hash"], row["filed_by"]) if row else None


# One statement, so one round trip and atomic without an explicit transaction: the case, its
# vault record and its `case reported` event in the outbox, or nothing at all when the
# Idempotency-Key was used before (a concurrent twin waits for the first and then does nothing).
_INSERT_CASE = f"""
WITH new_case AS (
    INSERT INTO cases (case_id, district_code, channel, triage, reported_at,
                       idempotency_key, request_hash, filed_by)
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $16)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING case_id
), sealed AS (
    INSERT INTO vault (case_id, key_id, wrapped_key, ciphertext)
    SELECT case_id, $8, $9, $10 FROM new_case
), staged AS (
    INSERT INTO outbox ({OUTBOX_COLUMNS}) SELECT $11, $12, $13, $14, $15 FROM new_case
)
SELECT count(*) FROM new_case
"""  # noqa: S608 (OUTBOX_COLUMNS is a constant, not input)


async def insert_case(
    conn: Connection,
    *,
    case_id: str,
    channel: str,
    triage: TriageFacts,
    reported_at: datetime,
    sealed: SealedRecord,
    event: CloudEvent,
    idempotency_key: str | None,
    request_hash: bytes,
    filed_by: str | None = None,
) -> bool:
    """The case, its vault record and its `case reported` event, all or nothing. False when
    the idempotency key belongs to a case already (then nothing was written)."""
    inserted: int = await conn.fetchval(
        _INSERT_CASE,
        case_id,
        triage.district,
        channel,
        triage.model_dump_json(),
        reported_at,
        idempotency_key,
        request_hash,
        sealed.key_id,
        sealed.wrapped_key,
        sealed.ciphertext,
        *outbox_row(event),
        filed_by,
    )
    return inserted == 1


async def case_status(
    conn: Connection, case_id: str, districts: list[str] | None, filed_by: str | None = None
) -> dict[str, Any] | None:
    """The case and its referrals; None when there is no such case in ``districts`` (None:
    every district), or, with ``filed_by``, none that token filed."""
    row = await conn.fetchrow(
        "SELECT case_id, district_code, channel, reported_at, status, triage, erased_at "
        "FROM cases WHERE case_id = $1 "
        "AND ($2::text[] IS NULL OR district_code = ANY($2::text[])) "
        "AND ($3::text IS NULL OR filed_by = $3)",
        case_id,
        districts,
        filed_by,
    )
    if row is None:
        return None
    referrals = await conn.fetch(
        "SELECT referral_id, agency_id, service, priority, state, updated_at, picked_by "
        "FROM case_referrals WHERE case_id = $1 ORDER BY referral_id",
        case_id,
    )
    triage = json.loads(row["triage"])
    return {
        "case_id": row["case_id"],
        "district_code": row["district_code"],
        "channel": row["channel"],
        "reported_at": row["reported_at"],
        "status": row["status"],
        "violence_types": triage["violence_types"],
        "erased_at": row["erased_at"],
        "referrals": [dict(r) for r in referrals],
    }


async def referrals_for_update(
    conn: Connection, referral_ids: list[str]
) -> dict[str, ProjectedReferral]:
    """The projected referrals among ``referral_ids``, locked in one order (no deadlock)."""
    if not referral_ids:
        return {}
    rows = await conn.fetch(
        "SELECT referral_id, case_id, agency_id, service, priority, state, picked_by "
        "FROM case_referrals WHERE referral_id = ANY($1::text[]) ORDER BY referral_id FOR UPDATE",
        referral_ids,
    )
    return {row["referral_id"]: ProjectedReferral(*row.values()) for row in rows}


async def put_referrals(conn: Connection, referrals: list[ProjectedReferral]) -> None:
    """Insert or overwrite each referral's row, in one statement."""
    if not referrals:
        return
    await conn.execute(
        "INSERT INTO case_referrals "
        "(referral_id, case_id, agency_id, service, priority, state, picked_by) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
        "$6::text[], $7::text[]) ON CONFLICT (referral_id) DO UPDATE "
        "SET state = EXCLUDED.state, updated_at = now()",
        # Fields by name, not dataclasses.astuple: that deep-copies each field, and was 4% of
        # intake's CPU in a burst (bench/e2e.py --profile).
        *columns(
            (
                (r.referral_id, r.case_id, r.agency_id, r.service, r.priority, r.state, r.picked_by)
                for r in referrals
            ),
            7,
        ),
    )


async def set_case_statuses(
    conn: Connection, statuses: dict[str, str], closed_at: dict[str, datetime]
) -> None:
    """Each case's new status; a case closed now keeps when (``closed_at``, the time of its
    `case.closed`), one closed already keeps its first close, any other has none."""
    if statuses:
        await conn.execute(
            "UPDATE cases SET status = s.status, updated_at = now(), closed_at = CASE "
            "WHEN s.status <> 'closed' THEN NULL WHEN cases.status = 'closed' "
            "THEN cases.closed_at ELSE COALESCE(s.closed_at, now()) END "
            "FROM unnest($1::text[], $2::text[], $3::timestamptz[]) "
            "AS s (case_id, status, closed_at) WHERE cases.case_id = s.case_id",
            list(statuses),
            list(statuses.values()),
            [closed_at.get(case_id) for case_id in statuses],
        )


# --- the SOPs in force (routing's sop.in_force) ---------------------------------------------


async def put_sop_in_force(conn: Connection, sop: SopInForce, announced_at: datetime) -> None:
    """Keep the district's SOP in force unless a newer version is kept already."""
    await conn.execute(
        "INSERT INTO sops_in_force (district_code, sop_id, sop_version, sha256, origin, "
        "agency_ids, announced_at, vault_days_after_close) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (district_code) DO UPDATE SET sop_id = EXCLUDED.sop_id, "
        "sop_version = EXCLUDED.sop_version, sha256 = EXCLUDED.sha256, "
        "origin = EXCLUDED.origin, agency_ids = EXCLUDED.agency_ids, "
        "announced_at = EXCLUDED.announced_at, "
        "vault_days_after_close = EXCLUDED.vault_days_after_close "
        "WHERE sops_in_force.sop_version <= EXCLUDED.sop_version",
        sop.district_code,
        sop.sop_id,
        sop.sop_version,
        sop.sha256,
        sop.origin.value,
        list(sop.agency_ids),
        announced_at,
        sop.vault_days_after_close,
    )


async def sops_in_force(conn: Connection) -> dict[str, int]:
    """District -> the version of its SOP in force."""
    rows = await conn.fetch("SELECT district_code, sop_version FROM sops_in_force")
    return {row["district_code"]: row["sop_version"] for row in rows}


async def agencies_in_force(conn: Connection) -> dict[str, list[str]]:
    """District -> the agency ids its SOP in force names."""
    rows = await conn.fetch("SELECT district_code, agency_ids FROM sops_in_force")
    return {row["district_code"]: list(row["agency_ids"]) for row in rows}


# --- the agencies open SOP proposals ask (routing's sop.proposed, closed by withdrawal or
# publication) ---------------------------------------------------------------------------------


async def open_sop_proposal(conn: Connection, proposal: SopProposed) -> None:
    """Remember whom the proposal asks; a close already seen keeps it closed."""
    await conn.execute(
        "INSERT INTO sop_proposals_asking (proposal_id, district_code, agency_ids) "
        "VALUES ($1, $2, $3) ON CONFLICT (proposal_id) DO UPDATE SET "
        "district_code = EXCLUDED.district_code, agency_ids = EXCLUDED.agency_ids",
        proposal.proposal_id,
        proposal.district_code,
        sorted({asked.agency_id for asked in proposal.asked}),
    )


async def close_sop_proposal(
    conn: Connection, proposal_id: str, district_code: str, closed_at: datetime
) -> None:
    """The proposal asks nobody any more (withdrawn, superseded or published)."""
    await conn.execute(
        "INSERT INTO sop_proposals_asking (proposal_id, district_code, agency_ids, closed_at) "
        "VALUES ($1, $2, '{}', $3) ON CONFLICT (proposal_id) DO UPDATE SET "
        "closed_at = COALESCE(sop_proposals_asking.closed_at, EXCLUDED.closed_at)",
        proposal_id,
        district_code,
        closed_at,
    )


async def agencies_asked(conn: Connection) -> dict[str, list[str]]:
    """District -> the agency ids its open SOP proposals ask to sign off."""
    rows = await conn.fetch(
        "SELECT district_code, array_agg(DISTINCT agency_id ORDER BY agency_id) AS agency_ids "
        "FROM sop_proposals_asking, unnest(agency_ids) AS agency_id "
        "WHERE closed_at IS NULL GROUP BY district_code"
    )
    return {row["district_code"]: list(row["agency_ids"]) for row in rows}


@dataclass(frozen=True)
class ActiveReferral:
    referral_id: str
    service: str


async def active_referrals(conn: Connection, case_id: str, agency_id: str) -> list[ActiveReferral]:
    rows = await conn.fetch(
        "SELECT referral_id, service FROM case_referrals "
        "WHERE case_id = $1 AND agency_id = $2 AND state <> ALL($3::text[]) "
        "ORDER BY referral_id",
        case_id,
        agency_id,
        list(INACTIVE_REFERRAL_STATES),
    )
    return [ActiveReferral(r["referral_id"], r["service"]) for r in rows]


@dataclass(frozen=True)
class VaultEntry:
    triage: dict[str, Any]
    sealed: SealedRecord | None  # None once erased
    erased_at: datetime | None
    district_code: str


async def vault_entry(
    conn: Connection, case_id: str, *, for_share: bool = False
) -> VaultEntry | None:
    """The case's triage and sealed record. ``for_share`` share-locks the case row until the
    transaction ends: an erasure (which locks it for update) waits, and then sees what was
    written meanwhile."""
    row = await conn.fetchrow(
        "SELECT c.triage, c.district_code, v.key_id, v.wrapped_key, v.ciphertext, v.erased_at "
        "FROM cases c JOIN vault v USING (case_id) WHERE c.case_id = $1"
        + (" FOR SHARE OF c" if for_share else ""),
        case_id,
    )
    if row is None:
        return None
    sealed = (
        SealedRecord(row["key_id"], row["wrapped_key"], row["ciphertext"])
        if row["wrapped_key"] is not None
        else None
    )
    return VaultEntry(json.loads(row["triage"]), sealed, row["erased_at"], row["district_code"])


async def record_disclosure(
    conn: Connection,
    *,
    event: CloudEvent,
    case_id: str,
    referral_id: str,
    agency_id: str,
    token_id: str,
    fields: list[str],
    purpose: DisclosurePurpose,
    note_ref: str | None,
) -> None:
    """The access-log row and its event: one transaction (the caller's)."""
    await conn.execute(
        "INSERT INTO disclosures (event_id, case_id, referral_id, agency_id, token_id, fields, "
        "purpose, note_ref) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        event.id,
        case_id,
        referral_id,
        agency_id,
        token_id,
        fields,
        purpose.value,
        note_ref,
    )
    await add_to_outbox(conn, event)


async def case_exists(conn: Connection, case_id: str, districts: list[str] | None) -> bool:
    """Whether the case exists in ``districts`` (None: in any district)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM cases WHERE case_id = $1 "
        "AND ($2::text[] IS NULL OR district_code = ANY($2::text[])))",
        case_id,
        districts,
    )
    return found


async def disclosures_of(conn: Connection, case_id: str) -> list[dict[str, Any]]:
    """The access log of a case: each read of its details and of its notes, oldest first."""
    rows = await conn.fetch(
        "SELECT event_id, referral_id, agency_id, token_id, 'partner' AS role, fields, purpose, "
        "note_ref, NULL AS note_id, disclosed_at FROM disclosures WHERE case_id = $1 "
        "UNION ALL "
        "SELECT r.event_id, NULL, r.agency_id, r.token_id, r.role, ARRAY['note.' || n.kind], "
        "NULL, NULL, r.note_id, r.read_at FROM note_reads r JOIN case_notes n USING (note_id) "
        "WHERE r.case_id = $1 "
        "ORDER BY disclosed_at, event_id",
        case_id,
    )
    return [dict(r) for r in rows]


# --- notes: free text sealed under the case's key (their policy is intake.notes) -----------


async def insert_note(
    conn: Connection,
    *,
    note_id: str,
    case_id: str,
    kind: NoteKind,
    sealed: bytes,
    author: Principal,
) -> datetime:
    """Store a sealed note; return when it was written."""
    created_at: datetime = await conn.fetchval(
        "INSERT INTO case_notes (note_id, case_id, kind, sealed, author_token_id, author_role, "
        "author_agency_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
        note_id,
        case_id,
        kind.value,
        sealed,
        author.token_id,
        author.role.value,
        author.agency_id,
    )
    return created_at


async def note_of(conn: Connection, note_id: str) -> tuple[StoredNote, datetime] | None:
    """A note with its case's district, and when it was written."""
    row = await conn.fetchrow(
        "SELECT n.note_id, n.case_id, c.district_code, n.kind, n.sealed, n.author_token_id, "
        "n.author_role, n.author_agency_id, n.created_at "
        "FROM case_notes n JOIN cases c USING (case_id) WHERE n.note_id = $1",
        note_id,
    )
    if row is None:
        return None
    note = StoredNote(
        note_id=row["note_id"],
        case_id=row["case_id"],
        district_code=row["district_code"],
        kind=NoteKind(row["kind"]),
        sealed=row["sealed"],
        author_token_id=row["author_token_id"],
        author_role=Role(row["author_role"]),
        author_agency_id=row["author_agency_id"],
    )
    return note, row["created_at"]


async def record_note_read(
    conn: Connection, *, event: CloudEvent, note: StoredNote, reader: Principal
) -> None:
    """The access-log row of a note read and its `case.note_read` event: one transaction."""
    await conn.execute(
        "INSERT INTO note_reads (event_id, case_id, note_id, token_id, role, agency_id) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        event.id,
        note.case_id,
        note.note_id,
        reader.token_id,
        reader.role.value,
        reader.agency_id,
    )
    await add_to_outbox(conn, event)


async def lock_case_for_erasure(
    conn: Connection, case_id: str, districts: list[str] | None
) -> tuple[bool, datetime | None]:
    """(whether the case exists in ``districts``, when it was erased if it was). Locks the
    case row until the transaction ends, so two erasures cannot race; a case outside the
    districts is neither locked nor told apart from one that does not exist."""
    row = await conn.fetchrow(
        "SELECT erased_at FROM cases WHERE case_id = $1 "
        "AND ($2::text[] IS NULL OR district_code = ANY($2::text[])) FOR UPDATE",
        case_id,
        districts,
    )
    if row is None:
        return False, None
    erased_at: datetime | None = row["erased_at"]
    return True, erased_at


async def erase_case(
    conn: Connection, case_id: str, erased_at: datetime, event: CloudEvent
) -> None:
    """Crypto-shred: drop the wrapped data key (and the ciphertext with it), and the sealed
    text of every note of the case (unreadable without the key already: dropped all the
    same), forget the request hash (derived from the report), and stage the `case.erased`
    event."""
    await conn.execute(
        "UPDATE vault SET wrapped_key = NULL, ciphertext = ''::bytea, erased_at = $2 "
        "WHERE case_id = $1",
        case_id,
        erased_at,
    )
    await conn.execute("UPDATE case_notes SET sealed = NULL WHERE case_id = $1", case_id)
    await conn.execute(
        "UPDATE cases SET erased_at = $2, request_hash = NULL, updated_at = now() "
        "WHERE case_id = $1",
        case_id,
        erased_at,
    )
    await add_to_outbox(conn, event)


@dataclass(frozen=True)
class RetentionDue:
    """A closed case whose vault record the SOP in force keeps no longer."""

    case_id: str
    sop_id: str
    sop_version: int


async def vault_records_due(conn: Connection, *, day: timedelta, limit: int) -> list[RetentionDue]:
    """Closed cases not yet erased whose district's SOP in force states a retention that has
    run out (``day`` long days after the close), the longest closed first."""
    rows = await conn.fetch(
        "SELECT c.case_id, s.sop_id, s.sop_version FROM cases c "
        "JOIN sops_in_force s USING (district_code) "
        "WHERE c.status = 'closed' AND c.erased_at IS NULL "
        "AND s.vault_days_after_close IS NOT NULL "
        "AND c.closed_at <= now() - s.vault_days_after_close * $1::interval "
        "ORDER BY c.closed_at LIMIT $2",
        day,
        limit,
    )
    return [RetentionDue(r["case_id"], r["sop_id"], r["sop_version"]) for r in rows]


async def lock_closed_case_not_erased(conn: Connection, case_id: str) -> bool:
    """Whether the case is still closed and not erased, locking its row until the transaction
    ends (as an erasure by hand does: the two cannot race)."""
    row = await conn.fetchrow(
        "SELECT status, erased_at FROM cases WHERE case_id = $1 FOR UPDATE", case_id
    )
    return row is not None and row["status"] == "closed" and row["erased_at"] is None


# --- tokens (their policy is intake.auth) ---------------------------------------------------


async def create_token(
    conn: Connection,
    role: Role,
    *,
    agency_id: str | None = None,
    districts: Sequence[str] | None = None,
    label: str | None = None,
    secret: str | None = None,
    token_id: str | None = None,
    areas: Sequence[str] = (),
) -> tuple[str, str]:
    """Store a new token; return (token_id, secret). The secret is not kept anywhere.

    ``districts`` None makes an operator, coordinator or auditor token province-level
    (`rujuk token create` asks for that in words: --province). A cadre's names one district
    and its ``areas``."""
    province = role.district_bound and districts is None
    bound = check_binding(role, agency_id, districts or (), province=province)
    cadre_areas = check_areas(role, areas)
    secret = secret or new_secret()
    token_id = token_id or new_token_id()
    digest = hash_secret(secret)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO access_tokens (token_id, secret_sha256, role, agency_id, districts, "
            "label, areas) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token_id,
            digest,
            role.value,
            agency_id,
            bound,
            label,
            cadre_areas,
        )
        await add_to_outbox(conn, events.token_issued(token_id, role, agency_id, bound, digest))
    return token_id, secret


async def revoke_token(conn: Connection, token_id: str) -> bool:
    """Revoke; False if there is no such token. Revoking twice keeps the first time."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT revoked_at FROM access_tokens WHERE token_id = $1 FOR UPDATE", token_id
        )
        if row is None:
            return False
        if row["revoked_at"] is None:
            await conn.execute(
                "UPDATE access_tokens SET revoked_at = now() WHERE token_id = $1", token_id
            )
            await add_to_outbox(conn, events.token_revoked(token_id))
    return True


async def announce_unannounced(conn: Connection) -> int:
    """Announce tokens made before tokens were announced (an upgraded database); once each."""
    async with conn.transaction():
        rows = await conn.fetch(
            "UPDATE access_tokens SET announced = true WHERE NOT announced "
            "RETURNING token_id, secret_sha256, role, agency_id, districts, revoked_at"
        )
        for row in rows:
            issued = events.token_issued(
                row["token_id"],
                Role(row["role"]),
                row["agency_id"],
                row["districts"],
                bytes(row["secret_sha256"]),
            )
            await add_to_outbox(conn, issued)
            if row["revoked_at"] is not None:
                await add_to_outbox(conn, events.token_revoked(row["token_id"]))
    return len(rows)


async def list_tokens(conn: Connection) -> list[TokenInfo]:
    rows = await conn.fetch(
        "SELECT token_id, role, agency_id, districts, label, created_at, revoked_at, areas "
        "FROM access_tokens ORDER BY created_at, token_id"
    )
    return [
        TokenInfo(
            token_id=r["token_id"],
            role=Role(r["role"]),
            agency_id=r["agency_id"],
            districts=None if r["districts"] is None else tuple(r["districts"]),
            label=r["label"],
            created_at=r["created_at"],
            revoked_at=r["revoked_at"],
            areas=None if r["areas"] is None else tuple(r["areas"]),
        )
        for r in rows
    ]


async def principal_of(conn: Connection, secret_sha256: bytes) -> Principal | None:
    """The live token with this hash in intake's own table (intake's TokenVerifier lookup)."""
    row = await conn.fetchrow(
        "SELECT token_id, role, agency_id, districts, areas FROM access_tokens "
        "WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        secret_sha256,
    )
    if row is None:
        return None
    return Principal(
        row["token_id"],
        Role(row["role"]),
        row["agency_id"],
        districts_of(row["districts"]),
        None if row["areas"] is None else tuple(row["areas"]),
    )


async def install_bootstrap_tokens(conn: Connection, spec: str) -> int:
    """Insert each bootstrap token unless its hash is known (a revoked one stays revoked).

    A known one must be bound as the setting says: a secret kept while its binding was
    changed in the setting would otherwise keep its old, perhaps wider, reach. That is
    refused (TokenError) with what to do."""
    added = 0
    for token in parse_bootstrap_tokens(spec):
        digest = hash_secret(token.secret)
        token_id = bootstrap_token_id(digest)
        districts = None if token.districts is None else list(token.districts)
        async with conn.transaction():
            result = await conn.execute(
                "INSERT INTO access_tokens (token_id, secret_sha256, role, agency_id, districts,"
                " label) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                token_id,
                digest,
                token.role.value,
                token.agency_id,
                districts,
                BOOTSTRAP_LABEL,
            )
            if result.endswith(" 1"):
                issued = events.token_issued(
                    token_id, token.role, token.agency_id, districts, digest
                )
                await add_to_outbox(conn, issued)
                added += 1
                continue
            known = await conn.fetchrow(
                "SELECT token_id, role, agency_id, districts FROM access_tokens "
                "WHERE secret_sha256 = $1",
                digest,
            )
            if known is not None and (
                known["role"] != token.role.value
                or known["agency_id"] != token.agency_id
                or known["districts"] != districts
            ):
                raise TokenError(
                    f"INTAKE_BOOTSTRAP_TOKENS: token {known['token_id']} exists bound otherwise "
                    "than the setting says; give it a new secret (and `rujuk token revoke "
                    f"{known['token_id']}`) / token sudah ada dengan ikatan lain"
                )
    return added
