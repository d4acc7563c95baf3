"""Bearer tokens: their format, whom they may be bound to, and the bootstrap setting (intake
owns tokens). Pure policy: storing, revoking and listing them is ``intake.store``.

A token is ``rujuk_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). Only
its sha256 is stored. A slow password hash (bcrypt, argon2) protects *low-entropy* secrets from
guessing after a database leak; a 256-bit random secret cannot be guessed whatever the hash
speed, so a slow hash would only add ~100 ms of CPU to every request (and bcrypt truncates at
72 bytes). sha256 also lets the lookup be one indexed equality query.

Each issue and revocation is announced (``token.issued`` with the hash, never the secret or
the label; ``token.revoked``, both made by ``intake.events``) through the outbox in the same
transaction, so every service's token projection follows; checking a token is
``rujuk_runtime.access``, shared by all.
"""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from rujuk_contracts.events import Role
from rujuk_contracts.subjects import AGENCY_ID_PATTERN

__all__ = ["Role", "TokenError", "TokenInfo", "check_binding", "parse_bootstrap_tokens"]

TOKEN_PREFIX = "rujuk_"  # noqa: S105 (a prefix, not a secret)
BOOTSTRAP_LABEL = "bootstrap (INTAKE_BOOTSTRAP_TOKENS)"
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


def bootstrap_token_id(secret_sha256: bytes) -> str:
    """A bootstrap token's id derives from its hash: the next start finds it known."""
    return "boot-" + secret_sha256[:6].hex()


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
