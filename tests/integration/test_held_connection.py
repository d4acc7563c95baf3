"""A connection a loop keeps between uses, against a real PostgreSQL: kept while all is well,
given back (rolled back) after any failure, never used again once broken; and
what any release to the pool costs: a rollback when a transaction is open, else nothing."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from rujuk_runtime.db import HeldConnection, create_pool

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "intake")
    await pool.execute("CREATE TABLE uji (n int)")
    yield pool
    await pool.close()


async def test_uses_share_one_connection_without_giving_it_back(pool: asyncpg.Pool) -> None:
    held = HeldConnection(lambda: pool)
    try:
        first, _ = await select_one(held)
        idle_while_held = pool.get_idle_size()
        again, _ = await select_one(held)
        assert again == first
        assert pool.get_idle_size() == idle_while_held
    finally:
        await held.release()
    assert pool.get_idle_size() == idle_while_held + 1


async def fail_in_a_transaction(held: HeldConnection) -> None:
    async with held.use() as conn:
        await conn.execute("BEGIN")  # a transaction nobody closes: the reset must roll it back
        await conn.execute("INSERT INTO uji VALUES (1)")
        raise RuntimeError("the handler broke (for the test)")


async def test_a_failed_use_gives_the_connection_back_rolled_back(pool: asyncpg.Pool) -> None:
    held = HeldConnection(lambda: pool)
    with pytest.raises(RuntimeError):
        await fail_in_a_transaction(held)
    try:
        async with held.use() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM uji") == 0
    finally:
        await held.release()


async def select_one(held: HeldConnection) -> tuple[int, int]:
    async with held.use() as conn:
        return conn.get_server_pid(), await conn.fetchval("SELECT 1")


async def test_a_connection_broken_under_it_is_never_used_again(pool: asyncpg.Pool) -> None:
    held = HeldConnection(lambda: pool)
    try:
        broken, _ = await select_one(held)
        await pool.execute("SELECT pg_terminate_backend($1)", broken)
        await asyncio.sleep(0.2)
        try:  # asyncpg may notice the closed socket first (then the next use takes another)
            answer = await select_one(held)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            answer = await select_one(held)  # the failed use gave the broken one back
        assert answer[0] != broken
        assert answer[1] == 1
    finally:
        await held.release()


async def last_query_of(database_url: str, pid: int) -> str:
    """What the backend last ran, seen from outside the pool."""
    other = await asyncpg.connect(database_url)
    try:
        query: str = await other.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        return query
    finally:
        await other.close()


async def test_a_release_costs_no_round_trip(pool: asyncpg.Pool, database_url: str) -> None:
    """asyncpg's default reset would send RESET ALL (and more) on every release."""
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        await conn.fetchval("SELECT 'the last thing said' AS marker")
    assert "the last thing said" in await last_query_of(database_url, pid)


async def test_a_release_still_rolls_back_an_open_transaction(
    pool: asyncpg.Pool, database_url: str
) -> None:
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        await conn.execute("BEGIN")  # nobody closes it
        await conn.execute("INSERT INTO uji VALUES (2)")
    assert await last_query_of(database_url, pid) == "ROLLBACK"
    assert await pool.fetchval("SELECT count(*) FROM uji") == 0
