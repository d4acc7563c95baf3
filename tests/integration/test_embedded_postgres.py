"""The embedded PostgreSQL takes further server settings: the e2e bench's --statements loads
pg_stat_statements this way, and its figures are only as good as that."""

import asyncio
from pathlib import Path

import asyncpg
import pytest

from rujuk_runtime.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration


async def test_settings_reach_the_server_and_pg_stat_statements_counts(tmp_path: Path) -> None:
    await asyncio.to_thread(tmp_path.chmod, 0o755)  # PostgreSQL may run as its own user
    server = EmbeddedPostgres(
        tmp_path / "postgres",
        settings={"shared_preload_libraries": "pg_stat_statements", "work_mem": "7MB"},
    )
    await asyncio.to_thread(server.start)
    try:
        db = await asyncpg.connect(server.url)
        try:
            assert await db.fetchval("SHOW work_mem") == "7MB"
            await db.execute("CREATE EXTENSION pg_stat_statements")
            await db.execute("SELECT pg_stat_statements_reset()")
            for _ in range(3):
                await db.fetchval("SELECT count(*) FROM pg_class WHERE relname = $1", "x")
            calls = await db.fetchval(
                "SELECT calls FROM pg_stat_statements WHERE query LIKE '%FROM pg_class%'"
            )
            assert calls == 3
        finally:
            await db.close()
    finally:
        await asyncio.to_thread(server.stop)
