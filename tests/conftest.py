"""Session fixtures: a real nats-server with JetStream and a real PostgreSQL, on free ports.

Both are started by the test session in a temporary folder and stopped at its end. Where
NATS_URL and DATABASE_URL are set, those servers are used instead (DATABASE_URL as the
administrator, a superuser: each test database is provisioned with its own roles).
"""

import contextlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest
from xdist import is_xdist_worker
from xdist.remote import Producer

from rujuk_contracts import subjects
from rujuk_runtime.embedded import EmbeddedNats, EmbeddedPostgres
from rujuk_runtime.nats_auth import NatsKeyring
from rujuk_runtime.provision import provision
from rujuk_runtime.roles import SCHEMAS, DatabaseRoles, role_url
from tests.scheduling import UnitScheduling, heaviest_first


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """On an xdist worker (whose ``--dist`` option reads "no"), the heaviest units first:
    xdist hands the units out in the order its workers collected them (tests/scheduling.py)."""
    if is_xdist_worker(session):
        heaviest_first(items)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> UnitScheduling | None:
    """``--dist loadfile`` keeps the browser package's files together (tests/scheduling.py)."""
    if config.getoption("dist", None) == "loadfile":
        return UnitScheduling(config, log)
    return None


@pytest.fixture(scope="session")
def servers_folder() -> Iterator[Path]:
    """A folder of the session's own: pytest prunes old basetemp folders when another session
    starts, which would pull the data from under a running server."""
    folder = Path(tempfile.mkdtemp(prefix="rujuk-test-servers-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_nats(servers_folder: Path) -> Iterator[EmbeddedNats | None]:
    if os.environ.get("NATS_URL"):
        yield None
        return
    server = EmbeddedNats(servers_folder / "nats").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_postgres(servers_folder: Path) -> Iterator[EmbeddedPostgres | None]:
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(servers_folder / "postgres").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(embedded_nats: EmbeddedNats | None) -> str:
    """The operator's URL: the session's server, like every server rujuk starts, refuses
    anonymous clients (a Stack given it with ``nats_keyring`` runs each service as itself)."""
    return embedded_nats.ops_url if embedded_nats else os.environ["NATS_URL"]


@pytest.fixture(scope="session")
def nats_keyring(embedded_nats: EmbeddedNats | None) -> NatsKeyring | None:
    """The credentials the session's NATS accepts, for a Stack that runs on it."""
    if embedded_nats is not None:
        return embedded_nats.keyring
    given = os.environ.get("RUJUK_NATS_KEYRING")
    return NatsKeyring(Path(given)) if given else None


@pytest.fixture(scope="session")
def server_database_url(embedded_postgres: EmbeddedPostgres | None) -> str:
    return embedded_postgres.url if embedded_postgres else os.environ["DATABASE_URL"]


@contextlib.asynccontextmanager
async def fresh_database(server_database_url: str) -> AsyncIterator[str]:
    """A new, empty database on the session's server (the administrator's URL to it), dropped
    afterwards with the roles any provisioning made for it."""
    url = await create_database(server_database_url)
    try:
        yield url
    finally:
        await drop_database(server_database_url, url)


async def create_database(server_database_url: str) -> str:
    """A new, empty database on the session's server; its administrator's URL. For a fixture
    that is not async (``fresh_database`` is, and the loop that ran it would finalize it)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = server_database_url.rpartition("/")
    return f"{base}/{name}"


async def drop_database(server_database_url: str, database_url: str) -> None:
    """Drop what ``create_database`` made, and the roles any provisioning made for it."""
    name = database_url.rpartition("/")[2]
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in DatabaseRoles(name).every_role:
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


@dataclass(frozen=True)
class ProvisionedDatabase:
    """A database as `rujuk db provision` leaves it, and the passwords of its roles."""

    admin_url: str
    passwords: dict[str, str]

    def role_url(self, schema: str) -> str:
        """The URL the service of ``schema`` connects with: its own role."""
        return role_url(self.admin_url, schema, self.passwords[schema])


@contextlib.asynccontextmanager
async def provisioned_database(server_database_url: str) -> AsyncIterator[ProvisionedDatabase]:
    """A fresh database, provisioned: each service's role, the schemas owned by the owner
    role, every migration applied."""
    async with fresh_database(server_database_url) as url:
        passwords = {schema: secrets.token_urlsafe(24) for schema in SCHEMAS}
        await provision(url, passwords)
        yield ProvisionedDatabase(url, passwords)


@pytest.fixture
async def database(server_database_url: str) -> AsyncIterator[ProvisionedDatabase]:
    async with provisioned_database(server_database_url) as provisioned:
        yield provisioned


@pytest.fixture
def database_url(database: ProvisionedDatabase) -> str:
    """A fresh, provisioned database for one test: the administrator's URL (a superuser, who
    may also tamper with what the services' roles may not)."""
    return database.admin_url


async def remove_streams(nats_url: str) -> None:
    """Delete rujuk's streams (and so their consumers), so a test starts from an empty bus."""
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    for stream in (
        subjects.EVENTS_STREAM,
        subjects.PARTNER_STREAM,
        subjects.DLQ_STREAM,
        subjects.AUDIT_STREAM,
        subjects.REPLAY_STREAM,
    ):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)
    await connection.close()


@pytest.fixture
async def clean_bus(nats_url: str) -> str:
    """The NATS URL, with rujuk's streams removed before the test."""
    await remove_streams(nats_url)
    return nats_url
