"""Notify's PostgreSQL adapter: the delivery queue, its lanes, and the record of every attempt.

A referral to deliver is one ``deliveries`` row and one ``sends`` row per channel. The sends of
one (agency, channel) form a lane, delivered strictly in order: only a lane's oldest pending
send (its head) is ever tried, and claiming it sets ``next_attempt_at`` to a lease, so no
other worker takes it while it is in flight and a crashed worker's claim comes back after it.
"""

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from rujuk_runtime.db import Connection

WAKE_CHANNEL = "notify_sends"  # NOTIFY on commit of new sends wakes the workers


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


_ENQUEUE = """
WITH d AS (
    INSERT INTO deliveries (referral_id, case_id, agency_id, event_id, event_type, body,
                            traceparent, pending_sends)
    VALUES ($1, $2, $3, $4, $5, $6, $7, cardinality($8::text[]))
    ON CONFLICT (referral_id) DO NOTHING RETURNING referral_id, agency_id
), s AS (
    INSERT INTO sends (referral_id, agency_id, channel)
    SELECT d.referral_id, d.agency_id, c.channel
    FROM d, unnest($8::text[]) WITH ORDINALITY AS c (channel, n) ORDER BY c.n
    RETURNING id
)
SELECT (SELECT count(*) FROM s) AS sends, pg_notify($9, '') FROM d
"""


async def enqueue(conn: Connection, delivery: Delivery, channels: list[str]) -> bool:
    """Queue a referral for delivery on ``channels`` (one send each), in one statement, and
    wake the workers (LISTEN) when the caller commits; False if it was queued before."""
    row = await conn.fetchrow(
        _ENQUEUE,
        delivery.referral_id,
        delivery.case_id,
        delivery.agency_id,
        delivery.event_id,
        delivery.event_type,
        delivery.body,
        delivery.traceparent,
        channels,
        WAKE_CHANNEL,
    )
    return row is not None


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


_CLAIM = """
WITH lane AS (
    SELECT id, next_attempt_at <= now() AS due FROM sends
    WHERE agency_id = $1 AND channel = $2 AND state = 'pending'
    ORDER BY id LIMIT $3 FOR UPDATE
), prefix AS (
    SELECT id FROM lane
    WHERE id < coalesce((SELECT min(id) FROM lane WHERE NOT due), 9223372036854775807)
)
UPDATE sends s SET attempts = s.attempts + 1, next_attempt_at = now() + $4
FROM prefix, deliveries d
WHERE s.id = prefix.id AND d.referral_id = s.referral_id
RETURNING s.id, s.attempts, d.referral_id, d.case_id, d.agency_id, d.event_id, d.event_type,
          d.body, d.traceparent, d.channels_done, d.attempts AS delivery_attempts
"""


async def claim_lane(
    conn: Connection, agency_id: str, channel: str, limit: int, lease: timedelta
) -> list[Send]:
    """Take the lane's due sends from its head on (at most ``limit``), in order, counting an
    attempt on each and leasing them; empty if the head is not due."""
    rows = await conn.fetch(_CLAIM, agency_id, channel, limit, lease)
    sends = [
        Send(
            r["id"],
            channel,
            r["attempts"],
            _delivery(r, attempts=r["delivery_attempts"]),
        )
        for r in rows
    ]
    return sorted(sends, key=lambda send: send.send_id)


async def unclaim(conn: Connection, send_ids: list[int]) -> None:
    """Claimed sends that were not tried (one before them failed): due again, no attempt."""
    if send_ids:
        await conn.execute(
            "UPDATE sends SET attempts = attempts - 1, next_attempt_at = now() "
            "WHERE id = ANY($1::bigint[])",
            send_ids,
        )


_SETTLE = """
WITH attempt AS (
    INSERT INTO delivery_attempts (referral_id, channel, attempt, ok, detail)
    VALUES ($2, $3, $4, $5, $6)
), send AS (
    UPDATE sends SET state = $7, last_error = CASE WHEN $5 THEN NULL ELSE $6 END,
        next_attempt_at = CASE WHEN $7 = 'pending' THEN now() + $8 ELSE next_attempt_at END,
        finished_at = CASE WHEN $7 = 'pending' THEN NULL ELSE now() END
    WHERE id = $1
)
UPDATE deliveries SET pending_sends = pending_sends - 1,
    failed_sends = failed_sends + CASE WHEN $5 THEN 0 ELSE 1 END,
    channels_done = CASE WHEN $5 AND NOT ($3 = ANY (channels_done))
                    THEN array_append(channels_done, $3) ELSE channels_done END,
    attempts = greatest(attempts, $4)
WHERE referral_id = $2 AND $7 <> 'pending'
RETURNING pending_sends, failed_sends, state, channels_done, attempts
"""


@dataclass(frozen=True)
class Settled:
    pending_sends: int  # -1: this send is still pending (retry later)
    failed_sends: int
    state: str  # the delivery's
    channels_done: list[str]
    attempts: int


async def settle_send(
    conn: Connection, send: Send, ok: bool, detail: str, retry_in: timedelta | None
) -> Settled:
    """Record the attempt and the send's new state (done; pending again after ``retry_in``;
    or failed), in one statement. A finished send is counted off its delivery, whose row lock
    serialises the channels of one referral: the settle that brings ``pending_sends`` to 0
    is the one that reports the referral."""
    state = "done" if ok else ("pending" if retry_in is not None else "failed")
    row = await conn.fetchrow(
        _SETTLE,
        send.send_id,
        send.delivery.referral_id,
        send.channel,
        send.attempt,
        ok,
        detail[:500],
        state,
        retry_in or timedelta(0),
    )
    if row is None:
        return Settled(-1, 0, "pending", [], send.attempt)
    return Settled(
        row["pending_sends"],
        row["failed_sends"],
        row["state"],
        list(row["channels_done"]),
        row["attempts"],
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
    return None if d is None else _delivery(d, attempts=d["attempts"])


def _delivery(row: asyncpg.Record, *, attempts: int) -> Delivery:
    return Delivery(
        referral_id=row["referral_id"],
        case_id=row["case_id"],
        agency_id=row["agency_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        body=bytes(row["body"]),
        traceparent=row["traceparent"],
        channels_done=list(row["channels_done"]),
        attempts=attempts,
    )


async def seen_events(conn: Connection, event_ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT event_id FROM processed_events WHERE event_id = ANY($1::text[])", event_ids
    )
    return {r["event_id"] for r in rows}
