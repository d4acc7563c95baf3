"""Least privilege in PostgreSQL, on a real server: a database provisioned as `rujuk db
provision` does it, then each service's role tried against what it must not do."""

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from typer.testing import CliRunner

from audit import store
from rujuk import cli as rujuk_cli
from rujuk_runtime.db import SchemaNotReady, create_pool, migrate
from rujuk_runtime.embedded import EmbeddedPostgres
from rujuk_runtime.provision import provision
from rujuk_runtime.roles import SCHEMAS, DatabaseRoles, database_name, scram_verifier
from tests.conftest import ProvisionedDatabase, fresh_database, provisioned_database
from tests.unit.test_audit_chain import case_story

pytestmark = pytest.mark.integration

AUDIT_EVIDENCE = {"ledger": "seq", "checkpoints": "seq", "parked": "dlq_seq",
                  "tree_nodes": "level", "tree_heads": "size", "cosignatures": "size"}  # fmt: skip


def roles_of(database: ProvisionedDatabase) -> DatabaseRoles:
    return DatabaseRoles(database_name(database.admin_url))


async def connect_as(database: ProvisionedDatabase, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(database.role_url(schema), server_settings={"search_path": schema})


async def tables_by_schema(database: ProvisionedDatabase) -> dict[str, list[str]]:
    admin = await asyncpg.connect(database.admin_url)
    try:
        rows = await admin.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY($1::text[]) ORDER BY 1, 2",
            list(SCHEMAS),
        )
    finally:
        await admin.close()
    found: dict[str, list[str]] = {schema: [] for schema in SCHEMAS}
    for row in rows:
        found[row["table_schema"]].append(row["table_name"])
    return found


@pytest.fixture
async def audit(database: ProvisionedDatabase) -> AsyncIterator[asyncpg.Connection]:
    """Audit's role, with a ledger of one case appended through audit's own code."""
    pool = await create_pool(database.role_url("audit"), "audit")
    try:
        async with pool.acquire() as conn:
            for event in case_story():
                await store.append(conn, event)
    finally:
        await pool.close()
    conn = await connect_as(database, "audit")
    yield conn
    await conn.close()


async def test_no_role_of_rujuk_is_a_superuser_or_may_make_roles_databases_or_bypass_rls(
    database: ProvisionedDatabase,
) -> None:
    roles = roles_of(database)
    admin = await asyncpg.connect(database.admin_url)
    try:
        rows = await admin.fetch(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, "
            "rolreplication, "
            "(SELECT count(*) FROM pg_auth_members WHERE member = r.oid) AS member_of "
            "FROM pg_roles r WHERE rolname = ANY($1::text[])",
            list(roles.every_role),
        )
    finally:
        await admin.close()
    found = {row["rolname"]: row for row in rows}
    assert set(found) == set(roles.every_role)
    for row in rows:
        powers = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls", "rolreplication")
        assert not any(row[power] for power in powers), dict(row)
        assert row["member_of"] == 0  # no privileges borrowed from another role
    assert not found[roles.owner]["rolcanlogin"]  # the owner only migrates, through SET ROLE
    assert all(found[role]["rolcanlogin"] for role in roles.runtime_roles.values())


async def test_no_service_role_can_read_another_services_schema_above_all_intakes_vault(
    database: ProvisionedDatabase,
) -> None:
    tables = await tables_by_schema(database)
    assert {"vault", "cases", "access_tokens", "disclosures"} <= set(tables["intake"])
    for reader in SCHEMAS:
        conn = await connect_as(database, reader)
        try:
            for schema, names in tables.items():
                for table in names:
                    query = f'SELECT * FROM "{schema}"."{table}" LIMIT 1'  # noqa: S608
                    if schema == reader:
                        await conn.fetch(query)  # its own: readable
                    else:
                        with pytest.raises(asyncpg.InsufficientPrivilegeError):
                            await conn.fetch(query)
        finally:
            await conn.close()


