"""Hot statements keep to their indexes under the generic plan PostgreSQL caches for a
prepared statement (asyncpg prepares every statement; after five runs the server may keep a
generic plan), whatever the table holds: a statement that touches a handful of rows must not
read every row ever written. Real PostgreSQL, plans read with EXPLAIN (not executed)."""

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

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
