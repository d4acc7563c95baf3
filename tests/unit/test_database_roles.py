"""The plan of rujuk's PostgreSQL roles, without a server: names, attributes, grants, password
verifiers and the URLs each service connects with (tests/integration/test_database_roles.py
runs the same plan against a real PostgreSQL)."""

import base64
import json
import stat
from pathlib import Path

import pytest

from rujuk.stack import Stack, running_stack_env
from rujuk_runtime.roles import (
    SCHEMAS,
    DatabaseRoles,
    ExistingRole,
    ForeignOwned,
    RolePlanError,
    check_password,
    database_name,
    database_statements,
    grant_statements,
    ownership_statements,
    role_statement,
    role_url,
    scram_verifier,
    without_password,
)

ROLES = DatabaseRoles("rujuk")
AUDIT_TABLES = ["ledger", "checkpoints", "parked", "tree_nodes", "tree_heads", "cosignatures",
                "stream_position", "outbox",
                "processed_events", "access_token_projection", "schema_migrations"]  # fmt: skip
VERIFIER = scram_verifier("a-long-enough-password", salt=b"0123456789abcdef")


def test_roles_are_named_after_the_database_one_owner_and_one_login_per_schema() -> None:
    assert ROLES.owner == "rujuk_owner"
    assert ROLES.runtime_roles == {
        "intake": "rujuk_intake",
        "routing": "rujuk_routing",
        "notify": "rujuk_notify",
        "audit": "rujuk_audit",
        "console": "rujuk_console",
    }
    assert DatabaseRoles("test_0123456789ab").runtime("audit") == "test_0123456789ab_audit"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://postgres:pw@db:5432/rujuk-prod", "lowercase identifier"),
        ("postgresql://postgres:pw@db:5432/Rujuk", "lowercase identifier"),
        ("postgresql://postgres:pw@db:5432/", "names no database"),
        (f"postgresql://db/{'x' * 58}", "too long"),
    ],
)
def test_a_database_that_roles_cannot_be_named_after_is_refused_with_the_reason(
    url: str, problem: str
) -> None:
    with pytest.raises(RolePlanError, match=problem):
        DatabaseRoles(database_name(url))


def test_a_new_login_role_gets_none_of_the_powers_and_only_a_scram_verifier() -> None:
    statement = role_statement("rujuk_audit", login=True, existing=None, verifier=VERIFIER)
    assert statement == (
        'CREATE ROLE "rujuk_audit" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
        f"NOBYPASSRLS PASSWORD '{VERIFIER}'"
    )
    assert "a-long-enough-password" not in statement


def test_the_owner_role_cannot_log_in() -> None:
    statement = role_statement("rujuk_owner", login=False, existing=None, verifier=None)
    assert statement is not None
    assert statement.startswith('CREATE ROLE "rujuk_owner" NOLOGIN NOSUPERUSER')


def test_an_existing_role_found_with_powers_loses_them_and_one_in_order_is_left_alone() -> None:
    tampered = ExistingRole(login=True, superuser=True, createrole=True, bypassrls=True)
    assert role_statement("rujuk_intake", login=True, existing=tampered, verifier=None) == (
        'ALTER ROLE "rujuk_intake" NOSUPERUSER NOCREATEROLE NOBYPASSRLS'
    )
    in_order = ExistingRole(login=True)
    assert role_statement("rujuk_intake", login=True, existing=in_order, verifier=None) is None
    rotated = role_statement("rujuk_intake", login=True, existing=in_order, verifier=VERIFIER)
    assert rotated == f"ALTER ROLE \"rujuk_intake\" PASSWORD '{VERIFIER}'"


def test_a_password_is_never_put_into_sql_as_it_is() -> None:
    with pytest.raises(RolePlanError, match="SCRAM"):
        role_statement("rujuk_intake", login=True, existing=None, verifier="plain-password-here")


@pytest.mark.parametrize("password", ["short", "has a space in it!!", "ünïcode-password-long"])
def test_a_weak_or_unusual_password_is_refused_naming_the_role(password: str) -> None:
    with pytest.raises(RolePlanError, match="rujuk_notify"):
        check_password(password, "rujuk_notify")


def test_the_scram_verifier_has_postgresqls_form_and_a_fresh_salt_each_time() -> None:
    method, _, rest = VERIFIER.partition("$")
    iterations_salt, _, keys = rest.partition("$")
    iterations, _, salt = iterations_salt.partition(":")
    stored_key, _, server_key = keys.partition(":")
    assert (method, iterations) == ("SCRAM-SHA-256", "4096")
    assert base64.b64decode(salt) == b"0123456789abcdef"
    assert len(base64.b64decode(stored_key)) == len(base64.b64decode(server_key)) == 32
    assert scram_verifier("same-password-twice") != scram_verifier("same-password-twice")


