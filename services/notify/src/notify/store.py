"""Notify's PostgreSQL adapter: the delivery queue, its lanes, and the record of every attempt.

A referral to deliver is one ``deliveries`` row and one ``sends`` row per channel. The sends of
one (agency, channel) form a lane, delivered strictly in order: only a lane's oldest pending
send (its head) is ever tried, and claiming it sets ``next_attempt_at`` to a lease, so no
other worker takes it while it is in flight and a crashed worker's claim comes back after it.
"""

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


WAKE_CHANNEL = "notify_sends"


async def add_sends(
    conn: Connection, referral_id: str, agency_id: str, channels: list[str]
) -> None:
    """One send per channel; wakes the workers (LISTEN notify_sends) when the caller commits."""
    await conn.executemany(
        "INSERT INTO sends (referral_id, agency_id, channel) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        [(referral_id, agency_id, channel) for channel in channels],
    )
    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")


@dataclass(frozen=True)
class LaneHead:
    agency_id: str
    channel: str
    wait_seconds: float  # <= 0: due now


async def lane_heads(conn: Connection) -> list[LaneHead]:
    rows = await conn.fetch(
        "SELECT DISTINCT ON (agency_id, channel) agency_id, channel, "
        "extract(epoch FROM next_attempt_at - now())::float8 AS wait "
        "FROM sends WHERE state = 'pending' ORDER BY agency_id, channel, id"
    )
    return [LaneHead(r["agency_id"], r["channel"], r["wait"]) for r in rows]


@dataclass(frozen=True)
class Send:
    send_id: int
    channel: str
    attempt: int
    delivery: Delivery


async def claim_head(
    conn: Connection, agency_id: str, channel: str, lease: timedelta
) -> Send | None:
    """Take the lane's head if it is due, counting the attempt; None if it is not."""
    row = await conn.fetchrow(
        "UPDATE sends SET attempts = attempts + 1, next_attempt_at = now() + $3 "
        "WHERE id = (SELECT id FROM sends WHERE agency_id = $1 AND channel = $2 "
        "            AND state = 'pending' ORDER BY id LIMIT 1 FOR UPDATE) "
        "AND next_attempt_at <= now() RETURNING id, referral_id, attempts",
        agency_id,
        channel,
        lease,
    )
    if row is None:
        return None
    d = await conn.fetchrow(
        "SELECT referral_id, case_id, agency_id, event_id, event_type, body, traceparent, "
        "channels_done, attempts FROM deliveries WHERE referral_id = $1",
        row["referral_id"],
    )
    assert d is not None  # sends reference deliveries
    delivery = Delivery(
        referral_id=d["referral_id"],
        case_id=d["case_id"],
        agency_id=d["agency_id"],
        event_id=d["event_id"],
        event_type=d["event_type"],
        body=bytes(d["body"]),
        traceparent=d["traceparent"],
        channels_done=list(d["channels_done"]),
        attempts=d["attempts"],
    )
    return Send(row["id"], channel, row["attempts"], delivery)


async def lock_delivery(conn: Connection, referral_id: str) -> str:
    """Lock the referral's row (its channels settle one after another); return its state."""
    return str(
        await conn.fetchval(
            "SELECT state FROM deliveries WHERE referral_id = $1 FOR UPDATE", referral_id
        )
    )


async def send_done(conn: Connection, send: "Send") -> None:
    await conn.execute(
        "UPDATE sends SET state = 'done', finished_at = now(), last_error = NULL WHERE id = $1",
        send.send_id,
    )
    await conn.execute(
        "UPDATE deliveries SET channels_done = array_append(channels_done, $2), "
        "attempts = greatest(attempts, $3) WHERE referral_id = $1 "
        "AND NOT ($2 = ANY (channels_done))",
        send.delivery.referral_id,
        send.channel,
        send.attempt,
    )


async def send_failed(conn: Connection, send_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE sends SET state = 'failed', finished_at = now(), last_error = $2 WHERE id = $1",
        send_id,
        error[:500],
    )


async def send_retry(conn: Connection, send_id: int, error: str, delay: timedelta) -> None:
    await conn.execute(
        "UPDATE sends SET next_attempt_at = now() + $3, last_error = $2 WHERE id = $1",
        send_id,
        error[:500],
        delay,
    )


@dataclass(frozen=True)
class SendOutcome:
    channel: str
    state: str
    attempts: int
    last_error: str | None


async def sends_of(conn: Connection, referral_id: str) -> list[SendOutcome]:
    rows = await conn.fetch(
        "SELECT channel, state, attempts, last_error FROM sends WHERE referral_id = $1 ORDER BY id",
        referral_id,
    )
    return [SendOutcome(r["channel"], r["state"], r["attempts"], r["last_error"]) for r in rows]


async def delivered_to(conn: Connection, referral_id: str) -> tuple[str, str] | None:
    """(case id, agency id) if the referral reached its agency on at least one channel."""
    row = await conn.fetchrow(
        "SELECT d.case_id, d.agency_id FROM deliveries d WHERE d.referral_id = $1 AND "
        "(d.state = 'delivered' OR EXISTS (SELECT 1 FROM sends s "
        " WHERE s.referral_id = d.referral_id AND s.state = 'done'))",
        referral_id,
    )
    return None if row is None else (row["case_id"], row["agency_id"])


async def delivery_of(conn: Connection, referral_id: str) -> Delivery | None:
    d = await conn.fetchrow(
        "SELECT referral_id, case_id, agency_id, event_id, event_type, body, traceparent, "
        "channels_done, attempts FROM deliveries WHERE referral_id = $1",
        referral_id,
    )
    if d is None:
        return None
    return Delivery(
        referral_id=d["referral_id"],
        case_id=d["case_id"],
        agency_id=d["agency_id"],
        event_id=d["event_id"],
        event_type=d["event_type"],
        body=bytes(d["body"]),
        traceparent=d["traceparent"],
        channels_done=list(d["channels_done"]),
        attempts=d["attempts"],
    )


async def seen_events(conn: Connection, event_ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT event_id FROM processed_events WHERE event_id = ANY($1::text[])", event_ids
    )
    return {r["event_id"] for r in rows}
