"""Verify's fast path (bodies built by PostgreSQL, streamed by binary COPY) against the
reference path (chain.verify over Entry objects): same bodies, same verdicts, tampered or not."""

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from audit import chain, store
from audit.chain import GENESIS, Entry, FailureKind, Head
from audit.cli import verify_ledger
from rujuk_runtime.db import create_pool
from tests.unit.test_audit_chain import case_story

pytestmark = pytest.mark.integration

COLUMNS = [c.strip() for c in store._COLUMNS.split(",")]

# Strings JSON must escape (quote, backslash, controls), ones it must not (DEL, non-ASCII,
# astral), and times the formatter must pad (zero fraction, year 5, year 9999).
ODD_FIELDS = [
    {"actor": '/rujuk/"quoted"'},
    {"case_id": "back\\slash"},
    {"event_id": "tab\there"},
    {"event_type": "new\nline"},
    {"actor": "del\x7fand\x1funit"},
    {"case_id": "Désa Bangil — 😀 ✓"},
    {"event_time": datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)},
    {"recorded_at": datetime(9999, 12, 31, 23, 59, 58, 999999, tzinfo=UTC)},
    {"recorded_at": datetime.max.replace(tzinfo=UTC)},  # stored as infinity: reference path
    {"event_time": datetime(2026, 3, 2, 1, 0, 2, tzinfo=UTC)},
    {"event_time": datetime(2026, 3, 2, 8, 0, 2, 5, tzinfo=UTC)},
]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "audit")
    yield pool
    await pool.close()


