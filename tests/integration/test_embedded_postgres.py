"""The embedded PostgreSQL: every connection needs a password, the superuser's too; and it
takes further server settings (the e2e bench's --statements loads pg_stat_statements this way,
and its figures are only as good as that)."""

import asyncio
import stat
import subprocess
from pathlib import Path

import asyncpg
import pytest

from rujuk_runtime.embedded import EmbeddedPostgres, _as_user, pg_binary

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


async def test_the_superuser_needs_its_password_kept_0600_beside_the_server(
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(tmp_path.chmod, 0o755)  # PostgreSQL may run as its own user
    server = EmbeddedPostgres(tmp_path / "postgres")  # its own, whatever DATABASE_URL says
    await asyncio.to_thread(server.start)
    try:
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert server.superuser_password not in server.address
        anonymous = f"postgresql://postgres@127.0.0.1:{server.port}/rujuk"
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(anonymous)
        db = await asyncpg.connect(server.url)
        await db.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_cluster_an_older_rujuk_made_with_trust_requires_passwords_once_started(
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(tmp_path.chmod, 0o755)  # PostgreSQL may run as its own user
    server = EmbeddedPostgres(tmp_path / "postgres")
    run_as = await asyncio.to_thread(server._prepare_user)
    server.data_dir.mkdir()
    server._chown(run_as, server.data_dir)
    legacy = [str(pg_binary("initdb")), "-D", str(server.data_dir), "--auth=trust",
              "-U", "postgres"]  # fmt: skip
    await asyncio.to_thread(
        subprocess.run, legacy, check=True, capture_output=True, **_as_user(run_as)
    )
    await asyncio.to_thread(server.start)
    try:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/rujuk")
        db = await asyncpg.connect(server.url)
        await db.close()
        assert "trust" not in (server.data_dir / "pg_hba.conf").read_text()
    finally:
        await asyncio.to_thread(server.stop)
