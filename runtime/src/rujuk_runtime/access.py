"""Who is calling: the bearer tokens intake issues, checked the same way by every service.

Intake owns tokens (``rujuk token create``, ``INTAKE_BOOTSTRAP_TOKENS``) and announces each
one through its outbox: ``token.issued`` (id, role, agency, the secret's sha256) and
``token.revoked``. Every other service projects them into ``access_token_projection`` in its
own schema (``follow_tokens``); intake reads its own ``access_tokens`` table instead.

A verified token is remembered in the process for ``RUJUK_TOKEN_CACHE_SECONDS`` (default 5):
authentication is on every request's path and must not cost a database round trip each time.
So a revoked token keeps working in a service for that long at most. The process that
projects the revocation forgets its cache at once; other replicas of the service wait out
the time. Unknown tokens are not remembered: a token just issued works as soon as its event
is projected.
"""

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from rujuk_contracts import subjects
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import EventPayload, Role, TokenIssued, TokenRevoked
from rujuk_runtime.consumer import Handler, Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime

__all__ = [
    "Principal",
    "Role",
    "TokenVerifier",
    "check_roles_before_bodies",
    "districts_of",
    "follow_tokens",
    "hash_secret",
    "require",
]

log = get_logger(__name__)

TOKEN_EVENTS = subjects.event_subject("token", ">")
MAX_REMEMBERED = 10_000

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="rujukToken",
    description="rujuk_… token issued by intake (`rujuk token create`); one token for every "
    "service",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id (never its secret), its role and what it is bound to.

    A partner is bound to its agency (``agency_id``). Operators, coordinators and auditors
    are bound to the districts they serve: ``districts`` names them, or is None for a
    province-level token, which serves every district.
    """

    token_id: str
    role: Role
    agency_id: str | None
    districts: frozenset[str] | None
    # A cadre's kecamatan or villages ("Kraksaan", "Kraksaan/Desa Contoh"): only intake,
    # which files its reports, knows them; elsewhere None.
    areas: tuple[str, ...] | None = None

    @property
    def province(self) -> bool:
        """A province-level operator, coordinator or auditor: every district."""
        return self.role.district_bound and self.districts is None

    def serves(self, district_code: str) -> bool:
        """Whether this token may see or act on a district's cases. A partner serves no
        district as such: what it may see goes by its agency's referrals."""
        if not self.role.district_bound:
            return False
        return self.districts is None or district_code in self.districts

    @property
    def district_filter(self) -> list[str] | None:
        """The districts a query must keep to (``district_code = ANY($n)``), or None for
        no filter (province level). A partner's is empty: by district it sees nothing."""
        if not self.role.district_bound:
            return []
        return None if self.districts is None else sorted(self.districts)

    @property
    def scope(self) -> str:
        """What the token is bound to, as people read it: ``agency:…``, ``province`` or the
        district codes."""
        if not self.role.district_bound:
            return f"agency:{self.agency_id}"
        return "province" if self.districts is None else ",".join(sorted(self.districts))


def districts_of(value: list[str] | None) -> frozenset[str] | None:
    """A ``districts`` column or field as a Principal keeps it."""
    return None if value is None else frozenset(value)


def hash_secret(secret: str) -> bytes:
    """sha256 of the secret: a 256-bit random secret needs no slow hash (see intake.auth)."""
    return hashlib.sha256(secret.encode()).digest()


TokenLookup = Callable[[Connection, bytes], Awaitable[Principal | None]]


async def projected_principal(conn: Connection, secret_sha256: bytes) -> Principal | None:
    """The live token with this hash in the service's projection, or None."""
    row = await conn.fetchrow(
        "SELECT token_id, role, agency_id, districts FROM access_token_projection "
        "WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        secret_sha256,
    )
    if row is None:
        return None
    return Principal(
        row["token_id"], Role(row["role"]), row["agency_id"], districts_of(row["districts"])
    )


