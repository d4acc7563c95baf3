"""Notify's PostgreSQL adapter: the delivery queue and the record of every attempt."""

from dataclasses import dataclass
from datetime import timedelta

from rujuk_runtime.db import Connection


@dataclass(frozen=True)
class Delivery:
    referral_id: str
    case_id: str
    agency_id: str
    event_id: str
    event_type: str
    body: bytes
    traceparent: str | None
    channels_done: list[str]
    attempts: int


async def enqueue(conn: Connection, delivery: Delivery) -> bool:
    """Queue a referral for delivery; False if it was queued before (a redelivered event)."""
    inserted = await conn.fetchval(
        "INSERT INTO deliveries (referral_id, case_id, agency_id, event_id, event_type, body, "
        "traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (referral_id) DO NOTHING RETURNING true",
        delivery.referral_id,
        delivery.case_id,
        delivery.agency_id,
        delivery.event_id,
        delivery.event_type,
        delivery.body,
        delivery.traceparent,
    )
    return bool(inserted)


async def claim_due(conn: Connection, limit: int) -> list[Delivery]:
    rows = await conn.fetch(
        "SELECT referral_id, case_id, agency_id, event_id, event_type, body, traceparent, "
        "channels_done, attempts FROM deliveries "
        "WHERE state = 'pending' AND next_attempt_at <= now() "
        "ORDER BY next_attempt_at, created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [
        Delivery(
            referral_id=r["referral_id"],
            case_id=r["case_id"],
            agency_id=r["agency_id"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            body=bytes(r["body"]),
            traceparent=r["traceparent"],
            channels_done=list(r["channels_done"]),
            attempts=r["attempts"],
        )
        for r in rows
    ]


async def record_attempt(
    conn: Connection, referral_id: str, channel: str, attempt: int, ok: bool, detail: str
) -> None:
    await conn.execute(
        "INSERT INTO delivery_attempts (referral_id, channel, attempt, ok, detail) "
        "VALUES ($1, $2, $3, $4, $5)",
        referral_id,
        channel,
        attempt,
        ok,
        detail[:500],
    )


async def mark_delivered(
    conn: Connection, referral_id: str, channels: list[str], attempts: int
) -> None:
    await conn.execute(
        "UPDATE deliveries SET state = 'delivered', channels_done = $2, attempts = $3, "
        "finished_at = now(), last_error = NULL WHERE referral_id = $1",
        referral_id,
        channels,
        attempts,
    )


async def mark_failed(conn: Connection, referral_id: str, attempts: int, error: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET state = 'failed', attempts = $2, last_error = $3, "
        "finished_at = now() WHERE referral_id = $1",
        referral_id,
        attempts,
        error[:500],
    )


async def schedule_retry(
    conn: Connection,
    referral_id: str,
    channels_done: list[str],
    attempts: int,
    error: str,
    delay: timedelta,
) -> None:
    await conn.execute(
        "UPDATE deliveries SET channels_done = $2, attempts = $3, last_error = $4, "
        "next_attempt_at = now() + $5 WHERE referral_id = $1",
        referral_id,
        channels_done,
        attempts,
        error[:500],
        delay,
    )
