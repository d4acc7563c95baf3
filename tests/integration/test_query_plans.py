"""Hot statements keep to their indexes under the generic plan PostgreSQL caches for a
prepared statement (asyncpg prepares every statement; after five runs the server may keep a
generic plan), whatever the table holds: a statement that touches a handful of rows must not
read every row ever written. Real PostgreSQL, plans read with EXPLAIN (not executed)."""

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from routing import store as routing_store
from routing.lifecycle import OPEN_STATES
from rujuk_runtime.db import Connection, create_pool
from rujuk_runtime.outbox import _TAKE

pytestmark = pytest.mark.integration


def scanned_in_full(plan: Any) -> set[str]:
    """Every table the plan reads with a sequential scan."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= scanned_in_full(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= scanned_in_full(value)
    return found


async def plan_of(conn: Connection, statement: str, *args: Any) -> Any:
    return json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + statement, *args))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "intake")
    yield pool
    await pool.close()


async def test_the_relay_takes_rows_by_index_with_a_plan_made_while_the_outbox_was_empty(
    pool: asyncpg.Pool,
) -> None:
    """The plan a relay's first passes cache (an empty outbox) is the one it keeps using while
    dead rows pile up between vacuums: it must not scan them all."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = await plan_of(conn, _TAKE, 200)
    assert scanned_in_full(plan) == set()


def indexes_used(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= indexes_used(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= indexes_used(value)
    return found


def sorts(plan: Any) -> bool:
    if isinstance(plan, dict):
        return plan.get("Node Type") == "Sort" or any(sorts(v) for v in plan.values())
    return isinstance(plan, list) and any(sorts(v) for v in plan)


class Statement:
    """Stands for a connection: keeps the statement and arguments a store function sends."""

    sql: str = ""
    args: tuple[Any, ...] = ()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.sql, self.args = sql, args
        return []


async def test_the_consoles_referral_list_reads_its_index_in_order_not_every_referral(
    database_url: str,
) -> None:
    """Open first, most urgent first, newest first: the order an index holds, so a page is
    read from it and stops at its end (bench/years.py: sorting every referral ever made grew
    with the years). Its expressions must stay those of the index: a test, not a hope."""
    statement = Statement()
    await routing_store.list_referrals(statement, now=datetime.now(UTC), districts=None)  # type: ignore[arg-type]
    pool = await create_pool(database_url, "routing")
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute("SET LOCAL enable_sort = off")
            plan = await plan_of(conn, statement.sql, *statement.args)
    finally:
        await pool.close()
    assert "referrals_console_order" in indexes_used(plan)
    assert not sorts(plan)


async def test_the_open_referrals_gauge_counts_from_the_index_of_open_referrals(
    database_url: str,
) -> None:
    statement = Statement()
    await routing_store.referrals_by_state_and_agency(statement)  # type: ignore[arg-type]
    assert set(routing_store.GAUGED_STATES) == {state.value for state in OPEN_STATES}
    pool = await create_pool(database_url, "routing")
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await plan_of(conn, statement.sql)
    finally:
        await pool.close()
    assert indexes_used(plan) == {"referrals_open_by_agency"}


class Statements:
    """Stands for a connection in a transaction: keeps every statement sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def transaction(self, **_: Any) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # type: ignore[return-value]

    async def _keep(self, sql: str, *args: Any) -> None:
        self.sent.append((sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        await self._keep(sql, *args)
        return []

    async def fetchval(self, sql: str, *args: Any) -> int:
        await self._keep(sql, *args)
        return 0

    async def fetchrow(self, sql: str, *args: Any) -> None:
        await self._keep(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        await self._keep(sql, *args)
        return ""


def index_only_scans(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Index Only Scan":
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= index_only_scans(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= index_only_scans(value)
    return found


async def test_a_periods_figures_read_the_referrals_index_alone(database_url: str) -> None:
    """Each statement over the period's referrals finds every column it reads in the index
    (an index-only scan): add a column to one, and this says the index must carry it too."""
    statements = Statements()
    now = datetime.now(UTC)
    await routing_store.period_stats(
        statements,  # type: ignore[arg-type]
        start=now - timedelta(days=365),
        end=now,
        timezone="Asia/Jakarta",
        now=now,
        districts=None,
    )
    # What the period reads live (here all of it: no month is rolled up), not the roll-ups.
    over_referrals = [(sql, args) for sql, args in statements.sent if "JOIN referrals ON" in sql]
    assert len(over_referrals) == 2  # the median, and the one pass for the counts
    pool = await create_pool(database_url, "routing")
    try:
        async with pool.acquire() as conn, conn.transaction():
            # Not enable_indexscan: PostgreSQL 18 counts an index-only scan disabled by it too,
            # and on this empty table a disabled sequential scan then costs less. A plain index
            # scan (a column the index lacks) is no index-only scan and fails the test as well.
            for setting in ("enable_seqscan", "enable_bitmapscan"):
                await conn.execute(f"SET LOCAL {setting} = off")
            for sql, args in over_referrals:
                plan = await plan_of(conn, sql, *args)
                assert index_only_scans(plan) == {"referrals_period_figures"}, sql
    finally:
        await pool.close()
