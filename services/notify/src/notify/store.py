"""Notify's PostgreSQL adapter: the delivery queue, its lanes, the record of every attempt, the
staging of partners' replies (through the runtime's inbox and outbox), and the on-call
acknowledgement codes.

A referral to deliver is one ``deliveries`` row and one ``sends`` row per channel. The sends of
one (agency, channel) form a lane, delivered strictly in order: only a lane's oldest pending
send (its head) is ever tried, and claiming it sets ``next_attempt_at`` to a lease, so no
other worker takes it while it is in flight and a crashed worker's claim comes back after it.
"""

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from notify.oncall import AckCode
from notify.replies import REPLY_KINDS, Reply, accepted_reply
from rujuk_contracts import CloudEvent
from rujuk_contracts.events import ReferralRequested, SopProposed
from rujuk_runtime.db import Connection, columns
from rujuk_runtime.inbox import record_processed
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox

log = get_logger(__name__)

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


# The referrals of a batch, their sends (one per channel, in referral then channel order, so
# each lane keeps the order of issue) and a wake-up of the workers, in one statement; a
# referral queued before is left as it is.
_ENQUEUE = """
WITH d AS (
    INSERT INTO deliveries (referral_id, case_id, agency_id, event_id, event_type, body,
                            traceparent, pending_sends)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bytea[], $7::text[], $8::int[])
    ON CONFLICT (referral_id) DO NOTHING RETURNING referral_id, agency_id
), s AS (
    INSERT INTO sends (referral_id, agency_id, channel)
    SELECT d.referral_id, d.agency_id, c.channel
    FROM unnest($9::text[], $10::text[]) WITH ORDINALITY AS c (referral_id, channel, n)
    JOIN d ON d.referral_id = c.referral_id
    ORDER BY c.n
    RETURNING id
)
SELECT queued, (SELECT pg_notify($11, '') WHERE queued > 0) AS woken
FROM (SELECT count(*) AS queued FROM d) AS q
"""


async def enqueue_many(conn: Connection, queue: list[tuple[Delivery, list[str]]]) -> int:
    """Queue referrals for delivery, each on its channels (one send each), in one statement,
    and wake the workers (LISTEN) when the caller commits; how many were new."""
    if not queue:
        return 0
    deliveries = (
        (d.referral_id, d.case_id, d.agency_id, d.event_id, d.event_type, d.body, d.traceparent,
         len(channels))
        for d, channels in queue
    )  # fmt: skip
    sends = ((d.referral_id, channel) for d, channels in queue for channel in channels)
    queued: int = await conn.fetchval(
        _ENQUEUE, *columns(deliveries, 8), *columns(sends, 2), WAKE_CHANNEL
    )
    return queued


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


# The head (oldest pending send) of every lane, by a skip scan of the pending sends' index:
# each step takes the first entry past the lane before, so the statement reads a few index
# pages per lane, however many sends are queued behind the heads. (DISTINCT ON over the
# pending sends read every one of them: in a burst of thousands, the scheduler's costliest
# statement but one.)
_LANE_HEADS = """
WITH RECURSIVE heads AS (
    (SELECT agency_id, channel, next_attempt_at FROM sends WHERE state = 'pending'
     ORDER BY agency_id, channel, id LIMIT 1)
    UNION ALL
    SELECT n.agency_id, n.channel, n.next_attempt_at FROM heads h CROSS JOIN LATERAL (
        SELECT agency_id, channel, next_attempt_at FROM sends
        WHERE state = 'pending' AND (agency_id, channel) > (h.agency_id, h.channel)
        ORDER BY agency_id, channel, id LIMIT 1
    ) AS n
)
SELECT agency_id, channel, extract(epoch FROM next_attempt_at - now())::float8 AS wait
FROM heads ORDER BY agency_id, channel
"""


