"""The ledger's PostgreSQL adapter: append an event, read a case, stream the whole chain."""

import base64
import hashlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from audit import chain
from audit.chain import Entry, Head, UnrepresentableEvent
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.ledger import Checkpoint
from rujuk_runtime.db import Connection

SCHEMA = "audit"
# One key for every replica: whoever holds it owns the head until its transaction ends.
LEDGER_LOCK_KEY = int.from_bytes(hashlib.sha256(b"rujuk.audit.ledger").digest()[:8], "big") >> 1
STREAM_CHUNK_SIZE = 10_000

_COLUMNS = (
    "seq, event_id, case_id, event_type, actor, event_time, recorded_at, event, prev_hash, hash"
)


class LedgerMissing(RuntimeError):
    """The database has no audit ledger yet."""

    def __init__(self) -> None:
        super().__init__(
            "this database has no audit ledger (schema 'audit'): has the audit service "
            "ever started against it?"
        )


async def connect(database_url: str) -> asyncpg.Connection:
    """A connection for reading the ledger, its SQL unqualified like the service's pool."""
    return await asyncpg.connect(
        database_url,
        server_settings={"search_path": SCHEMA, "application_name": "rujuk-audit-cli"},
    )


async def head(conn: Connection) -> Head:
    """The last entry's seq and hash, or the genesis head of an empty ledger."""
    row = await conn.fetchrow("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
    return chain.GENESIS if row is None else Head(row["seq"], bytes(row["hash"]))


async def append(
    conn: Connection, event: CloudEvent, *, recorded_at: datetime | None = None
) -> Entry | None:
    """Chain ``event`` onto the ledger; None if its id is already there (no seq is used).

    Runs in its own transaction, or a savepoint of the caller's; the advisory lock is held to
    the end of the outermost transaction, so two replicas can never attach to the same head.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
        entry = chain.next_entry(await head(conn), event, recorded_at or datetime.now(UTC))
        inserted = await conn.fetchval(
            f"INSERT INTO ledger ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "  # noqa: S608
            "ON CONFLICT (event_id) DO NOTHING RETURNING true",
            entry.seq,
            entry.event_id,
            entry.case_id,
            entry.event_type,
            entry.actor,
            entry.event_time,
            entry.recorded_at,
            entry.event,
            entry.prev_hash,
            entry.hash,
        )
    return entry if inserted else None


async def case_entries(conn: Connection, case_id: str) -> list[Entry]:
    """Every entry of one case, in ledger order."""
    try:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM ledger WHERE case_id = $1 ORDER BY seq",  # noqa: S608
            case_id,
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return [_entry(row) for row in rows]


async def stream_entries(
    conn: asyncpg.Connection, *, chunk_size: int = STREAM_CHUNK_SIZE
) -> AsyncGenerator[list[Entry], None]:
    """The whole ledger in seq order, in chunks, through a server-side cursor.

    One read-only, repeatable-read transaction: the chain is read as of one moment even while
    the service appends. ``conn`` must not be in a transaction; close the iterator when done
    (``contextlib.aclosing``) if you stop early.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        try:
            cursor = await conn.cursor(
                f"SELECT {_COLUMNS} FROM ledger ORDER BY seq"  # noqa: S608
            )
        except asyncpg.UndefinedTableError as exc:
            raise LedgerMissing from exc
        while rows := await cursor.fetch(chunk_size):
            yield [_entry(row) for row in rows]


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(*row.values())  # the columns are selected in Entry's field order


@dataclass
class BatchAppend:
    """What one batch did: the entries it chained, the ids already there, the refused."""

    entries: list[Entry]
    duplicates: list[str]
    refused: list[tuple[int, str]]  # (index in the batch, reason)


async def append_batch(
    conn: Connection, events: Sequence[CloudEvent], *, recorded_at: datetime | None = None
) -> BatchAppend:
    """Chain ``events`` onto the ledger in order: one lock, one head read, one INSERT.

    An event whose id is already recorded (or repeats within the batch) takes no seq; one
    with no canonical form is refused with the reason and the rest go on. Runs in its own
    transaction or a savepoint of the caller's; the advisory lock is held to the end of the
    outermost transaction, as in ``append``.
    """
    moment = recorded_at or datetime.now(UTC)
    result = BatchAppend([], [], [])
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
        known = {
            row["event_id"]
            for row in await conn.fetch(
                "SELECT event_id FROM ledger WHERE event_id = ANY($1::text[])",
                [event.id for event in events],
            )
        }
        current = await head(conn)
        for index, event in enumerate(events):
            if event.id in known:
                result.duplicates.append(event.id)
                continue
            try:
                entry = chain.next_entry(current, event, moment)
            except UnrepresentableEvent as exc:
                result.refused.append((index, str(exc)))
                continue
            known.add(event.id)
            result.entries.append(entry)
            current = Head(entry.seq, entry.hash)
        if result.entries:
            columns = list(zip(*(_row(entry) for entry in result.entries), strict=True))
            await conn.execute(
                f"INSERT INTO ledger ({_COLUMNS}) SELECT * FROM unnest("  # noqa: S608
                "$1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], "
                "$6::timestamptz[], $7::timestamptz[], $8::json[], $9::bytea[], $10::bytea[])",
                *columns,
            )
    return result


def _row(entry: Entry) -> tuple[object, ...]:
    return (
        entry.seq,
        entry.event_id,
        entry.case_id,
        entry.event_type,
        entry.actor,
        entry.event_time,
        entry.recorded_at,
        entry.event,
        entry.prev_hash,
        entry.hash,
    )


async def entries_between(conn: Connection, first_seq: int, last_seq: int) -> list[Entry]:
    """Entries ``first_seq`` to ``last_seq`` inclusive, in order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ledger WHERE seq BETWEEN $1 AND $2 ORDER BY seq",  # noqa: S608
        first_seq,
        last_seq,
    )
    return [_entry(row) for row in rows]


async def replay_selection(
    conn: Connection,
    *,
    case_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Entry]:
    """The entries a replay re-publishes: one case, and/or event times in [since, until)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM ledger "  # noqa: S608
        "WHERE ($1::text IS NULL OR case_id = $1) "
        "AND ($2::timestamptz IS NULL OR event_time >= $2) "
        "AND ($3::timestamptz IS NULL OR event_time < $3) ORDER BY seq",
        case_id,
        since,
        until,
    )
    return [_entry(row) for row in rows]


