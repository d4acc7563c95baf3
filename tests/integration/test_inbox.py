"""processed_events, the inbox every consumer records into, on a real PostgreSQL."""

import asyncpg
import pytest

from rujuk_runtime.db import create_pool
from rujuk_runtime.inbox import processed_among, record_processed, record_processed_batch
from tests.conftest import ProvisionedDatabase

pytestmark = pytest.mark.integration


async def test_an_event_is_recorded_once_and_a_batch_says_which_ids_were_new(
    database: ProvisionedDatabase,
) -> None:
    pool: asyncpg.Pool = await create_pool(database.role_url("notify"), "notify")
    try:
        async with pool.acquire() as conn:
            assert await record_processed(conn, "evt-a", "rujuk.case.closed.v1") is True
            assert await record_processed(conn, "evt-a", "rujuk.case.closed.v1") is False
            new = await record_processed_batch(
                conn, ["evt-a", "evt-b", "evt-c"], ["rujuk.case.closed.v1"] * 3
            )
            assert new == {"evt-b", "evt-c"}
            assert await processed_among(conn, ["evt-a", "evt-c", "evt-z"]) == {"evt-a", "evt-c"}
    finally:
        await pool.close()