async def lane_heads(conn: Connection) -> list[LaneHead]:
    """Every lane with a pending send, and how long until its head is due (in lane order)."""
    rows = await conn.fetch(_LANE_HEADS)
    return [LaneHead(r["agency_id"], r["channel"], r["wait"]) for r in rows]


@dataclass(frozen=True)
class Send:
    send_id: int
    channel: str
    attempt: int
    delivery: Delivery


async def claim_lane(
    conn: Connection, agency_id: str, channel: str, limit: int, lease: timedelta, worker: str
) -> list[Send]:
    """Take the lane's due sends from its head on (at most ``limit``), in order, counting an
    attempt on each and leasing them to ``worker``; empty if the head is not due."""
    lane = (agency_id, channel)
    return (await claim_lanes(conn, [lane], limit, lease, worker)).get(lane, [])


def _worker_lock(worker: str) -> str:
    return f"rujuk.notify.worker:{worker}"


async def hold_worker_lock(conn: Connection, worker: str) -> None:
    """Held by the worker's own session while it runs (released when that session ends, as
    when the process is killed): how others tell its leases from a dead worker's."""
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", _worker_lock(worker))


async def reclaim_abandoned(conn: Connection, worker: str) -> int:
    """Sends leased by a worker that no longer runs (its lock is free) are due again now, not
    when their lease ends; how many. Their attempt stays counted: it may have reached the
    partner (the partner's idempotency key, the webhook-id, tells a resend)."""
    async with conn.transaction():  # the probing locks are the transaction's, freed at commit
        status = await conn.execute(
            "UPDATE sends SET next_attempt_at = now(), leased_by = NULL "
            "WHERE state = 'pending' AND leased_by IS NOT NULL AND leased_by <> $1 "
            "AND next_attempt_at > now() "
            "AND pg_try_advisory_xact_lock(hashtext('rujuk.notify.worker:' || leased_by))",
            worker,
        )
    return int(status.split()[-1])


async def unclaim(conn: Connection, send_ids: list[int]) -> None:
    """Claimed sends that were not tried (one before them failed): due again, no attempt."""
    if send_ids:
        await conn.execute(
            "UPDATE sends SET attempts = attempts - 1, next_attempt_at = now(), leased_by = NULL "
            "WHERE id = ANY($1::bigint[])",
            send_ids,
        )