def chained(count: int, odd: dict[int, dict[str, object]] | None = None) -> list[Entry]:
    """``count`` entries; entry ``n`` takes the fields ``odd[n]`` before it is hashed."""
    stories = [event for case in range(count // 5 + 1) for event in case_story(f"3514-{case:010}")]
    head, entries = GENESIS, []
    recorded = datetime(2026, 6, 1, tzinfo=UTC)
    for n, event in enumerate(stories[:count], start=1):
        entry = chain.next_entry(head, event, recorded + timedelta(microseconds=n * 7))
        changes = (odd or {}).get(n)
        if changes:
            fields = {
                k: getattr(entry, k)
                for k in (f.name for f in dataclasses.fields(Entry))
                if k not in ("prev_hash", "hash")
            }
            fields.update(changes)
            body = chain.canonical_body(**fields)  # type: ignore[arg-type]
            entry = Entry(**fields, prev_hash=head.hash, hash=chain.entry_hash(head.hash, body))  # type: ignore[arg-type]
        head = Head(entry.seq, entry.hash)
        entries.append(entry)
    return entries


async def load(pool: asyncpg.Pool, entries: list[Entry]) -> None:
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "ledger", records=[store._row(e) for e in entries], columns=COLUMNS, schema_name="audit"
        )


async def tamper(pool: asyncpg.Pool, sql: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql)


async def fast_bodies(pool: asyncpg.Pool) -> tuple[list[store.BodyRow], int | None]:
    rows: list[store.BodyRow] = []

    def sink(chunk: list[store.BodyRow]) -> bool:
        rows.extend(chunk)
        return True

    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        rest = await store.copy_bodies(conn, sink)
        if rest is not None:
            async for chunk in store.cursor_bodies(conn, first_seq=rest, chunk_size=3):
                rows.extend(chunk)
    return rows, rest


async def reference(pool: asyncpg.Pool) -> chain.VerifyResult:
    async with pool.acquire() as conn:
        entries = [e async for chunk in store.stream_entries(conn) for e in chunk]  # type: ignore[arg-type]
    return chain.verify(entries)


async def test_the_server_formats_times_exactly_as_the_chain_does(pool: asyncpg.Pool) -> None:
    moments = [
        datetime(2026, 3, 2, 1, 0, 2, tzinfo=UTC),
        datetime(2026, 3, 2, 1, 0, 2, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 30, 0, 120000, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),  # datetime.min itself is -infinity to asyncpg
        datetime(5, 6, 7, 8, 9, 10, 11, tzinfo=UTC),
        datetime(999, 1, 1, 0, 0, 0, 500, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 58, 999999, tzinfo=UTC),
        datetime(2026, 3, 2, 8, 0, 2, 5, tzinfo=UTC) + timedelta(hours=7),
    ]
    async with pool.acquire() as conn:
        await conn.execute("SET TIME ZONE 'Asia/Jakarta'")  # the session zone must not matter
        for moment in moments:
            text = await conn.fetchval(
                f"SELECT {store._UTC_TIME.format('$1::timestamptz')}", moment
            )
            assert text == chain.timestamp(moment)


async def test_server_bodies_equal_the_reference_bodies_for_odd_fields(
    pool: asyncpg.Pool, database_url: str
) -> None:
    odd = {n: fields for n, fields in enumerate(ODD_FIELDS, start=3)}  # every other row plain
    entries = chained(30, odd)
    await load(pool, entries)

    rows, rest = await fast_bodies(pool)

    assert rest == 3  # the first odd row hands over to the cursor
    assert rows == [(e.seq, e.prev_hash, e.hash, chain.body_of(e)) for e in entries]
    result = await verify_ledger(database_url)
    assert result.ok
    assert (result.entries, result.head_hash) == (30, entries[-1].hash)


async def test_a_plain_ledger_is_read_by_copy_alone(pool: asyncpg.Pool) -> None:
    entries = chained(25)
    await load(pool, entries)

    rows, rest = await fast_bodies(pool)

    assert rest is None
    assert rows == [(e.seq, e.prev_hash, e.hash, chain.body_of(e)) for e in entries]


TAMPERINGS = [
    ("UPDATE ledger SET actor = '/rujuk/forger' WHERE seq = 7", 7, FailureKind.HASH_MISMATCH),
    ("UPDATE ledger SET actor = 'a\"b' WHERE seq = 7", 7, FailureKind.HASH_MISMATCH),
    ("UPDATE ledger SET case_id = 'x\\y' WHERE seq = 12", 12, FailureKind.HASH_MISMATCH),
    (
        """UPDATE ledger SET event = '{"id":"forged"}' WHERE seq = 4""",
        4,
        FailureKind.HASH_MISMATCH,
    ),
    (
        "UPDATE ledger SET event_time = event_time + interval '1 microsecond' WHERE seq = 9",
        9,
        FailureKind.HASH_MISMATCH,
    ),
    (
        "UPDATE ledger SET recorded_at = '2026-06-01T07:00:00+07' WHERE seq = 1",
        1,
        FailureKind.HASH_MISMATCH,
    ),
    ("UPDATE ledger SET hash = sha256(hash) WHERE seq = 15", 15, FailureKind.HASH_MISMATCH),
    ("UPDATE ledger SET prev_hash = sha256(hash) WHERE seq = 5", 5, FailureKind.BROKEN_LINK),
    ("DELETE FROM ledger WHERE seq = 10", 10, FailureKind.GAP),
    ("UPDATE ledger SET seq = 100 WHERE seq = 20", 20, FailureKind.GAP),
]


@pytest.mark.parametrize(("sql", "seq", "kind"), TAMPERINGS)
@pytest.mark.parametrize("odd_row", [None, 2])
async def test_fast_and_reference_verify_agree_on_a_tampered_ledger(
    pool: asyncpg.Pool,
    database_url: str,
    sql: str,
    seq: int,
    kind: FailureKind,
    odd_row: int | None,
) -> None:
    # With an odd row early, the tampered entry is reached through the cursor instead.
    odd = {odd_row: {"actor": 'say "hi"'}} if odd_row else None
    await load(pool, chained(24, odd))
    await tamper(pool, sql)

    fast = await verify_ledger(database_url)
    slow = await reference(pool)

    assert fast.failure is not None
    assert (fast.failure.seq, fast.failure.kind) == (seq, kind)
    assert fast.failure == slow.failure
    assert (fast.entries, fast.head_seq, fast.head_hash) == (
        slow.entries,
        slow.head_seq,
        slow.head_hash,
    )
