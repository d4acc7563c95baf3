"""The console's session store on a real PostgreSQL (schema ``console``), and the dict the page
tests use in its place held to the same specification; two console replicas sharing one; the
migration that made sessions keep the districts their token serves."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from console.session import (
    EndReason,
    SessionRecord,
    SessionSealer,
    new_session_id,
    session_key,
)
from console.signins import SessionRecords, SignIns
from console.store import PostgresSessions, SessionsUnavailable
from rujuk_runtime.db import migrate
from tests.fake_sessions import MemorySessions

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HOURS = timedelta(hours=12)


@pytest.fixture
async def postgres(database_url: str) -> AsyncIterator[PostgresSessions]:
    store = PostgresSessions(database_url)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=["postgres", "memory"])
def records(request: pytest.FixtureRequest) -> SessionRecords:
    if request.param == "memory":
        return MemorySessions()
    store: PostgresSessions = request.getfixturevalue("postgres")
    return store


def record(token_id: str = "tok-1", at: datetime = NOW, **changes: object) -> SessionRecord:  # noqa: S107
    fields: dict[str, object] = {
        "key": session_key(new_session_id()),
        "token_id": token_id,
        "role": "partner",
        "agency_id": "pkm-bangil",
        "created_at": at,
        "expires_at": at + HOURS,
        **changes,
    }
    return SessionRecord(**fields)  # type: ignore[arg-type]


async def test_a_session_is_found_by_its_key_as_it_was_kept(records: SessionRecords) -> None:
    kept = record()
    await records.add(kept)
    assert await records.find(kept.key) == kept
    assert await records.find(session_key(new_session_id())) is None
    coordinator = record("tok-co", role="coordinator", agency_id=None)
    await records.add(coordinator)
    assert await records.find(coordinator.key) == coordinator
    two_districts = record(
        "tok-co2", role="coordinator", agency_id=None, districts=("3513", "3514")
    )
    await records.add(two_districts)
    found = await records.find(two_districts.key)
    assert found == two_districts
    assert found is not None
    assert found.districts == ("3513", "3514")


async def test_a_session_ends_once_with_its_first_reason(records: SessionRecords) -> None:
    kept = record()
    await records.add(kept)
    assert await records.end(kept.key, EndReason.SIGNED_OUT, NOW + timedelta(minutes=5))
    assert not await records.end(kept.key, EndReason.TOKEN_REVOKED, NOW + timedelta(minutes=9))
    assert await records.end_all_of_token("tok-1", EndReason.TOKEN_REVOKED, NOW) == 0
    found = await records.find(kept.key)
    assert found is not None
    assert (found.ended_at, found.ended_reason) == (
        NOW + timedelta(minutes=5),
        EndReason.SIGNED_OUT,
    )
    assert not await records.end(session_key("unknown"), EndReason.SIGNED_OUT, NOW)


async def test_a_revoked_token_ends_its_open_sessions_and_no_other(
    records: SessionRecords,
) -> None:
    first, second, other = record(), record(), record("tok-2")
    signed_out = record()
    for one in (first, second, other, signed_out):
        await records.add(one)
    await records.end(signed_out.key, EndReason.SIGNED_OUT, NOW)
    later = NOW + timedelta(hours=1)
    assert await records.end_all_of_token("tok-1", EndReason.TOKEN_REVOKED, later) == 2
    for one in (first, second):
        found = await records.find(one.key)
        assert found is not None
        assert (found.ended_at, found.ended_reason) == (later, EndReason.TOKEN_REVOKED)
    still = await records.find(other.key)
    assert still is not None
    assert still.ended_at is None
    kept_reason = await records.find(signed_out.key)
    assert kept_reason is not None
    assert kept_reason.ended_reason == EndReason.SIGNED_OUT


async def test_sessions_that_ended_or_expired_before_a_time_are_deleted(
    records: SessionRecords,
) -> None:
    ended_early = record()
    expired = record(at=NOW - HOURS)
    open_one = record()
    ended_late = record()
    for one in (ended_early, expired, open_one, ended_late):
        await records.add(one)
    await records.end(ended_early.key, EndReason.SIGNED_OUT, NOW + timedelta(minutes=1))
    await records.end(ended_late.key, EndReason.TOKEN_REVOKED, NOW + timedelta(hours=2))
    assert await records.delete_ended_before(NOW + timedelta(hours=1)) == 2
    assert await records.find(ended_early.key) is None
    assert await records.find(expired.key) is None
    assert await records.find(open_one.key) is not None
    assert await records.find(ended_late.key) is not None


async def test_the_table_holds_neither_session_ids_nor_tokens(
    postgres: PostgresSessions, database_url: str
) -> None:
    sealer = SessionSealer("a-secret-of-sixteen-or-more", 3600)

    async def valid(_: str) -> bool:
        return True

    signins = SignIns(postgres, sealer, valid, check_interval=5)
    sealed = await signins.start("rujuk_secret_of_the_partner", "tok-1", "partner", "a")
    cookie = sealer.open(sealed)
    assert cookie is not None
    conn = await asyncpg.connect(database_url)
    try:
        columns = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'console' AND table_name = 'sessions' ORDER BY ordinal_position"
        )
        dump = str(await conn.fetch("SELECT * FROM console.sessions"))
    finally:
        await conn.close()
    assert [c["column_name"] for c in columns] == [
        "id_sha256",
        "token_id",
        "role",
        "agency_id",
        "created_at",
        "expires_at",
        "ended_at",
        "ended_reason",
        "districts",
    ]
    assert "rujuk_secret_of_the_partner" not in dump
    assert cookie.session_id not in dump
    assert repr(session_key(cookie.session_id)) in dump  # only the id's sha256


async def test_any_replica_serves_and_ends_any_session(database_url: str) -> None:
    sealer = SessionSealer("a-secret-of-sixteen-or-more", 3600)

    async def valid(_: str) -> bool:
        return True

    one, two = PostgresSessions(database_url), PostgresSessions(database_url)
    await one.open()
    await two.open()  # the second replica's start finds the migration applied
    try:
        first = SignIns(one, sealer, valid, check_interval=5)
        second = SignIns(two, sealer, valid, check_interval=5)
        sealed = await first.start("secret", "tok-1", "auditor", None)
        resumed = await second.resume(sealed)
        assert resumed is not None
        assert resumed.role == "auditor"
        assert await second.sign_out(sealed)
        assert await first.resume(sealed) is None
    finally:
        await one.close()
        await two.close()


async def test_a_database_that_stops_answering_is_said_plainly(
    postgres: PostgresSessions, database_url: str, server_database_url: str
) -> None:
    assert await postgres.healthy()
    name = database_url.rsplit("/", 1)[-1]
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
    finally:
        await admin.close()
    with pytest.raises(SessionsUnavailable):
        await postgres.find(session_key(new_session_id()))
    assert not await postgres.healthy()


async def test_sessions_open_before_they_kept_districts_end_at_the_migration(
    database_url: str,
) -> None:
    """Their NULL would read as "province level": those people sign in again instead."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(  # the schema as it was before 0002
            "ALTER TABLE console.sessions DROP COLUMN districts; DELETE FROM "
            "console.schema_migrations WHERE version = 'console/0002_session_districts.sql'"
        )
        insert = (
            "INSERT INTO console.sessions (id_sha256, token_id, role, agency_id, created_at, "
            "expires_at, ended_at, ended_reason) "
            "VALUES ($1, $2, 'coordinator', NULL, $3, $4, $5, $6)"
        )
        still_open, ended = session_key("open"), session_key("ended")
        await conn.execute(insert, still_open, "tok-1", NOW, NOW + HOURS, None, None)
        await conn.execute(insert, ended, "tok-2", NOW, NOW + HOURS, NOW, "signed_out")
        assert await migrate(conn, "console") == ["console/0002_session_districts.sql"]
        kept = await conn.fetch("SELECT id_sha256, districts FROM console.sessions")
    finally:
        await conn.close()
    assert [(row["id_sha256"], row["districts"]) for row in kept] == [(ended, None)]