# One statement settles a lane batch. Every attempt is recorded and every send gets its new
# state; each referral with a finished send (done, or failed for good) is counted off its
# deliveries row, once, with all of its sends in the batch (a lane's batch holds one send per
# referral; the worker's settle of several lanes at once can hold a referral's sends on two
# channels, counted together). That row's lock serialises the channels
# of one referral, and the counts are taken from the row as locked: under READ COMMITTED a
# row another lane's settle changed is locked and read in its new version, so exactly one
# settle sees pending_sends reach 0. Rows are locked in referral_id order, whatever the
# batch's order, so two lanes settling the same referrals cannot deadlock; sends likewise in
# id order, as a claim locks them. (The attempts' foreign key check takes KEY SHARE locks,
# which NO KEY UPDATE does not block.) A referral whose last pending send finished with no
# failed send is marked delivered here. Returned: the referrals this settle finished, the
# ones it must report, in the batch's order.
_SETTLE = """
WITH tried AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::boolean[],
                         $6::text[], $7::text[], $8::interval[])
        WITH ORDINALITY AS t (send_id, referral_id, channel, attempt, ok, detail, state,
                              retry_in, n)
), attempt AS (
    INSERT INTO delivery_attempts (referral_id, channel, attempt, ok, detail)
    SELECT referral_id, channel, attempt, ok, detail FROM tried ORDER BY n
), locked_sends AS (
    SELECT id FROM sends WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE
), send AS (
    UPDATE sends s SET state = t.state, last_error = CASE WHEN t.ok THEN NULL ELSE t.detail END,
        next_attempt_at = CASE WHEN t.state = 'pending' THEN now() + t.retry_in
                          ELSE s.next_attempt_at END,
        finished_at = CASE WHEN t.state = 'pending' THEN NULL ELSE now() END, leased_by = NULL
    FROM tried t, locked_sends l WHERE s.id = t.send_id AND l.id = s.id
), finished AS (
    SELECT referral_id, min(n) AS n, count(*) AS sends,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           coalesce(array_agg(channel ORDER BY n) FILTER (WHERE ok), '{}') AS done,
           max(attempt) AS attempt
    FROM tried WHERE state <> 'pending' GROUP BY referral_id
), counted AS (
    SELECT d.referral_id, f.n,
           d.pending_sends - f.sends AS pending_sends,
           d.failed_sends + f.failed AS failed_sends,
           d.channels_done || ARRAY(SELECT c FROM unnest(f.done) WITH ORDINALITY AS u (c, i)
                                    WHERE c <> ALL (d.channels_done) ORDER BY i)
               AS channels_done,
           greatest(d.attempts, f.attempt) AS attempts,
           d.state = 'pending' AND d.pending_sends = f.sends AS last
    FROM deliveries d JOIN finished f ON f.referral_id = d.referral_id
    ORDER BY d.referral_id FOR NO KEY UPDATE OF d
), delivery AS (
    UPDATE deliveries d SET pending_sends = c.pending_sends, failed_sends = c.failed_sends,
        channels_done = c.channels_done, attempts = c.attempts,
        state = CASE WHEN c.last AND c.failed_sends = 0 THEN 'delivered' ELSE d.state END,
        finished_at = CASE WHEN c.last AND c.failed_sends = 0 THEN now() ELSE d.finished_at END,
        last_error = CASE WHEN c.last AND c.failed_sends = 0 THEN NULL ELSE d.last_error END
    FROM counted c WHERE d.referral_id = c.referral_id
    RETURNING d.referral_id, c.n, c.last, d.failed_sends, d.channels_done, d.attempts
)
SELECT referral_id, failed_sends, channels_done, attempts FROM delivery WHERE last ORDER BY n
"""


# The due sends of one or several lanes in one statement: each lane from its head, up to $3,
# only the prefix that is due (a head not due, leased by a worker or backing off, holds back
# the sends behind it). Candidates are read first, then locked in id order, the
# order a settle and a one-lane claim lock sends in, so that none of them can deadlock another;
# a candidate that another worker finished meanwhile drops out when it is locked.
_CLAIM_LANES = """
WITH lanes AS (
    SELECT * FROM unnest($1::text[], $2::text[]) AS l (agency_id, channel)
), candidates AS (
    SELECT c.id FROM lanes l CROSS JOIN LATERAL (
        SELECT id FROM sends
        WHERE agency_id = l.agency_id AND channel = l.channel AND state = 'pending'
        ORDER BY id LIMIT $3
    ) AS c
), locked AS (
    SELECT id, agency_id, channel, next_attempt_at <= now() AS due FROM sends
    WHERE id = ANY(ARRAY(SELECT id FROM candidates)) AND state = 'pending'
    ORDER BY id FOR UPDATE
), prefix AS (
    SELECT id FROM locked x
    WHERE id < coalesce((SELECT min(id) FROM locked y WHERE NOT y.due
                         AND y.agency_id = x.agency_id AND y.channel = x.channel),
                        9223372036854775807)
)
UPDATE sends s SET attempts = s.attempts + 1, next_attempt_at = now() + $4, leased_by = $5
FROM prefix, deliveries d
WHERE s.id = prefix.id AND d.referral_id = s.referral_id
RETURNING s.id, s.channel, s.attempts, d.referral_id, d.case_id, d.agency_id, d.event_id,
          d.event_type, d.body, d.traceparent, d.channels_done, d.attempts AS delivery_attempts
"""


