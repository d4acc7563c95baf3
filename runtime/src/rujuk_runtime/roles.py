"""Who may do what in PostgreSQL, as a plan: the names of rujuk's roles, their attributes, the
grants that fence each service to its own schema, password verifiers and role URLs. No I/O:
``provision`` runs the plan with the administrator's connection.

- One owner role (``<database>_owner``, NOLOGIN) owns every schema and runs the migrations; the
  administrator switches to it (SET ROLE), so the migrations never run as a superuser.
- One login role per schema (``<database>_<schema>``): USAGE on its own schema only; SELECT,
  INSERT, UPDATE, DELETE on its tables and USAGE on its sequences; never CREATE, TRUNCATE,
  REFERENCES or TRIGGER, never another schema. The audit ledger and what is signed or counted
  beside it are append-only: INSERT and SELECT only, and the table's triggers refuse the rest
  even to its owner. No role of rujuk is a superuser or may create roles or databases, bypass
  row security or replicate.
- Role names carry the database's name, so two rujuk databases on one server (staging and
  production, or the tests' many) never share a role or a password.

Grants are recomputed from the catalog after every migration run, in the same command, rather
than through ALTER DEFAULT PRIVILEGES: a default would give a new append-only table UPDATE and
DELETE until someone narrowed it (fail open); this way a new table is out of the services'
reach until it is granted (fail closed).
"""

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SCHEMAS = ("intake", "routing", "notify", "audit", "console")
# Every schema's record of its migrations: its role reads it (is my schema migrated?) only.
READ_ONLY_TABLES = frozenset({"schema_migrations"})
# Evidence: appended to and read, never changed (migrations 0001, 0002 and 0004 of audit).
APPEND_ONLY_TABLES: Mapping[str, frozenset[str]] = {
    "audit": frozenset(
        {"ledger", "checkpoints", "parked", "tree_nodes", "tree_heads", "cosignatures"}
    ),
}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
APPEND_ONLY_PRIVILEGES = ("SELECT", "INSERT")
READ_ONLY_PRIVILEGES = ("SELECT",)

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1
MIN_PASSWORD_LENGTH = 16
PASSWORD = re.compile(r"[\x21-\x7e]+")  # printable ASCII: SCRAM's SASLprep leaves it as is
SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SCRAM_VERIFIER = re.compile(r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+")


class RolePlanError(ValueError):
    """A name or password that rujuk's roles cannot be made from; says what to change."""


def quote_identifier(name: str) -> str:
    """``name`` as SQL, after checking it is one of the lowercase identifiers rujuk makes."""
    if not IDENTIFIER.fullmatch(name) or len(name) > MAX_IDENTIFIER_LENGTH:
        raise RolePlanError(f"{name!r} is not a lowercase SQL identifier of at most 63 characters")
    return f'"{name}"'


@dataclass(frozen=True)
class DatabaseRoles:
    """The roles of one rujuk database."""

    database: str
    schemas: tuple[str, ...] = SCHEMAS

    def __post_init__(self) -> None:
        longest = max(len(schema) for schema in self.schemas)
        if len(self.database) + 1 + max(longest, len("owner")) > MAX_IDENTIFIER_LENGTH:
            raise RolePlanError(f"database name {self.database!r} is too long to name roles after")
        for name in (self.database, *self.schemas):
            quote_identifier(name)

    @property
    def owner(self) -> str:
        return f"{self.database}_owner"

    def runtime(self, schema: str) -> str:
        """The login role of the service whose schema this is."""
        if schema not in self.schemas:
            raise RolePlanError(
                f"no role for schema {schema!r}; schemas: {', '.join(self.schemas)}"
            )
        return f"{self.database}_{schema}"

    @property
    def runtime_roles(self) -> dict[str, str]:
        return {schema: self.runtime(schema) for schema in self.schemas}

    @property
    def every_role(self) -> tuple[str, ...]:
        return (self.owner, *self.runtime_roles.values())


@dataclass(frozen=True)
class ExistingRole:
    """A role's attributes as pg_roles shows them."""

    login: bool
    superuser: bool = False
    createrole: bool = False
    createdb: bool = False
    replication: bool = False
    bypassrls: bool = False


# The attributes every rujuk role has, whatever it was given before: (option, pg_roles field).
_DENIED = (
    ("SUPERUSER", "superuser"),
    ("CREATEDB", "createdb"),
    ("CREATEROLE", "createrole"),
    ("REPLICATION", "replication"),
    ("BYPASSRLS", "bypassrls"),
)


def role_statement(
    name: str, *, login: bool, existing: ExistingRole | None, verifier: str | None
) -> str | None:
    """CREATE or ALTER ROLE so that ``name`` has exactly rujuk's attributes, and the password
    whose verifier is given; None when an existing role needs no change."""
    if verifier is not None and not SCRAM_VERIFIER.fullmatch(verifier):
        raise RolePlanError("a password is set only as a SCRAM-SHA-256 verifier")
    if existing is None:
        options = ["LOGIN" if login else "NOLOGIN", *(f"NO{option}" for option, _ in _DENIED)]
    else:
        options = [] if existing.login == login else ["LOGIN" if login else "NOLOGIN"]
        options += [f"NO{option}" for option, field in _DENIED if getattr(existing, field)]
    if verifier is not None:
        options.append(f"PASSWORD '{verifier}'")
    if existing is not None and not options:
        return None
    verb = "ALTER" if existing is not None else "CREATE"
    return f"{verb} ROLE {quote_identifier(name)} {' '.join(options)}"


def database_statements(roles: DatabaseRoles) -> list[str]:
    """Only rujuk's login roles (and superusers) may connect; nobody else creates anything."""
    database = quote_identifier(roles.database)
    logins = ", ".join(quote_identifier(role) for role in roles.runtime_roles.values())
    return [
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {database} TO {logins}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ]


def schema_statements(roles: DatabaseRoles, schema: str) -> list[str]:
    """The schema, made or taken over by the owner role."""
    name, owner = quote_identifier(schema), quote_identifier(roles.owner)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {name} AUTHORIZATION {owner}",
        f"ALTER SCHEMA {name} OWNER TO {owner}",
    ]


