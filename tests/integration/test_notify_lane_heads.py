"""The scheduler's look at the queue, on real PostgreSQL: each lane's head (its oldest pending
send) and how long until it is due, read at a cost that does not grow with the sends queued
behind the heads (a burst queues thousands)."""

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from notify import store
from rujuk_runtime.db import Connection, create_pool
from tests.integration.test_notify_settle import delivery_for, enqueue_to

pytestmark = pytest.mark.integration

CHANNELS = ["nats", "webhook"]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "notify")
    yield pool
    await pool.close()


async def test_each_lanes_head_is_its_oldest_pending_send(pool: asyncpg.Pool) -> None:
    agencies = ["dinsos-pasuruan", "polres-pasuruan", "rsud-bangil"]
    async with pool.acquire() as conn:
        ids = {a: [await enqueue_to(conn, a, n, CHANNELS) for n in range(3)] for a in agencies}
        # rsud-bangil's feed took its first send: the second is the head.
        await conn.execute(
            "UPDATE sends SET state = 'done' WHERE referral_id = $1 AND channel = 'nats'",
            ids["rsud-bangil"][0],
        )
        # polres-pasuruan's webhook took all three: that lane has no head.
        await conn.execute(
            "UPDATE sends SET state = 'failed' "
            "WHERE agency_id = 'polres-pasuruan' AND channel = 'webhook'"
        )
        # dinsos-pasuruan's webhook head backs off for a minute (the send behind it is due);
        # a send behind rsud-bangil's feed head backs off too, which is not the head's wait.
        await conn.execute(
            "UPDATE sends SET next_attempt_at = now() + interval '60 seconds' "
            "WHERE referral_id = $1 AND channel = 'webhook'",
            ids["dinsos-pasuruan"][0],
        )
        await conn.execute(
            "UPDATE sends SET next_attempt_at = now() + interval '30 seconds' "
            "WHERE referral_id = $1 AND channel = 'nats'",
            ids["rsud-bangil"][2],
        )
        heads = await store.lane_heads(conn)

    assert [(h.agency_id, h.channel, h.wait_seconds > 0) for h in heads] == [
        ("dinsos-pasuruan", "nats", False),
        ("dinsos-pasuruan", "webhook", True),
        ("polres-pasuruan", "nats", False),
        ("rsud-bangil", "nats", False),
        ("rsud-bangil", "webhook", False),
    ]
    assert 55 < heads[1].wait_seconds <= 60


async def test_no_pending_send_no_lane(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await store.lane_heads(conn) == []
        await enqueue_to(conn, "rsud-bangil", 0, ["webhook"])
        await conn.execute("UPDATE sends SET state = 'done'")
        assert await store.lane_heads(conn) == []


async def pages_read(conn: Connection) -> int:
    """The buffers one run of the scheduler's statement touches (EXPLAIN ANALYZE BUFFERS)."""
    explained = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + store._LANE_HEADS)
    plan = json.loads(explained)[0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


async def queue_many(conn: Connection, agency: str, count: int) -> None:
    """``count`` referrals to ``agency`` on both channels, in one statement."""
    batch = [(delivery_for(agency, n), CHANNELS) for n in range(count)]
    assert await store.enqueue_many(conn, batch) == count


async def test_reading_the_heads_costs_the_same_however_many_sends_wait(
    pool: asyncpg.Pool,
) -> None:
    """Four lanes with a few sends each, then 3,000 more referrals (6,000 sends) queued behind
    one agency's two heads: the statement reads about as many pages as before (6 and 14 seen:
    a deeper index adds a page or two to each of its five steps), where reading every pending
    send touched 224."""
    async with pool.acquire() as conn:
        for agency in ("polres-pasuruan", "rsud-bangil"):
            await queue_many(conn, agency, 3)
        await conn.execute("ANALYZE sends")
        few = await pages_read(conn)
        await queue_many(conn, "rsud-bangil", 3000)
        await conn.execute("ANALYZE sends")
        many = await pages_read(conn)
        heads = await store.lane_heads(conn)
    assert len(heads) == 4
    assert many <= few + 15, (few, many)