async def test_no_service_role_can_create_anything_even_in_its_own_schema(
    database: ProvisionedDatabase,
) -> None:
    for schema in SCHEMAS:
        conn = await connect_as(database, schema)
        try:
            for statement in (
                f'CREATE TABLE "{schema}".planted (x int)',
                "CREATE TABLE public.planted (x int)",
                "CREATE TEMPORARY TABLE planted (x int)",
                "CREATE SCHEMA planted",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()


async def test_audit_may_append_to_and_read_its_ledger_and_nothing_more(
    audit: asyncpg.Connection,
) -> None:
    assert await audit.fetchval("SELECT count(*) FROM ledger") == len(case_story())
    for table, column in AUDIT_EVIDENCE.items():
        for statement in (
            f"UPDATE {table} SET {column} = {column}",  # noqa: S608
            f"DELETE FROM {table}",  # noqa: S608
            f"TRUNCATE {table}",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await audit.execute(statement)
    assert await audit.fetchval("SELECT count(*) FROM ledger") == len(case_story())


async def test_audit_cannot_switch_off_the_ledgers_triggers_or_replication_mode(
    audit: asyncpg.Connection,
) -> None:
    refused = (
        "ALTER TABLE ledger DISABLE TRIGGER ledger_refuse_update_delete",
        "ALTER TABLE ledger DISABLE TRIGGER ALL",
        "DROP TRIGGER ledger_refuse_truncate ON ledger",
        "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "DROP TABLE ledger",
        "SET session_replication_role = replica",
        "SET LOCAL session_replication_role = replica",
        "ALTER ROLE CURRENT_USER SET session_replication_role = replica",
    )
    for statement in refused:
        async with audit.transaction():
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await audit.execute(statement)
    assert await audit.fetchval("SHOW session_replication_role") == "origin"


async def test_every_audit_table_guarded_by_the_refusal_trigger_is_append_only_for_audit(
    database: ProvisionedDatabase,
) -> None:
    """If a migration adds another evidence table, roles.APPEND_ONLY_TABLES must name it."""
    role = roles_of(database).runtime("audit")
    admin = await asyncpg.connect(database.admin_url)
    try:
        guarded = await admin.fetch(
            "SELECT DISTINCT c.relname, "
            "has_table_privilege($1, c.oid, 'UPDATE') AS may_update, "
            "has_table_privilege($1, c.oid, 'DELETE') AS may_delete, "
            "has_table_privilege($1, c.oid, 'TRUNCATE') AS may_truncate "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgfoid = 'audit.ledger_refuse_change()'::regprocedure",
            role,
        )
    finally:
        await admin.close()
    assert {row["relname"] for row in guarded} == set(AUDIT_EVIDENCE)
    for row in guarded:
        assert not row["may_update"], row["relname"]
        assert not row["may_delete"], row["relname"]
        assert not row["may_truncate"], row["relname"]


async def test_a_service_role_may_not_even_connect_to_another_rujuk_database(
    database: ProvisionedDatabase, server_database_url: str
) -> None:
    """Staging and production on one server, say: each has roles of its own."""
    async with provisioned_database(server_database_url) as other:
        other_name = database_name(other.admin_url)
        elsewhere = database.role_url("intake").rsplit("/", 1)[0] + "/" + other_name
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="CONNECT"):
            await asyncpg.connect(elsewhere)


async def test_no_one_logs_in_without_the_right_password(
    database: ProvisionedDatabase, embedded_postgres: EmbeddedPostgres | None
) -> None:
    server = database.admin_url.rsplit("@", 1)[1]
    roles = roles_of(database)
    attempts = [f"postgresql://{roles.runtime('audit')}:wrong-password-here@{server}"]
    if embedded_postgres is not None:  # the superuser of the server rujuk starts, anonymously
        attempts += [f"postgresql://postgres@{server}", f"postgresql://{roles.owner}@{server}"]
    for url in attempts:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(url)


async def test_provisioning_again_rotates_a_password_and_keeps_everything_else(
    database: ProvisionedDatabase,
) -> None:
    old_url = database.role_url("intake")
    again = await provision(database.admin_url, {"intake": "a-new-password-for-intake"})
    assert again.created == []
    assert all(applied == [] for applied in again.migrations.values())
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(old_url)
    rotated = ProvisionedDatabase(database.admin_url, {"intake": "a-new-password-for-intake"})
    conn = await connect_as(rotated, "intake")
    try:
        assert await conn.fetchval("SELECT count(*) FROM vault") == 0
    finally:
        await conn.close()
    routing = await connect_as(database, "routing")  # untouched
    await routing.close()


async def test_a_service_refuses_to_start_on_a_schema_with_a_migration_pending(
    database: ProvisionedDatabase,
) -> None:
    admin = await asyncpg.connect(database.admin_url)
    try:
        await admin.execute(
            "DELETE FROM audit.schema_migrations WHERE version = 'audit/0003_stream_position.sql'"
        )
    finally:
        await admin.close()
    with pytest.raises(SchemaNotReady) as refused:
        await create_pool(database.role_url("audit"), "audit")
    message = str(refused.value)
    assert "audit/0003_stream_position.sql" in message
    assert "rujuk db provision" in message
    with pytest.raises(SchemaNotReady, match="may not use it"):  # another service's schema
        await create_pool(database.role_url("notify"), "audit")


async def test_a_never_provisioned_database_is_refused_naming_the_command(
    server_database_url: str,
) -> None:
    async with fresh_database(server_database_url) as empty:
        with pytest.raises(SchemaNotReady, match=r"does not exist.*rujuk db provision"):
            await create_pool(empty, "routing")


async def test_a_database_an_older_rujuk_migrated_as_the_superuser_is_taken_over(
    server_database_url: str,
) -> None:
    async with fresh_database(server_database_url) as url:
        admin = await asyncpg.connect(url)
        try:  # as create_pool did before there were roles: everything owned by the superuser
            await admin.execute("CREATE SCHEMA audit")
            await migrate(admin, "audit")
        finally:
            await admin.close()
        passwords = {schema: f"password-of-{schema}-for-test" for schema in SCHEMAS}
        done = await provision(url, passwords)
        assert done.migrations["audit"] == []  # nothing applied twice
        roles = DatabaseRoles(database_name(url))
        admin = await asyncpg.connect(url)
        try:
            owners = await admin.fetch(
                "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class "
                "WHERE relnamespace = 'audit'::regnamespace"
            )
        finally:
            await admin.close()
        assert [row["owner"] for row in owners] == [roles.owner]
        audit = await connect_as(ProvisionedDatabase(url, passwords), "audit")
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await audit.execute("ALTER TABLE ledger DISABLE TRIGGER ALL")
        finally:
            await audit.close()


async def test_our_password_verifier_is_the_one_postgresql_makes(database_url: str) -> None:
    """Provisioning sends a verifier made here, never the password: it must be PostgreSQL's."""
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute("SET password_encryption = 'scram-sha-256'")
        await admin.execute("CREATE ROLE verifier_check PASSWORD 'correct-horse-battery'")
        stored = await admin.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_check'"
        )
        await admin.execute("DROP ROLE verifier_check")
    finally:
        await admin.close()
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$.*", stored)
    assert match is not None
    iterations, salt = int(match[1]), base64.b64decode(match[2])
    assert scram_verifier("correct-horse-battery", salt=salt, iterations=iterations) == stored


