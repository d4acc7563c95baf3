"""The transactional outbox against a real PostgreSQL and a real nats-server: events staged
together are published in the order given, each with its id as Nats-Msg-Id, and a row leaves
the outbox only once JetStream has acknowledged it."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import CaseClosed
from rujuk_runtime.bus import ensure_streams
from rujuk_runtime.db import create_pool
from rujuk_runtime.outbox import OutboxRelay, add_to_outbox
from tests.conftest import provisioned_database

pytestmark = pytest.mark.integration


def closing(number: int) -> CloudEvent:
    payload = CaseClosed(case_id=f"3514-ZZZZZZ{number:04d}", closed_by="uji", reason="selesai")
    return make_event(payload, source="/rujuk/test")


@pytest.fixture
async def pool(server_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with provisioned_database(server_database_url) as database:
        pool = await create_pool(database.role_url("intake"), "intake")
        try:
            yield pool
        finally:
            await pool.close()


@pytest.fixture
async def js(clean_bus: str) -> AsyncIterator[JetStreamContext]:
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    await ensure_streams(js)
    yield js
    await connection.close()


async def published(js: JetStreamContext, count: int) -> list[tuple[str, str]]:
    """(Nats-Msg-Id, event id in the body) of the first ``count`` messages on the subject."""
    subscription = await js.pull_subscribe(CaseClosed.subject(), durable="uji-outbox")
    messages = await subscription.fetch(count, timeout=5)
    return [
        (message.headers["Nats-Msg-Id"], CloudEvent.model_validate_json(message.data).id)
        for message in messages
        if message.headers
    ]


async def test_events_staged_together_are_published_in_the_order_given(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    events = [closing(n) for n in range(7)]
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, *events[:1])
        await add_to_outbox(conn, *events[1:])
    relay = OutboxRelay(pool, js, service="uji", batch_size=4)

    assert await relay.relay_once() == 4
    assert await relay.relay_once() == 3
    assert await relay.relay_once() == 0
    await relay.stop()  # gives its connection back

    expected = [(event.id, event.id) for event in events]
    assert await published(js, 7) == expected
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_refused_publish_keeps_every_row_of_its_batch(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    events = [closing(n) for n in range(3)]
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, *events)
        # A subject no stream takes: JetStream answers "no responders" and refuses it.
        await conn.execute("UPDATE outbox SET subject = 'tidak.ada.stream' WHERE event_id = $1",
                           events[1].id)  # fmt: skip
    relay = OutboxRelay(pool, js, service="uji", publish_timeout=1.0)

    with pytest.raises(Exception):  # noqa: B017, PT011 (nats-py's error for no responders)
        await relay.relay_once()

    await relay.stop()
    kept = await pool.fetch("SELECT event_id FROM outbox ORDER BY seq")
    assert [row["event_id"] for row in kept] == [event.id for event in events]
    assert relay.published == 0


async def test_a_stuck_outbox_shows_in_its_metrics(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """What the RujukOutboxStuck alert reads: the oldest waiting event's age grows while
    JetStream refuses it, and PostgreSQL is said to answer (it is NATS that does not)."""
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, closing(1))
        await conn.execute("UPDATE outbox SET subject = 'tidak.ada.stream'")
    relay = OutboxRelay(pool, js, service="uji-stuck", publish_timeout=0.5)
    relay.start()
    try:
        await asyncio.sleep(2.0)
    finally:
        await relay.stop()
    age = REGISTRY.get_sample_value("rujuk_outbox_oldest_age_seconds", {"service": "uji-stuck"})
    up = REGISTRY.get_sample_value(
        "rujuk_dependency_up", {"service": "uji-stuck", "dependency": "postgres"}
    )
    assert age is not None
    assert age >= 1.0, age
    assert up == 1
