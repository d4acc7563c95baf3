"""Bearer tokens: who may file, read, disclose and erase.

A token is ``rujuk_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). Only
its sha256 is stored. A slow password hash (bcrypt, argon2) protects *low-entropy* secrets from
guessing after a database leak; a 256-bit random secret cannot be guessed whatever the hash
speed, so a slow hash would only add ~100 ms of CPU to every request (and bcrypt truncates at
72 bytes). sha256 also lets the lookup be one indexed equality query.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rujuk_contracts.subjects import AGENCY_ID_PATTERN
from rujuk_runtime.db import Connection

TOKEN_PREFIX = "rujuk_"  # noqa: S105 (a prefix, not a secret)
_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


class Role(StrEnum):
    OPERATOR = "operator"  # files reports, reads their status
    PARTNER = "partner"  # bound to one agency: reads the details its referral needs
    COORDINATOR = "coordinator"  # reads status, erases a case
    AUDITOR = "auditor"  # reads the disclosure log


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id (never its secret), role and, for a partner, agency."""

    token_id: str
    role: Role
    agency_id: str | None


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    role: Role
    agency_id: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "tok-" + secrets.token_hex(6)


def check_binding(role: Role, agency_id: str | None) -> None:
    if role is Role.PARTNER:
        if not agency_id:
            raise TokenError("a partner token needs --agency / token mitra perlu --agency")
        if not _AGENCY_ID.fullmatch(agency_id):
            raise TokenError(
                f"agency id {agency_id!r} must be lowercase letters, digits and dashes"
            )
    elif agency_id is not None:
        raise TokenError("only a partner token is bound to an agency")


async def create_token(
    conn: Connection,
    role: Role,
    *,
    agency_id: str | None = None,
    label: str | None = None,
    secret: str | None = None,
    token_id: str | None = None,
) -> tuple[str, str]:
    """Store a new token; return (token_id, secret). The secret is not kept anywhere."""
    check_binding(role, agency_id)
    secret = secret or new_secret()
    token_id = token_id or new_token_id()
    await conn.execute(
        "INSERT INTO access_tokens (token_id, secret_sha256, role, agency_id, label) "
        "VALUES ($1, $2, $3, $4, $5)",
        token_id,
        hash_secret(secret),
        role.value,
        agency_id,
        label,
    )
    return token_id, secret


async def revoke_token(conn: Connection, token_id: str) -> bool:
    """Revoke; False if there is no such token. Revoking twice keeps the first time."""
    row = await conn.fetchrow(
        "UPDATE access_tokens SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE token_id = $1 RETURNING token_id",
        token_id,
    )
    return row is not None


async def list_tokens(conn: Connection) -> list[TokenInfo]:
    rows = await conn.fetch(
        "SELECT token_id, role, agency_id, label, created_at, revoked_at "
        "FROM access_tokens ORDER BY created_at, token_id"
    )
    return [
        TokenInfo(
            token_id=r["token_id"],
            role=Role(r["role"]),
            agency_id=r["agency_id"],
            label=r["label"],
            created_at=r["created_at"],
            revoked_at=r["revoked_at"],
        )
        for r in rows
    ]


async def authenticate(conn: Connection, secret: str) -> Principal | None:
    """The principal of a live token, or None for an unknown or revoked one."""
    row = await conn.fetchrow(
        "SELECT token_id, role, agency_id FROM access_tokens "
        "WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        hash_secret(secret),
    )
    if row is None:
        return None
    return Principal(row["token_id"], Role(row["role"]), row["agency_id"])


def parse_bootstrap_tokens(spec: str) -> list[tuple[Role, str | None, str]]:
    """``ROLE[:AGENCY]=SECRET``, comma-separated -> [(role, agency, secret)].

    For deployments and local stacks that must start with a working token (e.g. the demo's
    operator). Secrets shorter than 32 characters are refused.
    """
    tokens: list[tuple[Role, str | None, str]] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        who, sep, secret = part.partition("=")
        role_name, _, agency = who.partition(":")
        if not sep or len(secret) < 32:
            raise TokenError("bootstrap tokens are ROLE[:AGENCY]=SECRET, secret ≥ 32 characters")
        try:
            role = Role(role_name.strip())
        except ValueError as exc:
            raise TokenError(f"unknown role {role_name!r} in bootstrap tokens") from exc
        check_binding(role, agency.strip() or None)
        tokens.append((role, agency.strip() or None, secret.strip()))
    return tokens


async def install_bootstrap_tokens(conn: Connection, spec: str) -> int:
    """Insert each bootstrap token unless its hash is known (a revoked one stays revoked)."""
    added = 0
    for role, agency, secret in parse_bootstrap_tokens(spec):
        digest = hash_secret(secret)
        result = await conn.execute(
            "INSERT INTO access_tokens (token_id, secret_sha256, role, agency_id, label) "
            "VALUES ($1, $2, $3, $4, 'bootstrap (INTAKE_BOOTSTRAP_TOKENS)') "
            "ON CONFLICT DO NOTHING",
            "boot-" + digest[:6].hex(),
            digest,
            role.value,
            agency,
        )
        added += result.endswith(" 1")
    return added
