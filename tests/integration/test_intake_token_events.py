"""Intake announces its tokens through its outbox, in the transaction that makes them: on
PostgreSQL, without the relay (what is staged is what will be published)."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from intake import store
from intake.auth import Role, TokenError
from rujuk_contracts import parse_event
from rujuk_contracts.events import EventPayload, TokenIssued, TokenRevoked
from rujuk_runtime.access import hash_secret
from tests.conftest import ProvisionedDatabase

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(database: ProvisionedDatabase) -> AsyncIterator[asyncpg.Connection]:
    """As `rujuk token` connects: intake's own role."""
    connection = await asyncpg.connect(
        database.role_url("intake"), server_settings={"search_path": "intake"}
    )
    yield connection
    await connection.close()


async def staged(conn: asyncpg.Connection) -> list[EventPayload]:
    rows = await conn.fetch("SELECT body FROM outbox ORDER BY seq")
    return [parse_event(bytes(row["body"]))[1] for row in rows]


async def test_a_new_token_is_announced_with_its_hash_and_never_its_secret_or_label(
    conn: asyncpg.Connection,
) -> None:
    token_id, secret = await store.create_token(
        conn, Role.PARTNER, agency_id="rsud-bangil", label="Ibu Contoh, IGD"
    )
    [issued] = await staged(conn)
    assert issued == TokenIssued(
        token_id=token_id,
        role=Role.PARTNER,
        agency_id="rsud-bangil",
        secret_sha256=hash_secret(secret).hex(),
    )
    bodies = b"".join(bytes(r["body"]) for r in await conn.fetch("SELECT body FROM outbox"))
    assert secret.encode() not in bodies
    assert b"Contoh" not in bodies


async def test_a_token_that_cannot_be_stored_is_not_announced(conn: asyncpg.Connection) -> None:
    _, secret = await store.create_token(conn, Role.OPERATOR)
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.create_token(conn, Role.OPERATOR, secret=secret)  # the same hash again
    assert len(await staged(conn)) == 1


async def test_revoking_is_announced_once(conn: asyncpg.Connection) -> None:
    token_id, _ = await store.create_token(conn, Role.AUDITOR)
    assert await store.revoke_token(conn, token_id)
    assert await store.revoke_token(conn, token_id)  # again: still revoked, nothing new
    assert not await store.revoke_token(conn, "tok-000000000000")
    assert [type(p) for p in await staged(conn)] == [TokenIssued, TokenRevoked]


async def test_bootstrap_tokens_are_announced_when_first_installed(
    conn: asyncpg.Connection,
) -> None:
    spec = "coordinator:3514=" + "c" * 40 + ",partner:rsud-bangil=" + "p" * 40
    assert await store.install_bootstrap_tokens(conn, spec) == 2
    assert await store.install_bootstrap_tokens(conn, spec) == 0  # the next start
    events = await staged(conn)
    issued = [(p.role, p.agency_id, p.districts) for p in events if isinstance(p, TokenIssued)]
    assert issued == [(Role.COORDINATOR, None, ["3514"]), (Role.PARTNER, "rsud-bangil", None)]
    assert len(events) == 2


async def test_a_bootstrap_secret_rebound_wider_in_the_setting_is_refused(
    conn: asyncpg.Connection,
) -> None:
    """The setting once made the secret a 3514 coordinator; an edit to province level must
    not quietly widen the token that already exists under it."""
    await store.install_bootstrap_tokens(conn, "coordinator:3514=" + "c" * 40)
    with pytest.raises(TokenError, match="bound otherwise"):
        await store.install_bootstrap_tokens(conn, "coordinator:province=" + "c" * 40)
    row = await conn.fetchrow("SELECT districts FROM access_tokens")
    assert row["districts"] == ["3514"]


async def test_a_province_token_is_listed_and_announced_as_such(
    conn: asyncpg.Connection,
) -> None:
    """A province-level token (as every token made before migration 0004 stays) carries no
    districts in its event, and `rujuk token list` names its reach."""
    token_id, _ = await store.create_token(conn, Role.COORDINATOR)
    [listed] = await store.list_tokens(conn)
    assert (listed.token_id, listed.bound_to) == (token_id, "province")
    [issued] = await staged(conn)
    assert isinstance(issued, TokenIssued)
    assert issued.districts is None


async def test_tokens_made_before_announcements_are_announced_once(
    conn: asyncpg.Connection,
) -> None:
    for token_id, revoked in (("tok-0000000000a1", False), ("tok-0000000000a2", True)):
        await conn.execute(  # as an older intake stored them
            "INSERT INTO access_tokens (token_id, secret_sha256, role, revoked_at, announced) "
            "VALUES ($1, $2, 'operator', CASE WHEN $3 THEN now() END, false)",
            token_id,
            hash_secret(token_id),
            revoked,
        )
    assert await store.announce_unannounced(conn) == 2
    assert await store.announce_unannounced(conn) == 0
    announced = [(type(p).__name__, p.token_id) for p in await staged(conn)]  # type: ignore[attr-defined]
    assert sorted(announced) == [
        ("TokenIssued", "tok-0000000000a1"),
        ("TokenIssued", "tok-0000000000a2"),
        ("TokenRevoked", "tok-0000000000a2"),
    ]
