"""A send claimed by a notify worker that was then killed is due again at once, on real
PostgreSQL: the worker's lease names it, and its session's lock tells whether it still runs.
Before, the lane waited out the whole lease (a minute) behind that send (issue 23: a
referral must reach its partner within seconds of a crash)."""

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from notify import store
from rujuk_runtime.db import create_pool
from tests.integration.test_notify_settle import enqueue_to

pytestmark = pytest.mark.integration

LEASE = timedelta(seconds=60)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "notify")
    yield pool
    await pool.close()


async def due(conn: asyncpg.Connection, agency: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT next_attempt_at <= now() FROM sends WHERE agency_id = $1", agency
        )
    )


async def test_a_killed_workers_claim_is_due_again_and_a_running_ones_is_left_alone(
    pool: asyncpg.Pool,
) -> None:
    killed = await pool.acquire()  # the session of a worker about to be killed
    killed_closed = False
    running = await pool.acquire()  # a worker that runs on
    try:
        await store.hold_worker_lock(killed, "worker-killed")
        await store.hold_worker_lock(running, "worker-running")
        async with pool.acquire() as conn:
            await enqueue_to(conn, "rsud-bangil", 1, ["webhook"])
            await enqueue_to(conn, "pkm-bangil", 1, ["webhook"])
            assert await store.claim_lane(conn, "rsud-bangil", "webhook", 5, LEASE, "worker-killed")
            assert await store.claim_lane(conn, "pkm-bangil", "webhook", 5, LEASE, "worker-running")
            assert not await due(conn, "rsud-bangil")
            # Both holders run: nothing is taken from them.
            assert await store.reclaim_abandoned(conn, "worker-new") == 0

        await killed.close()  # kill -9: its session, and so its lock, ends (asyncpg gives
        killed_closed = True  # the slot back to the pool)

        async with pool.acquire() as conn:
            assert await store.reclaim_abandoned(conn, "worker-new") == 1
            assert await due(conn, "rsud-bangil")
            assert not await due(conn, "pkm-bangil")  # its worker still holds it
            again = await store.claim_lane(conn, "rsud-bangil", "webhook", 5, LEASE, "worker-new")
            assert [send.attempt for send in again] == [2]  # the killed attempt stays counted
            assert await store.reclaim_abandoned(conn, "worker-new") == 0  # its own: kept
    finally:
        await pool.release(running)
        if not killed_closed:
            await pool.release(killed)