class TokenVerifier:
    """Checks bearer tokens against a lookup, remembering verified ones for ``ttl`` seconds."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        ttl: float = 5.0,
        lookup: TokenLookup = projected_principal,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._lookup = lookup
        self._clock = clock
        self._remembered: dict[bytes, tuple[Principal, float]] = {}
        self.lookups = 0  # database look-ups made, for tests and metrics

    async def principal(self, secret: str) -> Principal | None:
        """The principal of a live token, or None for an unknown or revoked one."""
        digest = hash_secret(secret)
        now = self._clock()
        remembered = self._remembered.get(digest)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        self.lookups += 1
        async with self._pool().acquire() as conn:
            found = await self._lookup(conn, digest)
        if found is None:
            self._remembered.pop(digest, None)
        elif self._ttl > 0:
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered = {k: v for k, v in self._remembered.items() if v[1] > now}
                if len(self._remembered) >= MAX_REMEMBERED:
                    self._remembered.clear()
            self._remembered[digest] = (found, now + self._ttl)
        return found

    def forget(self) -> None:
        """Drop every remembered token (a token event was projected)."""
        self._remembered.clear()

    async def check(
        self, credentials: HTTPAuthorizationCredentials | None, roles: tuple[Role, ...]
    ) -> Principal:
        """The caller's principal if its role is one of ``roles``.

        401 with ``WWW-Authenticate: Bearer`` without a token or for an unknown or revoked
        one; 403 for a role that may not.
        """
        if credentials is None:
            raise HTTPException(
                401,
                "token akses diperlukan / a bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="rujuk"'},
            )
        found = await self.principal(credentials.credentials)
        if found is None:
            raise HTTPException(
                401,
                "token tidak dikenal atau dicabut / unknown or revoked token",
                headers={"WWW-Authenticate": 'Bearer realm="rujuk", error="invalid_token"'},
            )
        if found.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise HTTPException(
                403, f"peran tidak diizinkan / role {found.role.value} may not; only {allowed}"
            )
        return found


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency for module-level routes: the caller's principal if its role is one
    of ``roles``, checked by the app's verifier (``app.state.verifier``, set by the service's
    bootstrap). ``Annotated[Principal, Depends(require(Role.OPERATOR))]``."""

    async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        verifier: TokenVerifier = request.app.state.verifier
        return await verifier.check(credentials, roles)

    principal.roles = roles  # type: ignore[attr-defined]  # for check_roles_before_bodies
    return principal


def check_roles_before_bodies(app: FastAPI) -> None:
    """Check the caller's token and role before a route reads its request body.

    FastAPI reads (and refuses, 422) a body that is not JSON before it runs any dependency,
    so a caller who may not call a route would learn about its body first: an operator's
    erase with a broken body got 422, where 403 is the answer. Each route that takes a body
    and ``require``s roles checks them first (the verifier remembers the token, so the second
    check, the dependency's own, costs no look-up)."""
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            roles = _required_roles(route.dependant)
            if roles is not None:
                route.app = _role_checked(route.app, roles)


def _required_roles(dependant: Dependant) -> tuple[Role, ...] | None:
    for dependency in dependant.dependencies:
        roles = getattr(dependency.call, "roles", None)
        if roles is not None:
            return tuple(roles)
        found = _required_roles(dependency)
        if found is not None:
            return found
    return None


def _role_checked(app: ASGIApp, roles: tuple[Role, ...]) -> ASGIApp:
    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        verifier: TokenVerifier = request.app.state.verifier
        await verifier.check(await bearer(request), roles)  # 401 / 403 raise from here
        await app(scope, receive, send)

    return checked


# --- the projection -----------------------------------------------------------------------


async def project_token_event(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    """Upsert the token; a revocation that overtook its issue is kept and wins."""
    if isinstance(payload, TokenIssued):
        await conn.execute(
            "INSERT INTO access_token_projection "
            "(token_id, secret_sha256, role, agency_id, districts, issued_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (token_id) DO UPDATE SET secret_sha256 = EXCLUDED.secret_sha256, "
            "role = EXCLUDED.role, agency_id = EXCLUDED.agency_id, "
            "districts = EXCLUDED.districts, issued_at = EXCLUDED.issued_at",
            payload.token_id,
            bytes.fromhex(payload.secret_sha256),
            payload.role.value,
            payload.agency_id,
            payload.districts,
            event.time,
        )
    elif isinstance(payload, TokenRevoked):
        await conn.execute(
            "INSERT INTO access_token_projection (token_id, revoked_at) VALUES ($1, $2) "
            "ON CONFLICT (token_id) DO UPDATE "
            "SET revoked_at = coalesce(access_token_projection.revoked_at, EXCLUDED.revoked_at)",
            payload.token_id,
            event.time,
        )
    else:
        raise Rejected(f"{payload.event_type()} is not a token event")


def token_handlers(verifier: TokenVerifier, *, project: bool = True) -> dict[str, Handler]:
    """Handlers of token events: project them (unless the service owns tokens), and forget
    remembered tokens so that this process applies a revocation at once."""

    async def handle(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
        if project:
            await project_token_event(conn, event, payload)
        verifier.forget()
        log.info("token event", event_type=event.type, token_id=event.subject)

    return {model.event_type(): handle for model in (TokenIssued, TokenRevoked)}


def follow_tokens(runtime: ServiceRuntime, verifier: TokenVerifier) -> None:
    """Project intake's token events with a durable consumer of the service's own."""
    runtime.handlers.update(token_handlers(verifier))
    runtime.subscribe_batches(TOKEN_EVENTS, durable=f"{runtime.name}-tokens")
