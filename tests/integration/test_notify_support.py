"""Shared bits of notify's integration tests (no tests here): referral events, a black hole."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from rujuk_contracts import make_event
from rujuk_contracts.events import Priority, ReferralRequested, Service
from rujuk_runtime.bus import event_headers
from rujuk_runtime.embedded import free_port

SIGNING_KEY = b"test-signing-key-not-secret"


def referral(
    agency_id: str, n: int, *, service: Service = Service.HEALTH, case: str = "AB12CD34EF"
) -> ReferralRequested:
    return ReferralRequested(
        case_id=f"3513-{case}",
        referral_id=f"ref-{agency_id}-{n:04d}-{uuid.uuid4().hex[:6]}",
        agency_id=agency_id,
        service=service,
        priority=Priority.URGENT,
        acknowledgement_deadline=datetime(2026, 11, 2, 3, 0, tzinfo=UTC) + timedelta(hours=n),
        escalation_chain=[],
        sop_id="sop-3513",
        sop_version=1,
        rule_ids=["r1"],
    )


async def publish_referral(js: JetStreamContext, payload: ReferralRequested) -> str:
    event = make_event(payload, source="/rujuk/routing")
    await js.publish(
        ReferralRequested.subject(), event.to_bytes(), headers=event_headers(event.id, None)
    )
    return event.id


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """An endpoint that accepts connections and never answers: a partner's server hanging."""
    port = free_port()
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/webhooks"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
