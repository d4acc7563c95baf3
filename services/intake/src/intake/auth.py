"""Bearer tokens: issuing, revoking and listing them (intake owns tokens).

A token is ``rujuk_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). Only
its sha256 is stored. A slow password hash (bcrypt, argon2) protects *low-entropy* secrets from
guessing after a database leak; a 256-bit random secret cannot be guessed whatever the hash
speed, so a slow hash would only add ~100 ms of CPU to every request (and bcrypt truncates at
72 bytes). sha256 also lets the lookup be one indexed equality query.

Each issue and revocation is announced (``token.issued`` with the hash, never the secret or
the label; ``token.revoked``) through the outbox in the same transaction, so every service's
token projection follows; checking a token is ``rujuk_runtime.access``, shared by all.
"""

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from rujuk_contracts import make_event
from rujuk_contracts.events import TokenIssued, TokenRevoked
from rujuk_contracts.subjects import AGENCY_ID_PATTERN
from rujuk_runtime.access import Principal, Role, hash_secret
from rujuk_runtime.db import Connection
from rujuk_runtime.outbox import add_to_outbox

__all__ = ["Principal", "Role", "TokenError", "TokenInfo", "create_token", "revoke_token"]

TOKEN_PREFIX = "rujuk_"  # noqa: S105 (a prefix, not a secret)
SOURCE = "/rujuk/intake"
# Token event ids derive from the token id: announcing a token twice stages the same Nats-Msg-Id.
TOKEN_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rujuk:intake:tokens")
_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    role: Role
    agency_id: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


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
    digest = hash_secret(secret)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO access_tokens (token_id, secret_sha256, role, agency_id, label) "
            "VALUES ($1, $2, $3, $4, $5)",
            token_id,
            digest,
            role.value,
            agency_id,
            label,
        )
        await announce_issued(conn, token_id, role, agency_id, digest)
    return token_id, secret


async def revoke_token(conn: Connection, token_id: str) -> bool:
    """Revoke; False if there is no such token. Revoking twice keeps the first time."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT revoked_at FROM access_tokens WHERE token_id = $1 FOR UPDATE", token_id
        )
        if row is None:
            return False
        if row["revoked_at"] is None:
            await conn.execute(
                "UPDATE access_tokens SET revoked_at = now() WHERE token_id = $1", token_id
            )
            await announce_revoked(conn, token_id)
    return True


async def announce_issued(
    conn: Connection, token_id: str, role: Role, agency_id: str | None, digest: bytes
) -> None:
    """Stage ``token.issued`` in the caller's transaction."""
    issued = TokenIssued(
        token_id=token_id, role=role, agency_id=agency_id, secret_sha256=digest.hex()
    )
    await add_to_outbox(conn, make_event(issued, source=SOURCE, event_id=_event_id(issued)))


async def announce_revoked(conn: Connection, token_id: str) -> None:
    revoked = TokenRevoked(token_id=token_id)
    await add_to_outbox(conn, make_event(revoked, source=SOURCE, event_id=_event_id(revoked)))


def _event_id(payload: TokenIssued | TokenRevoked) -> str:
    return str(uuid.uuid5(TOKEN_EVENT_NAMESPACE, f"{payload.token_id}:{payload.event}"))


async def announce_unannounced(conn: Connection) -> int:
    """Announce tokens made before tokens were announced (an upgraded database); once each."""
    async with conn.transaction():
        rows = await conn.fetch(
            "UPDATE access_tokens SET announced = true WHERE NOT announced "
            "RETURNING token_id, secret_sha256, role, agency_id, revoked_at"
        )
        for row in rows:
            role = Role(row["role"])
            await announce_issued(
                conn, row["token_id"], role, row["agency_id"], bytes(row["secret_sha256"])
            )
            if row["revoked_at"] is not None:
                await announce_revoked(conn, row["token_id"])
    return len(rows)


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


async def principal_of(conn: Connection, secret_sha256: bytes) -> Principal | None:
    """The live token with this hash in intake's own table (intake's TokenVerifier lookup)."""
    row = await conn.fetchrow(
        "SELECT token_id, role, agency_id FROM access_tokens "
        "WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        secret_sha256,
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
        token_id = "boot-" + digest[:6].hex()
        async with conn.transaction():
            result = await conn.execute(
                "INSERT INTO access_tokens (token_id, secret_sha256, role, agency_id, label) "
                "VALUES ($1, $2, $3, $4, 'bootstrap (INTAKE_BOOTSTRAP_TOKENS)') "
                "ON CONFLICT DO NOTHING",
                token_id,
                digest,
                role.value,
                agency,
            )
            if result.endswith(" 1"):
                await announce_issued(conn, token_id, role, agency, digest)
                added += 1
    return added