@pytest.fixture
async def empty_database(server_database_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_database_url) as url:
        yield url


def test_rujuk_db_provision_says_what_it_did_and_never_a_password(
    empty_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no `rujuk up` running here
    passwords = {schema: f"{schema}-password-from-env" for schema in SCHEMAS if schema != "console"}
    for schema, password in passwords.items():
        monkeypatch.setenv(f"{schema.upper()}_DB_PASSWORD", password)
    monkeypatch.delenv("CONSOLE_DB_PASSWORD", raising=False)
    runner = CliRunner()

    first = runner.invoke(rujuk_cli.app, ["db", "provision", "--database-url", empty_database])
    again = runner.invoke(rujuk_cli.app, ["db", "provision", "--database-url", empty_database])

    assert first.exit_code == 0, first.output
    roles = DatabaseRoles(database_name(empty_database))
    assert f"owner role {roles.owner}" in first.output
    assert f"role {roles.runtime('audit')}" in first.output
    assert "migrations applied now: 6" in first.output
    assert f"{roles.runtime('console')} has no password" in first.output
    assert "CONSOLE_DB_PASSWORD" in first.output
    assert again.exit_code == 0, again.output
    assert "migrations applied now: 6" not in again.output
    for output in (first.output, again.output):
        assert not any(password in output for password in passwords.values())
        assert urlsplit(empty_database).password not in output


def test_rujuk_db_provision_refuses_a_database_name_roles_cannot_carry() -> None:
    result = CliRunner().invoke(
        rujuk_cli.app,
        ["db", "provision", "--database-url", "postgresql://postgres:pw@127.0.0.1:1/rujuk-prod"],
    )
    assert result.exit_code == 2
    assert "lowercase identifier" in result.output
