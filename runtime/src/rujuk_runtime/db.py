"""The PostgreSQL adapter every service shares: a pool bound to the service's own schema, and
its versioned SQL migrations (applied by ``rujuk db provision`` as the owner role, checked at
start)."""

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from rujuk_runtime.logs import get_logger

# What a statement raises when the database is restarting or away, rather than refusing it.
DATABASE_AWAY: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # e.g. the server shutting down, starting up
    asyncpg.InterfaceError,  # the connection closed under the request
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by a restart
    OSError,  # refused
)

log = get_logger(__name__)

RUNTIME_MIGRATIONS = "rujuk_runtime"
# What a handler receives: a plain connection or one borrowed from the pool.
Connection = asyncpg.Connection | PoolConnectionProxy

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # checked before it is put into SQL


async def create_pool(database_url: str, schema: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first, so its SQL stays unqualified.

    The schema must be migrated already (SchemaNotReady otherwise): the service connects as its
    own role, which may use its tables but not change them."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"rujuk-{schema}"},
        reset=keep_session,
    )
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await check_migrated(conn, schema)
    except BaseException:
        await pool.close()
        raise
    return pool


async def keep_session(connection: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with, beyond asyncpg's own rollback of an open
    transaction (which always runs): nothing. asyncpg's default resets the session with one
    more round trip on every release (RESET ALL, CLOSE ALL, UNLISTEN *, advisory unlock),
    12 per report at 20 reports/s; our code leaves no session state to reset: settings are the
    pool's own or SET LOCAL, advisory locks are transaction-scoped, cursors live in
    transactions, and the one LISTEN (notify's worker) is removed before its connection goes
    back."""


def columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for a statement that takes each column as an array
    (``unnest($1::text[], $2::int[], ...)``): many rows in one round trip. ``width`` keeps an
    empty batch a list of empty columns."""
    table: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        if len(row) != width:
            raise ValueError(f"a row of {len(row)} values where {width} columns are expected")
        for column, value in zip(table, row, strict=True):
            column.append(value)
    return table


class HeldConnection:
    """A pool connection that one sequential loop (a consumer, the outbox relay) keeps from one
    use to the next.

    A loop that handles a batch every few milliseconds would otherwise pay the pool's acquire
    and release for every batch. The connection goes back to the pool (whose release rolls
    back, or finds the connection broken and closes it) whenever a use ends in an exception,
    so a connection left in a bad state (a PostgreSQL restart mid-statement, a cancelled task)
    is never used again; and when the loop calls ``release`` (idle, or stopping)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool
        self._connection: PoolConnectionProxy | None = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[PoolConnectionProxy]:
        if self._connection is not None and _closed(self._connection):
            await self.release()
        if self._connection is None:
            self._connection = await self._pool().acquire()
        try:
            yield self._connection
        except BaseException:
            await self.release()
            raise

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a broken one is closed by the pool
                await self._pool().release(connection)


def _closed(connection: PoolConnectionProxy) -> bool:
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:  # taken back by the pool (closing or terminated)
        return True


def migration_packages(schema: str) -> list[str]:
    """Where a schema's migrations come from: the runtime's own (outbox, inbox, token
    projection), then the service's package of the same name."""
    return [RUNTIME_MIGRATIONS, schema]


def _migration_files(package: str) -> list[Traversable]:
    folder = resources.files(package) / "migrations"
    if not folder.is_dir():
        return []
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def migration_versions(packages: list[str]) -> list[str]:
    return [f"{package}/{file.name}" for package in packages for file in _migration_files(package)]


class SchemaNotReady(RuntimeError):
    """A service's schema lacks migrations, or the service's role may not read it."""

    def __init__(self, schema: str, problem: str) -> None:
        self.schema = schema
        super().__init__(
            f"schema {schema!r} is not ready: {problem}. Run `rujuk db provision` with the "
            "database administrator's DATABASE_URL (compose: the db-provision service), then "
            f"start again. / Skema {schema!r} belum siap: jalankan `rujuk db provision`."
        )


async def check_migrated(conn: Connection, schema: str) -> None:
    """Refuse (SchemaNotReady) unless every migration of ``schema`` is applied: a service never
    migrates its own schema, the owner role does (``rujuk db provision``)."""
    usable = await conn.fetchval(
        "SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1", schema
    )
    if usable is None:
        raise SchemaNotReady(schema, "it does not exist")
    refused = f"role {await conn.fetchval('SELECT current_user')!r} may not use it"
    if not usable:
        raise SchemaNotReady(schema, refused)
    try:
        pending = await pending_migrations(conn, schema)
    except asyncpg.InsufficientPrivilegeError:
        raise SchemaNotReady(schema, refused) from None
    if pending:
        more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        listed = ", ".join(pending[:3]) + more
        raise SchemaNotReady(schema, f"{len(pending)} migrations not applied ({listed})")


async def pending_migrations(conn: Connection, schema: str) -> list[str]:
    """The migrations of ``schema`` not applied yet, in order."""
    table = f"{_quoted(schema)}.schema_migrations"
    done: set[str] = set()
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        done = {row["version"] for row in await conn.fetch(f"SELECT version FROM {table}")}  # noqa: S608
    return [v for v in migration_versions(migration_packages(schema)) if v not in done]


async def migrate(conn: Connection, schema: str) -> list[str]:
    """Apply each of the schema's migrations/NNNN_*.sql not yet applied, in order, one
    transaction each, as whoever ``conn`` is (provisioning: the owner role); the schema exists.

    An advisory lock keeps two provisioners running at once from racing.
    """
    quoted = _quoted(schema)
    applied_now: list[str] = []
    lock_key = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
    try:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version in await pending_migrations(conn, schema):
            package, _, name = version.partition("/")
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {quoted}")
                await conn.execute((resources.files(package) / "migrations" / name).read_text())
                await conn.execute(
                    f"INSERT INTO {quoted}.schema_migrations (version) VALUES ($1)",  # noqa: S608
                    version,
                )
            applied_now.append(version)
            log.info("migration applied", schema=schema, version=version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now


def _quoted(schema: str) -> str:
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} must be a lowercase identifier")
    return f'"{schema}"'
