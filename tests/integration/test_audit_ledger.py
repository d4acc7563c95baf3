"""The audit ledger on a real PostgreSQL: chained appends, append-only tables, tamper evidence."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from audit import store
from audit.chain import FailureKind
from audit.cli import app, case_history, verify_ledger
from rujuk_contracts import CloudEvent
from rujuk_runtime.db import create_pool
from tests.conftest import fresh_database
from tests.unit.test_audit_chain import CASE_ID, case_story

pytestmark = pytest.mark.integration

OTHER_CASE_ID = "3513-0123456789"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "audit")
    yield pool
    await pool.close()


async def append_all(pool: asyncpg.Pool, events: list[CloudEvent]) -> None:
    async with pool.acquire() as conn:
        for event in events:
            await store.append(conn, event)


async def all_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM ledger ORDER BY seq")


async def test_appended_events_form_a_chain_that_verifies(
    pool: asyncpg.Pool, database_url: str
) -> None:
    async with pool.acquire() as conn:
        appended = [await store.append(conn, event) for event in case_story()]

    history = await case_history(database_url, CASE_ID)
    result = await verify_ledger(database_url)

    assert history == appended
    assert [entry.seq for entry in history] == [1, 2, 3, 4, 5]
    assert history[0].prev_hash == bytes(32)
    assert result.ok
    assert (result.entries, result.head_seq, result.head_hash) == (5, 5, history[-1].hash)


async def test_a_duplicate_event_is_recorded_once_and_uses_no_seq(pool: asyncpg.Pool) -> None:
    reported, routed, *_ = case_story()

    async with pool.acquire() as conn:
        first = await store.append(conn, reported)
        again = await store.append(conn, reported)
        second = await store.append(conn, routed)

    assert first is not None
    assert again is None
    assert second is not None
    assert second.seq == 2
    assert second.prev_hash == first.hash
    assert [row["event_id"] for row in await all_rows(pool)] == [reported.id, routed.id]


async def test_a_case_history_holds_only_that_case_in_ledger_order(
    pool: asyncpg.Pool, database_url: str
) -> None:
    ours = case_story()
    theirs = case_story(OTHER_CASE_ID)
    await append_all(pool, [event for pair in zip(ours, theirs, strict=True) for event in pair])

    history = await case_history(database_url, CASE_ID)

    assert [entry.event_id for entry in history] == [event.id for event in ours]
    assert [entry.seq for entry in history] == [1, 3, 5, 7, 9]
    assert await case_history(database_url, "3514-NNNNNNNNNN") == []


async def test_two_replicas_appending_at_once_never_fork_the_chain(
    pool: asyncpg.Pool, database_url: str
) -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    batches = [
        [event for day in range(6) for event in case_story(case_id, start + timedelta(days=day))]
        for case_id in (CASE_ID, OTHER_CASE_ID)
    ]

    async def replica(events: list[CloudEvent]) -> None:
        async with pool.acquire() as conn:
            for event in events:
                async with conn.transaction():  # as the consumer does: one batch, one transaction
                    await store.append(conn, event)
                    await asyncio.sleep(0)

    await asyncio.gather(*(replica(events) for events in batches))
    result = await verify_ledger(database_url)

    assert result.ok
    assert (result.entries, result.head_seq) == (60, 60)


async def test_the_ledger_streams_in_order_in_chunks(pool: asyncpg.Pool, database_url: str) -> None:
    await append_all(pool, case_story())
    conn = await store.connect(database_url)
    try:
        chunks = [chunk async for chunk in store.stream_entries(conn, chunk_size=2)]
    finally:
        await conn.close()

    assert [[entry.seq for entry in chunk] for chunk in chunks] == [[1, 2], [3, 4], [5]]


@pytest.mark.parametrize(
    ("operation", "statement"),
    [
        ("UPDATE", "UPDATE ledger SET actor = '/rujuk/forger' WHERE seq = 2"),
        ("DELETE", "DELETE FROM ledger WHERE seq = 2"),
        ("TRUNCATE", "TRUNCATE ledger"),
    ],
)
async def test_the_database_refuses_to_change_the_ledger(
    pool: asyncpg.Pool, operation: str, statement: str
) -> None:
    await append_all(pool, case_story())
    before = await all_rows(pool)

    with pytest.raises(
        asyncpg.RaiseError, match=f"audit ledger is append-only: {operation} refused"
    ):
        await pool.execute(statement)

    assert await all_rows(pool) == before


async def test_a_superuser_bypassing_the_triggers_is_named_by_verify(
    pool: asyncpg.Pool, database_url: str
) -> None:
    await append_all(pool, case_story())
    async with pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")  # row triggers off
        await conn.execute("UPDATE ledger SET actor = '/rujuk/forger' WHERE seq = 3")
        await conn.execute("RESET session_replication_role")

    result = await verify_ledger(database_url)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (3, FailureKind.HASH_MISMATCH)
    assert (result.entries, result.head_seq) == (2, 2)


async def test_an_entry_deleted_behind_the_triggers_back_is_named_as_missing(
    pool: asyncpg.Pool, database_url: str
) -> None:
    await append_all(pool, case_story())
    async with pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM ledger WHERE seq = 4")
        await conn.execute("RESET session_replication_role")

    result = await verify_ledger(database_url)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (4, FailureKind.GAP)


async def test_a_database_without_a_ledger_is_a_readable_error(server_database_url: str) -> None:
    async with fresh_database(server_database_url) as never_provisioned:
        with pytest.raises(store.LedgerMissing, match="rujuk db provision"):
            await verify_ledger(never_provisioned)


def test_the_cli_replays_a_case_and_names_a_tampered_entry(database_url: str) -> None:
    async def record_then_tamper() -> None:
        pool = await create_pool(database_url, "audit")
        try:
            await append_all(pool, case_story())
            async with pool.acquire() as conn:
                await conn.execute("SET session_replication_role = replica")
                await conn.execute("UPDATE ledger SET event_time = now() WHERE seq = 5")
        finally:
            await pool.close()

    runner = CliRunner()
    asyncio.run(record_then_tamper())

    replay = runner.invoke(app, ["replay", CASE_ID, "--database-url", database_url])
    verify = runner.invoke(app, ["verify", "--database-url", database_url])

    assert replay.exit_code == 0, replay.output
    assert "delivered to rsud-bangil via nats, webhook" in replay.output
    assert verify.exit_code == 1
    assert "VERIFICATION FAILED at entry 5" in verify.output
