"""The console's PostgreSQL adapter: its sign-in sessions in schema ``console``.

The only module that writes SQL. Any database failure becomes ``SessionsUnavailable``, so a
page says that sign-ins cannot be checked right now instead of failing with a 500.
"""

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from console.session import EndReason, SessionRecord
from rujuk_runtime.db import DATABASE_AWAY, create_pool

SCHEMA = "console"
POOL_SIZE = 4  # a lookup per page, an update per sign-in or sign-out: short and few
ACQUIRE_TIMEOUT_SECONDS = 5.0
_COLUMNS = (
    "id_sha256, token_id, role, agency_id, created_at, expires_at, ended_at, ended_reason, "
    "districts"
)


class SessionsUnavailable(Exception):
    """The console's database did not answer."""


# The database away or restarting (e.g. a connection dropped mid-query, which asyncpg may
# report as InternalClientError), or refusing: the pages say sessions are unavailable (503).
SESSIONS_AWAY: tuple[type[Exception], ...] = (*DATABASE_AWAY, TimeoutError, asyncpg.PostgresError)


class PostgresSessions:
    """Sessions in ``console.sessions``, shared by every console replica."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Open the pool (refused unless `rujuk db provision` applied the schema's migrations)."""
        self._pool = await create_pool(self._database_url, SCHEMA, max_size=POOL_SIZE)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def healthy(self) -> bool:
        try:
            async with self._connection() as conn:
                return await conn.fetchval("SELECT true") is True
        except SessionsUnavailable:
            return False

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy]:
        if self._pool is None:
            raise SessionsUnavailable("the pool is not open")
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
                yield conn
        except SESSIONS_AWAY as exc:
            raise SessionsUnavailable(type(exc).__name__) from exc

    async def add(self, record: SessionRecord) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"INSERT INTO sessions ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",  # noqa: S608
                record.key,
                record.token_id,
                record.role,
                record.agency_id,
                record.created_at,
                record.expires_at,
                record.ended_at,
                record.ended_reason.value if record.ended_reason else None,
                None if record.districts is None else list(record.districts),
            )

    async def find(self, key: bytes) -> SessionRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM sessions WHERE id_sha256 = $1",  # noqa: S608
                key,
            )
        if row is None:
            return None
        reason, districts = row["ended_reason"], row["districts"]
        return SessionRecord(
            key=row["id_sha256"],
            token_id=row["token_id"],
            role=row["role"],
            agency_id=row["agency_id"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            ended_at=row["ended_at"],
            ended_reason=EndReason(reason) if reason else None,
            districts=None if districts is None else tuple(districts),
        )

    async def end(self, key: bytes, reason: EndReason, at: datetime) -> bool:
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE sessions SET ended_at = $2, ended_reason = $3 "
                "WHERE id_sha256 = $1 AND ended_at IS NULL",
                key,
                at,
                reason.value,
            )
        return _count(status) == 1

    async def end_all_of_token(self, token_id: str, reason: EndReason, at: datetime) -> int:
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE sessions SET ended_at = $2, ended_reason = $3 "
                "WHERE token_id = $1 AND ended_at IS NULL",
                token_id,
                at,
                reason.value,
            )
        return _count(status)

    async def delete_ended_before(self, cutoff: datetime) -> int:
        async with self._connection() as conn:
            status = await conn.execute(
                "DELETE FROM sessions WHERE ended_at < $1 OR expires_at < $1", cutoff
            )
        return _count(status)


def _count(status: str) -> int:
    """The row count of an UPDATE or DELETE command tag ("UPDATE 2")."""
    return int(status.rsplit(" ", 1)[-1])
