"""Checkpoints, truncation, batch appends, export bundles and erased cases on a real PostgreSQL."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from audit import signing, store
from audit.bundle import verify_bundle
from audit.chain import FailureKind
from audit.checkpoints import Checkpointer
from audit.cli import app, case_history, export_case, verify_ledger
from audit.report import history as history_steps
from audit.report import render_table
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import CaseErased
from rujuk_runtime.db import create_pool
from tests.unit.test_audit_chain import CASE_ID, REPORTED_AT, case_story

pytestmark = pytest.mark.integration

OTHER_CASE_ID = "3513-0123456789"
KEY = signing.generate()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "audit")
    yield pool
    await pool.close()


def interleaved() -> list[CloudEvent]:
    return [e for pair in zip(case_story(OTHER_CASE_ID), case_story(), strict=True) for e in pair]


async def checkpoint_head(pool: asyncpg.Pool, key: signing.SigningKey = KEY) -> int:
    async with pool.acquire() as conn:
        head = await store.head(conn)
        await store.insert_checkpoint(
            conn, key.sign(seq=head.seq, hash=head.hash, time=datetime.now(UTC)), key.public_raw
        )
    return head.seq


class KeptPublished:
    """Stands in for JetStream where only the database matters: keeps what is published."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.published.append(data)


async def sign_head(pool: asyncpg.Pool, key: signing.SigningKey = KEY) -> int:
    """Sign the tree head as audit's checkpointer does (no witnesses); its size."""
    signer = Checkpointer(
        key,
        lambda: pool,
        KeptPublished,
        every=1000,
        interval=60,
        origin="example.org/test",  # type: ignore[arg-type]
    )
    head = await signer.checkpoint_now()
    assert head is not None
    return head.size


