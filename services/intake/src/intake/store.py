"""Intake's PostgreSQL adapter: cases, the vault and the referral projection."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from intake.vault import SealedRecord
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.db import Connection
from rujuk_runtime.outbox import add_to_outbox


@dataclass(frozen=True)
class ExistingCase:
    case_id: str
    request_hash: bytes | None


async def find_by_idempotency_key(conn: Connection, key: str) -> ExistingCase | None:
    row = await conn.fetchrow(
        "SELECT case_id, request_hash FROM cases WHERE idempotency_key = $1", key
    )
    return ExistingCase(row["case_id"], row["request_hash"]) if row else None


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
) -> None:
    """The case, its vault record and its `case reported` event: one transaction."""
    await conn.execute(
        "INSERT INTO cases (case_id, district_code, channel, triage, reported_at, "
        "idempotency_key, request_hash) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
        case_id,
        triage.district,
        channel,
        triage.model_dump_json(),
        reported_at,
        idempotency_key,
        request_hash,
    )
    await conn.execute(
        "INSERT INTO vault (case_id, key_id, wrapped_key, ciphertext) VALUES ($1, $2, $3, $4)",
        case_id,
        sealed.key_id,
        sealed.wrapped_key,
        sealed.ciphertext,
    )
    await add_to_outbox(conn, event)


async def case_status(conn: Connection, case_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT case_id, district_code, channel, reported_at, status, triage "
        "FROM cases WHERE case_id = $1",
        case_id,
    )
    if row is None:
        return None
    referrals = await conn.fetch(
        "SELECT referral_id, agency_id, service, priority, state, updated_at "
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
        "referrals": [dict(r) for r in referrals],
    }


async def set_case_status(conn: Connection, case_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE cases SET status = $2, updated_at = now() WHERE case_id = $1", case_id, status
    )


async def upsert_referral(
    conn: Connection,
    *,
    referral_id: str,
    case_id: str,
    agency_id: str,
    service: str,
    priority: str,
    state: str,
) -> None:
    await conn.execute(
        "INSERT INTO case_referrals (referral_id, case_id, agency_id, service, priority, state) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (referral_id) DO UPDATE "
        "SET state = EXCLUDED.state, updated_at = now()",
        referral_id,
        case_id,
        agency_id,
        service,
        priority,
        state,
    )


async def set_referral_state(conn: Connection, referral_id: str, state: str) -> None:
    await conn.execute(
        "UPDATE case_referrals SET state = $2, updated_at = now() WHERE referral_id = $1",
        referral_id,
        state,
    )
