"""Tokens as intake announces them, for tests of one service's door without intake running.

The event is the contract: a service that projects this ``token.issued`` accepts the secret
exactly as it would accept one made by ``rujuk token create``.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import nats

from intake.auth import new_secret, new_token_id
from rujuk_contracts import make_event
from rujuk_contracts.events import EventPayload, Role, TokenIssued, TokenRevoked
from rujuk_runtime.access import hash_secret
from rujuk_runtime.bus import event_headers


async def _publish(nats_url: str, payload: EventPayload) -> None:
    connection = await nats.connect(nats_url)
    try:
        event = make_event(payload, source="/rujuk/intake")
        await connection.jetstream().publish(
            payload.subject(), event.to_bytes(), headers=event_headers(event.id, None)
        )
    finally:
        await connection.close()


async def announce_token(
    nats_url: str,
    role: Role,
    agency_id: str | None = None,
    secret: str | None = None,
    districts: list[str] | None = None,
) -> tuple[str, str]:
    """Publish ``token.issued`` for a new (or the given) secret; returns (token_id, secret).
    ``districts`` None: province level (every district), or a partner."""
    token_id, secret = new_token_id(), secret or new_secret()
    issued = TokenIssued(
        token_id=token_id,
        role=role,
        agency_id=agency_id,
        districts=districts,
        secret_sha256=hash_secret(secret).hex(),
    )
    await _publish(nats_url, issued)
    return token_id, secret


async def announce_revocation(nats_url: str, token_id: str) -> None:
    await _publish(nats_url, TokenRevoked(token_id=token_id))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def eventually(
    request: Callable[[], Awaitable[httpx.Response]], status: int, timeout: float = 15.0
) -> httpx.Response:
    """Repeat the request until it answers ``status`` (a token event is being projected)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await request()
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        await asyncio.sleep(0.05)