# Checkpoints


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    public_key: bytes  # as audit stored it; trust it only as far as the database


async def insert_checkpoint(conn: Connection, checkpoint: Checkpoint, public_key: bytes) -> bool:
    """Store a checkpoint; False if one for that seq exists (e.g. another replica's)."""
    inserted = await conn.fetchval(
        "INSERT INTO checkpoints (seq, hash, signed_at, key_id, public_key, signature) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING RETURNING true",
        checkpoint.seq,
        checkpoint.hash_bytes(),
        checkpoint.time,
        checkpoint.key_id,
        public_key,
        checkpoint.signature_bytes(),
    )
    return bool(inserted)


async def checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    """Every checkpoint, oldest first."""
    try:
        rows = await conn.fetch(
            "SELECT seq, hash, signed_at, key_id, public_key, signature "
            "FROM checkpoints ORDER BY seq"
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return [_checkpoint(row) for row in rows]


async def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    try:
        row = await conn.fetchrow(
            "SELECT seq, hash, signed_at, key_id, public_key, signature "
            "FROM checkpoints ORDER BY seq DESC LIMIT 1"
        )
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return None if row is None else _checkpoint(row)


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    checkpoint = Checkpoint(
        seq=row["seq"],
        hash=bytes(row["hash"]).hex(),
        time=row["signed_at"],
        key_id=row["key_id"],
        signature=base64.b64encode(bytes(row["signature"])).decode(),
    )
    return StoredCheckpoint(checkpoint, bytes(row["public_key"]))


# Parked messages


@dataclass(frozen=True)
class ParkedMessage:
    dlq_seq: int
    service: str
    reason: str
    original_subject: str
    size: int
    parked_at: datetime


async def record_parked(conn: Connection, messages: Sequence[ParkedMessage]) -> int:
    """Count parked messages (each once, by its dead-letter stream seq); how many were new."""
    if not messages:
        return 0
    inserted = await conn.fetch(
        "INSERT INTO parked (dlq_seq, service, reason, original_subject, size, parked_at) "
        "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], "
        "$6::timestamptz[]) ON CONFLICT (dlq_seq) DO NOTHING RETURNING dlq_seq",
        [m.dlq_seq for m in messages],
        [m.service for m in messages],
        [m.reason for m in messages],
        [m.original_subject for m in messages],
        [m.size for m in messages],
        [m.parked_at for m in messages],
    )
    return len(inserted)


async def parked_counts(conn: Connection) -> dict[str, int]:
    """How many messages each service parked."""
    try:
        rows = await conn.fetch("SELECT service, count(*) AS n FROM parked GROUP BY service")
    except asyncpg.UndefinedTableError as exc:
        raise LedgerMissing from exc
    return {row["service"]: row["n"] for row in sorted(rows, key=lambda r: r["service"])}