async def claim_lanes(
    conn: Connection, lanes: list[tuple[str, str]], limit: int, lease: timedelta, worker: str
) -> dict[tuple[str, str], list[Send]]:
    """``claim_lane`` for several (agency, channel) lanes in one statement: each lane's
    claimed sends, in order (a lane whose head is not due has none)."""
    if not lanes:
        return {}
    rows = await conn.fetch(
        _CLAIM_LANES, [a for a, _ in lanes], [c for _, c in lanes], limit, lease, worker
    )
    claimed: dict[tuple[str, str], list[Send]] = {}
    for r in sorted(rows, key=lambda row: row["id"]):
        send = Send(r["id"], r["channel"], r["attempts"],
                    _delivery(r, attempts=r["delivery_attempts"]))  # fmt: skip
        claimed.setdefault((r["agency_id"], r["channel"]), []).append(send)
    return claimed


@dataclass(frozen=True)
class Tried:
    """One claimed send that was tried, and what came of it."""

    send: Send
    ok: bool
    detail: str
    retry_in: timedelta | None  # failed, tried again after this; None: done, or failed for good

    @property
    def state(self) -> str:
        return "done" if self.ok else ("pending" if self.retry_in is not None else "failed")


@dataclass(frozen=True)
class Finished:
    """A referral whose last pending send a settle finished: it is to be reported. With no
    failed send it is already marked delivered; otherwise the caller marks it failed."""

    referral_id: str
    failed_sends: int
    channels_done: list[str]
    attempts: int