async def behind_the_triggers(pool: asyncpg.Pool, sql: str) -> None:
    """What a superuser can do: switch the refusal triggers off for one statement."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql)


async def test_a_batch_is_chained_in_order_once_and_refuses_nothing_valid(
    pool: asyncpg.Pool, database_url: str
) -> None:
    events = interleaved()
    async with pool.acquire() as conn:
        first = await store.append_batch(conn, [*events[:6], events[0]])
        second = await store.append_batch(conn, events[4:])

    assert [e.seq for e in first.entries] == [1, 2, 3, 4, 5, 6]
    assert first.duplicates == [events[0].id]
    assert [e.seq for e in second.entries] == [7, 8, 9, 10]
    assert second.duplicates == [events[4].id, events[5].id]
    result = await verify_ledger(database_url, public_key=KEY.public_raw)
    assert (result.ok, result.entries) == (True, 10)


async def test_a_batch_and_its_stream_position_cost_three_statements_under_the_lock(
    pool: asyncpg.Pool, database_url: str
) -> None:
    events = interleaved()
    async with pool.acquire() as conn:
        await store.append_batch(conn, events[:3], position=("RUJUK_EVENTS", 3))
        statements: list[str] = []
        conn.add_query_logger(lambda logged: statements.append(logged.query))
        appended = await store.append_batch(conn, events[2:6], position=("RUJUK_EVENTS", 6))
        work = [s for s in statements if s.strip() not in ("BEGIN;", "COMMIT;")]
        position = await conn.fetchval("SELECT last_seq FROM stream_position")
    assert len(work) == 3  # the lock; the ids already there and the head; the write
    assert [e.seq for e in appended.entries] == [4, 5, 6]
    assert appended.duplicates == [events[2].id]
    assert position == 6
    result = await verify_ledger(database_url, public_key=KEY.public_raw)
    assert (result.ok, result.entries) == (True, 6)


async def test_verify_checks_every_checkpoint_and_names_a_truncated_tail(
    pool: asyncpg.Pool, database_url: str
) -> None:
    events = interleaved()
    async with pool.acquire() as conn:
        await store.append_batch(conn, events[:6])
        await checkpoint_head(pool)
        await store.append_batch(conn, events[6:])
        await checkpoint_head(pool)

    good = await verify_ledger(database_url, public_key=KEY.public_raw)
    await behind_the_triggers(pool, "DELETE FROM ledger WHERE seq > 8")
    truncated = await verify_ledger(database_url, public_key=KEY.public_raw)

    assert good.ok
    assert good.checkpoints == 2
    assert good.latest_checkpoint is not None
    assert good.latest_checkpoint.seq == 10
    assert truncated.failure is not None
    assert (truncated.failure.seq, truncated.failure.kind) == (9, FailureKind.TRUNCATED)
    assert "checkpoint at entry 10" in truncated.failure.detail


async def test_a_chain_rewritten_and_rehashed_is_caught_by_the_checkpoint(
    pool: asyncpg.Pool, database_url: str
) -> None:
    events = interleaved()
    async with pool.acquire() as conn:
        await store.append_batch(conn, events)
    await checkpoint_head(pool)
    # A forger with superuser rights rebuilds the whole chain from a changed event 3.
    forged = list(events)
    forged[2] = forged[2].model_copy(update={"source": "/rujuk/forger"})
    await behind_the_triggers(pool, "DELETE FROM ledger; DELETE FROM tree_nodes")
    async with pool.acquire() as conn:
        await store.append_batch(conn, forged)

    result = await verify_ledger(database_url, public_key=KEY.public_raw)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (10, FailureKind.ANCHOR_MISMATCH)


async def test_a_forged_checkpoint_is_named(pool: asyncpg.Pool, database_url: str) -> None:
    async with pool.acquire() as conn:
        await store.append_batch(conn, case_story())
    forger = signing.generate()
    await checkpoint_head(pool, forger)  # signed, but not by the key the auditor trusts

    trusted = await verify_ledger(database_url, public_key=KEY.public_raw)
    untrusted = await verify_ledger(database_url)  # only the key stored beside it

    assert trusted.failure is not None
    assert (trusted.failure.seq, trusted.failure.kind) == (5, FailureKind.BAD_CHECKPOINT)
    assert untrusted.ok


async def test_the_database_refuses_to_change_checkpoints_and_parked(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.append_batch(conn, case_story())
        await store.record_parked(
            conn, [store.ParkedMessage(1, "routing", "not JSON", "rujuk.evt.x.y", 3, REPORTED_AT)]
        )
    await checkpoint_head(pool)
    for sql in ("UPDATE checkpoints SET seq = 1", "DELETE FROM parked", "TRUNCATE checkpoints"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(sql)


def test_export_writes_a_bundle_that_verifies_offline_and_names_an_altered_entry(
    database_url: str, tmp_path: Path
) -> None:
    async def record() -> None:
        pool = await create_pool(database_url, "audit")
        try:
            async with pool.acquire() as conn:
                await store.append_batch(conn, interleaved())
            await sign_head(pool)
        finally:
            await pool.close()

    asyncio.run(record())
    runner = CliRunner()
    good = tmp_path / "bundle.json"
    public_key = tmp_path / "audit.pub"
    public_key.write_text(KEY.public_base64())

    exported = runner.invoke(
        app, ["export", CASE_ID, "-o", str(good), "--database-url", database_url]
    )
    verified = runner.invoke(app, ["verify-bundle", str(good), "--public-key", str(public_key)])
    document = json.loads(good.read_text())
    document["entries"][1]["event_time"] = "2026-03-02T01:00:00.000000Z"  # entry 4
    bad = tmp_path / "altered.json"
    bad.write_text(json.dumps(document))
    refused = runner.invoke(app, ["verify-bundle", str(bad), "--public-key", KEY.public_base64()])

    assert exported.exit_code == 0, exported.output
    assert [entry["seq"] for entry in document["entries"]] == [2, 4, 6, 8, 10]
    assert verified.exit_code == 0, verified.output
    assert "bundle verified" in verified.output
    assert refused.exit_code == 1
    assert "BUNDLE DOES NOT VERIFY at entry 4" in refused.output


async def test_an_erased_case_still_replays_verifies_and_exports(
    pool: asyncpg.Pool, database_url: str
) -> None:
    erased = make_event(
        CaseErased(
            case_id=CASE_ID, erased_by="supervisor token 7f3a", reason="request of survivor"
        ),
        source="/rujuk/intake",
        time=REPORTED_AT + timedelta(days=30),
    )
    async with pool.acquire() as conn:
        await store.append_batch(conn, [*case_story(), erased])
    await checkpoint_head(pool)
    await sign_head(pool)

    history = await case_history(database_url, CASE_ID)
    result = await verify_ledger(database_url, public_key=KEY.public_raw)
    document = await export_case(database_url, CASE_ID)
    table = render_table(CASE_ID, history_steps(history))

    assert [entry.event_type for entry in history][-1] == "id.rujuk.case.erased.v1"
    assert result.ok
    assert (result.checkpoints, result.heads) == (1, 1)
    assert document is not None
    assert verify_bundle(json.dumps(document).encode(), KEY.public_raw).ok
    assert "identifying data erased by supervisor token 7f3a" in table