@dataclass(frozen=True)
class ForeignOwned:
    """An object in a schema of rujuk that the owner role does not own (made before there was
    one, by whoever migrated then)."""

    kind: str  # TABLE, SEQUENCE, VIEW, MATERIALIZED VIEW, FUNCTION
    signature: str  # as PostgreSQL quotes it: schema.name, or schema.name(args) for a function


_OWNABLE_KINDS = frozenset({"TABLE", "SEQUENCE", "VIEW", "MATERIALIZED VIEW", "FUNCTION"})


def ownership_statements(roles: DatabaseRoles, objects: Iterable[ForeignOwned]) -> list[str]:
    owner = quote_identifier(roles.owner)
    statements = []
    for item in objects:
        if item.kind not in _OWNABLE_KINDS:
            raise RolePlanError(f"cannot hand a {item.kind} to the owner role")
        statements.append(f"ALTER {item.kind} {item.signature} OWNER TO {owner}")
    return statements


def table_privileges(schema: str, table: str) -> tuple[str, ...]:
    if table in READ_ONLY_TABLES:
        return READ_ONLY_PRIVILEGES
    if table in APPEND_ONLY_TABLES.get(schema, frozenset()):
        return APPEND_ONLY_PRIVILEGES
    return TABLE_PRIVILEGES


def grant_statements(
    roles: DatabaseRoles, schema: str, tables: Iterable[str], sequences: Iterable[str]
) -> list[str]:
    """Everything any role of rujuk (and PUBLIC) held in ``schema`` revoked, then its own role's
    privileges granted again, table by table: run in one transaction, a running service never
    sees a gap, and a grant taken away from the plan is taken away from the database."""
    name = quote_identifier(schema)
    role = quote_identifier(roles.runtime(schema))
    everyone = ", ".join(["PUBLIC", *(quote_identifier(r) for r in roles.runtime_roles.values())])
    statements = [
        f"REVOKE ALL ON SCHEMA {name} FROM {everyone}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {name} FROM {everyone}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {name} FROM {everyone}",
        f"GRANT USAGE ON SCHEMA {name} TO {role}",
    ]
    for table in sorted(tables):
        privileges = ", ".join(table_privileges(schema, table))
        statements.append(f"GRANT {privileges} ON TABLE {name}.{quote_identifier(table)} TO {role}")
    for sequence in sorted(sequences):
        statements.append(
            f"GRANT USAGE, SELECT ON SEQUENCE {name}.{quote_identifier(sequence)} TO {role}"
        )
    return statements


def check_password(password: str, role: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH or not PASSWORD.fullmatch(password):
        raise RolePlanError(
            f"the password for {role} must be at least {MIN_PASSWORD_LENGTH} printable ASCII "
            "characters without spaces (e.g. `openssl rand -hex 24`)"
        )
    return password


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802, RFC 7677), made here so
    that the password itself never reaches the server, its logs or its statement statistics."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names; rujuk's roles are named after it."""
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise RolePlanError("the database URL names no database (…/DATABASE at its end)")
    if not IDENTIFIER.fullmatch(name):
        raise RolePlanError(
            f"database {name!r}: rujuk names its roles after the database, so its name must be "
            "a lowercase identifier (letters, digits, _)"
        )
    return name


def with_credentials(url: str, user: str, password: str | None) -> str:
    """``url`` (server, database, parameters) as another user."""
    parts = urlsplit(url)
    servers = parts.netloc.rpartition("@")[2]
    credentials = quote(user, safe="")
    if password is not None:
        credentials += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{credentials}@{servers}"))


def role_url(admin_url: str, schema: str, password: str) -> str:
    """The URL a service connects with: the administrator's server and database, as the
    service's own role."""
    roles = DatabaseRoles(database_name(admin_url))
    return with_credentials(admin_url, roles.runtime(schema), password)


def without_password(url: str) -> str:
    """A PostgreSQL URL fit to print: the user stays, any password goes."""
    parts = urlsplit(url)
    credentials, at, servers = parts.netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}{at}{servers}"))