def test_the_audit_ledger_and_what_is_signed_beside_it_are_append_only_for_audit() -> None:
    grants = grant_statements(ROLES, "audit", AUDIT_TABLES, ["outbox_seq_seq"])
    for table in ("ledger", "checkpoints", "parked", "tree_nodes", "tree_heads", "cosignatures"):
        assert f'GRANT SELECT, INSERT ON TABLE "audit"."{table}" TO "rujuk_audit"' in grants
    assert 'GRANT SELECT ON TABLE "audit"."schema_migrations" TO "rujuk_audit"' in grants
    for table in ("stream_position", "outbox", "processed_events", "access_token_projection"):
        assert (
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "audit"."{table}" TO "rujuk_audit"'
            in grants
        )
    assert 'GRANT USAGE, SELECT ON SEQUENCE "audit"."outbox_seq_seq" TO "rujuk_audit"' in grants


def test_a_schema_is_granted_to_its_own_role_only_after_everyone_loses_everything() -> None:
    grants = grant_statements(ROLES, "intake", ["cases", "vault"], [])
    everyone = (
        'PUBLIC, "rujuk_intake", "rujuk_routing", "rujuk_notify", "rujuk_audit", "rujuk_console"'
    )
    assert grants[:4] == [
        f'REVOKE ALL ON SCHEMA "intake" FROM {everyone}',
        f'REVOKE ALL ON ALL TABLES IN SCHEMA "intake" FROM {everyone}',
        f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "intake" FROM {everyone}',
        'GRANT USAGE ON SCHEMA "intake" TO "rujuk_intake"',
    ]
    granted = [statement for statement in grants if statement.startswith("GRANT")]
    assert all(statement.endswith('TO "rujuk_intake"') for statement in granted)
    for power in ("CREATE", "TRUNCATE", "REFERENCES", "TRIGGER", "ALL"):
        assert not any(power in statement.split(" ON ")[0] for statement in granted)


def test_only_rujuks_login_roles_may_connect_and_nobody_creates_in_public() -> None:
    assert database_statements(ROLES) == [
        'REVOKE ALL ON DATABASE "rujuk" FROM PUBLIC',
        'GRANT CONNECT ON DATABASE "rujuk" TO "rujuk_intake", "rujuk_routing", "rujuk_notify", '
        '"rujuk_audit", "rujuk_console"',
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ]


def test_objects_an_older_rujuk_made_as_the_superuser_are_handed_to_the_owner() -> None:
    objects = [ForeignOwned("TABLE", "audit.ledger"), ForeignOwned("FUNCTION", "audit.f()")]
    assert ownership_statements(ROLES, objects) == [
        'ALTER TABLE audit.ledger OWNER TO "rujuk_owner"',
        'ALTER FUNCTION audit.f() OWNER TO "rujuk_owner"',
    ]
    with pytest.raises(RolePlanError):
        ownership_statements(ROLES, [ForeignOwned("DATABASE", "rujuk")])


def test_a_service_url_is_the_administrators_server_and_database_as_the_services_role() -> None:
    admin = "postgresql://postgres:adm%40n@db.example:5432/rujuk?sslmode=require"
    assert role_url(admin, "audit", "p/w:d@x") == (
        "postgresql://rujuk_audit:p%2Fw%3Ad%40x@db.example:5432/rujuk?sslmode=require"
    )


def test_a_url_printed_keeps_its_user_and_loses_its_password() -> None:
    assert without_password("postgresql://rujuk_audit:s3cret@db:5432/rujuk") == (
        "postgresql://rujuk_audit@db:5432/rujuk"
    )
    assert without_password("postgresql://db:5432/rujuk") == "postgresql://db:5432/rujuk"


def test_the_stack_gives_each_service_its_own_role_and_keeps_the_passwords_0600(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path, external_database_url="postgresql://postgres:adm1n@db:5432/rujuk")
    users = {name: stack.service_env(name, 0)["DATABASE_URL"].split("//")[1].split(":")[0]
             for name in SCHEMAS}  # fmt: skip
    assert users == ROLES.runtime_roles
    assert all("adm1n" not in stack.service_env(name, 0)["DATABASE_URL"] for name in SCHEMAS)
    assert stat.S_IMODE((tmp_path / "dev-secrets.json").stat().st_mode) == 0o600
    assert "adm1n" not in stack.database_address


def test_a_rujuk_command_acts_as_the_role_of_its_service_on_a_running_stack(
    tmp_path: Path,
) -> None:
    databases = {
        "intake": "postgresql://rujuk_intake:a@h/rujuk",
        "audit": "postgresql://rujuk_audit:b@h/rujuk",
    }
    connection = {"NATS_URL": "nats://ops:pw@127.0.0.1:1", "database_urls": databases}
    (tmp_path / "connection.json").write_text(json.dumps(connection))
    assert running_stack_env(tmp_path, "audit")["DATABASE_URL"] == databases["audit"]
    assert running_stack_env(tmp_path, "intake")["DATABASE_URL"] == databases["intake"]
    assert "DATABASE_URL" not in running_stack_env(tmp_path, None)
