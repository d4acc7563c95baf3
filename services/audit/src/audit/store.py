"""The ledger's PostgreSQL adapter: append an event, read a case, stream the whole chain."""

import hashlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import asyncpg

from audit import chain
from audit.chain import Entry, Head
from rujuk_contracts.envelope import CloudEvent
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
