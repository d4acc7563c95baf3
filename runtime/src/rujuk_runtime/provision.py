"""Provisioning (``rujuk db provision``): with the database administrator's connection, make
rujuk's roles (passwords set or rotated), the schemas owned by the owner role, every pending
migration applied as that owner, and each service's role granted its own schema and nothing
else (the plan is ``roles``). Safe to run again: after an upgrade, to rotate a password, or to
take over a database whose schemas an older rujuk made as the superuser."""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from rujuk_runtime import roles as plan
from rujuk_runtime.db import migrate
from rujuk_runtime.logs import get_logger
from rujuk_runtime.roles import DatabaseRoles, ExistingRole, ForeignOwned

log = get_logger(__name__)

PROVISION_LOCK = int.from_bytes(hashlib.sha256(b"rujuk.provision").digest()[:8], "big") >> 1


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message says what to change."""


@dataclass
class Provisioned:
    """What one run did (role names, never passwords)."""

    database: str
    roles: DatabaseRoles
    created: list[str] = field(default_factory=list)
    passwords_set: list[str] = field(default_factory=list)
    without_password: list[str] = field(default_factory=list)  # cannot log in yet
    migrations: dict[str, list[str]] = field(default_factory=dict)


async def provision(
    admin_url: str,
    passwords: Mapping[str, str],
    schemas: tuple[str, ...] = plan.SCHEMAS,
) -> Provisioned:
    """Provision the database ``admin_url`` names. ``passwords`` maps a schema to its role's
    password; a role left out keeps the password it has (none, if it is new)."""
    roles = DatabaseRoles(plan.database_name(admin_url), schemas)
    verifiers = {
        schema: plan.scram_verifier(plan.check_password(password, roles.runtime(schema)))
        for schema, password in passwords.items()
    }
    done = Provisioned(roles.database, roles)
    conn = await asyncpg.connect(admin_url, server_settings={"application_name": "rujuk-provision"})
    try:
        if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            raise ProvisionError(
                "provisioning needs the database administrator (a superuser): it makes roles "
                "and acts as the owner role / penyediaan butuh administrator basis data"
            )
        await conn.execute("SELECT pg_advisory_lock($1)", PROVISION_LOCK)
        try:
            await _make_roles(conn, roles, verifiers, done)
            await _execute(conn, plan.database_statements(roles))
            for schema in schemas:
                await _execute(conn, plan.schema_statements(roles, schema))
                await _hand_to_owner(conn, roles, schema)
                done.migrations[schema] = await _migrate_as_owner(conn, roles, schema)
                await _grant(conn, roles, schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", PROVISION_LOCK)
    finally:
        await conn.close()
    log.info(
        "database provisioned",
        database=roles.database,
        roles_created=done.created,
        passwords_set=done.passwords_set,
        migrations_applied=sum(len(applied) for applied in done.migrations.values()),
    )
    return done


async def _execute(conn: asyncpg.Connection, statements: list[str]) -> None:
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)


async def _make_roles(
    conn: asyncpg.Connection,
    roles: DatabaseRoles,
    verifiers: Mapping[str, str],
    done: Provisioned,
) -> None:
    rows = await conn.fetch(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
        "rolbypassrls, rolpassword IS NOT NULL AS has_password "
        "FROM pg_authid WHERE rolname = ANY($1::text[])",
        list(roles.every_role),
    )
    found = {row["rolname"]: row for row in rows}
    wanted = [(roles.owner, False, None)] + [
        (role, True, verifiers.get(schema)) for schema, role in roles.runtime_roles.items()
    ]
    statements = []
    for name, login, verifier in wanted:
        row = found.get(name)
        existing = None if row is None else _existing(row)
        statement = plan.role_statement(name, login=login, existing=existing, verifier=verifier)
        if statement is not None:
            statements.append(statement)
        if row is None:
            done.created.append(name)
        if verifier is not None:
            done.passwords_set.append(name)
        elif login and (row is None or not row["has_password"]):
            done.without_password.append(name)
    await _execute(conn, statements)


def _existing(row: asyncpg.Record) -> ExistingRole:
    return ExistingRole(
        login=row["rolcanlogin"],
        superuser=row["rolsuper"],
        createrole=row["rolcreaterole"],
        createdb=row["rolcreatedb"],
        replication=row["rolreplication"],
        bypassrls=row["rolbypassrls"],
    )


_FOREIGN_OWNED = """
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind,
       c.oid::regclass::text AS signature
  FROM pg_class c
 WHERE c.relnamespace = $1::text::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND c.relowner <> $2::text::regrole
   -- a sequence a column owns follows its table
   AND NOT (c.relkind = 'S' AND EXISTS (
       SELECT 1 FROM pg_depend d
        WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT 'FUNCTION', p.oid::regprocedure::text FROM pg_proc p
 WHERE p.pronamespace = $1::text::regnamespace AND p.proowner <> $2::text::regrole
ORDER BY 2
"""


async def _hand_to_owner(conn: asyncpg.Connection, roles: DatabaseRoles, schema: str) -> None:
    """Tables, sequences and functions made before the owner role existed become its own, so
    that it can migrate them further (and no one else can)."""
    rows = await conn.fetch(_FOREIGN_OWNED, schema, roles.owner)
    objects = [ForeignOwned(row["kind"], row["signature"]) for row in rows]
    await _execute(conn, plan.ownership_statements(roles, objects))


async def _migrate_as_owner(
    conn: asyncpg.Connection, roles: DatabaseRoles, schema: str
) -> list[str]:
    await conn.execute(f"SET ROLE {plan.quote_identifier(roles.owner)}")
    try:
        return await migrate(conn, schema)
    finally:
        await conn.execute("RESET ROLE")


async def _grant(conn: asyncpg.Connection, roles: DatabaseRoles, schema: str) -> None:
    rows = await conn.fetch(
        "SELECT relname, relkind FROM pg_class "
        "WHERE relnamespace = $1::text::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'S')",
        schema,
    )
    tables = [row["relname"] for row in rows if row["relkind"] != "S"]
    sequences = [row["relname"] for row in rows if row["relkind"] == "S"]
    await _execute(conn, plan.grant_statements(roles, schema, tables, sequences))
