"""Pools for the tests of figures asked in parts at once (routing.store.in_one_snapshot)."""

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from routing import store
from rujuk_runtime.db import create_pool


@contextlib.asynccontextmanager
async def roomy_and_single_pools(
    database_url: str,
) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two pools of routing's role: one with three connections open already (a part waits for
    a spare 50 ms at most, which opening one on a loaded machine can outlast), and one of a
    single connection (the parts run one after another on it)."""
    roomy = await create_pool(database_url, "routing")
    single = await create_pool(database_url, "routing", max_size=1)
    try:
        held = [await roomy.acquire() for _ in range(3)]
        for conn in held:
            await roomy.release(conn)
        yield roomy, single
    finally:
        await roomy.close()
        await single.close()


async def check_parts_connections(roomy: asyncpg.Pool, single: asyncpg.Pool) -> None:
    """The parts' connections: three of their own where the pool has them, else one; and the
    pool of one whole afterwards."""
    async with store.in_one_snapshot(roomy, 3) as held:
        assert len({conn.get_server_pid() for conn in held}) == 3
    async with store.in_one_snapshot(single, 3) as held:
        assert len(held) == 1
    async with single.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