async def settle(conn: Connection, tried: list[Tried]) -> list[Finished]:
    """Record a lane batch's attempts and its sends' new states (done; pending again after
    ``retry_in``; or failed), in one statement; the referrals it finished, in batch order.

    The deliveries row lock serialises the channels of one referral, so exactly one settle
    (the one that brings ``pending_sends`` to 0) returns a referral."""
    if not tried:
        return []
    rows = await conn.fetch(
        _SETTLE,
        [t.send.send_id for t in tried],
        [t.send.delivery.referral_id for t in tried],
        [t.send.channel for t in tried],
        [t.send.attempt for t in tried],
        [t.ok for t in tried],
        [t.detail[:500] for t in tried],
        [t.state for t in tried],
        [t.retry_in or timedelta(0) for t in tried],
    )
    return [
        Finished(r["referral_id"], r["failed_sends"], list(r["channels_done"]), r["attempts"])
        for r in rows
    ]


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
    """(case id, agency id) if the referral reached its agency on at least one channel (a
    referral: an on-call page, queued in the same table, is none)."""
    row = await conn.fetchrow(
        "SELECT d.case_id, d.agency_id FROM deliveries d WHERE d.referral_id = $1 AND "
        "d.event_type = $2 AND (d.state = 'delivered' OR EXISTS (SELECT 1 FROM sends s "
        " WHERE s.referral_id = d.referral_id AND s.state = 'done'))",
        referral_id,
        ReferralRequested.event_type(),
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


async def accept_reply(
    conn: Connection,
    agency_id: str,
    reply: Reply,
    traceparent: str | None,
    *,
    source: str | None = None,
) -> tuple[str, bool]:
    """Check a partner's reply against what notify delivered (``replies.accepted_reply``) and
    stage its internal event in the outbox, in the caller's transaction.

    Returns the internal event id and whether it is new (False: a retry, nothing staged)."""
    delivered = await delivered_to(conn, reply.referral_id)
    event = accepted_reply(agency_id, reply, delivered, traceparent, source=source)
    if not await record_processed(conn, event.id, event.type):
        return event.id, False
    await add_to_outbox(conn, event)
    log.info("partner reply accepted", case_id=reply.case_id, referral_id=reply.referral_id,
             agency_id=agency_id, reply=REPLY_KINDS[type(reply)].value)  # fmt: skip
    return event.id, True


# --- SOP proposals: notices to the asked agencies, and their answers ----------------------------


async def sop_notice_agencies(conn: Connection, proposal_id: str) -> list[str]:
    """The agencies notify told of a proposed SOP version (its ``sop.proposed`` notices)."""
    rows = await conn.fetch(
        "SELECT agency_id FROM deliveries WHERE case_id = $1 AND event_type = $2 "
        "ORDER BY agency_id",
        proposal_id,
        SopProposed.event_type(),
    )
    return [row["agency_id"] for row in rows]


async def stage_sop_answer(conn: Connection, event: CloudEvent) -> bool:
    """Stage a partner's checked answer (``sop_answers.accepted_sop_answer``) in the outbox,
    in the caller's transaction; False when it was staged before (a retry: nothing staged)."""
    if not await record_processed(conn, event.id, event.type):
        return False
    await add_to_outbox(conn, event)
    return True


# --- on-call acknowledgement codes -------------------------------------------------------------

# Each contact's code for the alert: a new one (drawn by the caller), or the one issued in an
# earlier round, whose channels gain this round's. A new code equal to another alert's (one
# chance in ~10^12) violates the primary key: the consumer's batch is retried with new codes.
_ISSUE_CODES = """
INSERT INTO oncall_ack_codes (code, alert_id, case_id, contact_id, channels)
SELECT c.code, $2, $3, c.contact_id, string_to_array(c.channels, ',')
FROM unnest($1::text[], $4::text[], $5::text[]) AS c (code, contact_id, channels)
ON CONFLICT (alert_id, contact_id) DO UPDATE SET channels = ARRAY(
    SELECT DISTINCT x FROM unnest(oncall_ack_codes.channels || EXCLUDED.channels) AS x ORDER BY x
)
RETURNING contact_id, code
"""


async def issue_ack_codes(
    conn: Connection, alert_id: str, case_id: str, contacts: dict[str, tuple[str, list[str]]]
) -> dict[str, str]:
    """The code of each contact for the alert: ``contacts`` maps a contact id to (a fresh
    code, the channels it is paged on now); a contact that has a code for the alert keeps it."""
    if not contacts:
        return {}
    rows = await conn.fetch(
        _ISSUE_CODES,
        [code for code, _ in contacts.values()],
        alert_id,
        case_id,
        list(contacts),
        [",".join(channels) for _, channels in contacts.values()],
    )
    return {r["contact_id"]: r["code"] for r in rows}


async def ack_code_of(conn: Connection, alert_id: str, contact_id: str) -> str | None:
    code: str | None = await conn.fetchval(
        "SELECT code FROM oncall_ack_codes WHERE alert_id = $1 AND contact_id = $2",
        alert_id,
        contact_id,
    )
    return code


async def find_ack_code(conn: Connection, candidates: list[str]) -> AckCode | None:
    """The first of ``candidates`` (in their order) that is an issued code."""
    if not candidates:
        return None
    row = await conn.fetchrow(
        "SELECT code, alert_id, case_id, contact_id, channels FROM oncall_ack_codes "
        "WHERE code = ANY($1::text[]) ORDER BY array_position($1::text[], code) LIMIT 1",
        candidates,
    )
    if row is None:
        return None
    return AckCode(
        row["code"], row["alert_id"], row["case_id"], row["contact_id"], list(row["channels"])
    )


async def count_reply(conn: Connection, code: str, window: timedelta) -> int | None:
    """Count a reply with ``code``, unless the last one counted is less than ``window`` old:
    the reply's number (1 for the first), or None for a repeat. The row's lock makes two
    replies at once count once."""
    number: int | None = await conn.fetchval(
        "UPDATE oncall_ack_codes SET replies = replies + 1, last_reply_at = now() "
        "WHERE code = $1 AND (last_reply_at IS NULL OR last_reply_at <= now() - $2::interval) "
        "RETURNING replies",
        code,
        window,
    )
    return number
