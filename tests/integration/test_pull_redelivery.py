"""Redelivery in seconds (issue 23) against a real nats-server and PostgreSQL: a message whose
consumer died comes back to the restarted one within ack_wait; a message still being worked on
(a slow handler, a batch behind a database lock) is not redelivered however long the work takes
(in-progress acknowledgements) and has its effect once; a consumer made by an earlier version
with a 30 s ack_wait takes the current one."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from rujuk_contracts import CloudEvent, make_event, subjects
from rujuk_contracts.events import CaseClosed, EventPayload
from rujuk_runtime.bus import ensure_streams
from rujuk_runtime.consumer import EventConsumer
from rujuk_runtime.db import Connection, HeldConnection, create_pool
from rujuk_runtime.pull import ACK_WAIT_SECONDS, PullConsumer
from tests.conftest import provisioned_database

pytestmark = pytest.mark.integration

ACK_WAIT = 1.5  # shorter than the services' ACK_WAIT_SECONDS, for a quicker test

SUBJECT = "rujuk.evt.uji.redelivery"


@pytest.fixture
async def js(clean_bus: str) -> AsyncIterator[JetStreamContext]:
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    await ensure_streams(js)
    yield js
    await connection.close()


def consumer(process: object, durable: str = "uji-redelivery") -> PullConsumer:
    return PullConsumer(
        SUBJECT, durable, subjects.EVENTS_STREAM, process, batch_size=10,  # type: ignore[arg-type]
        ack_wait=ACK_WAIT,
    )  # fmt: skip


async def test_a_message_whose_consumer_died_is_redelivered_within_ack_wait(
    js: JetStreamContext,
) -> None:
    taken = asyncio.Event()

    async def dies_holding(batch: list[Msg]) -> None:
        taken.set()
        await asyncio.Event().wait()  # never acks: the process is about to be killed

    first = consumer(dies_holding)
    await first.start(js)
    await js.publish(SUBJECT, b"darurat")
    await asyncio.wait_for(taken.wait(), 10)
    died_at = time.monotonic()
    await first.stop()  # like a kill: no ack, no nak, no more in-progress

    redelivered: list[tuple[bytes, float]] = []
    again = asyncio.Event()

    async def acks(batch: list[Msg]) -> None:
        for message in batch:
            redelivered.append((message.data, time.monotonic() - died_at))
            await message.ack()
        again.set()

    second = consumer(acks)
    await second.start(js)
    try:
        await asyncio.wait_for(again.wait(), 10)
    finally:
        await second.stop()
    [(data, after)] = redelivered
    assert data == b"darurat"
    # Within ack_wait of the death (plus the pull's round trip), where it took 30 s before.
    assert after < ACK_WAIT + 1.5, after


async def test_a_message_worked_on_longer_than_ack_wait_is_not_redelivered(
    js: JetStreamContext,
) -> None:
    deliveries: list[bytes] = []
    done = asyncio.Event()
    held: list[float] = []  # what rujuk_consumer_oldest_unacked_age_seconds shows, at the end

    async def slow(batch: list[Msg]) -> None:
        deliveries.extend(message.data for message in batch)
        await asyncio.sleep(ACK_WAIT * 3)  # e.g. a transaction behind a lock
        held.append(worker.oldest_unacked_age())
        for message in batch:
            await message.ack()
        done.set()

    worker = consumer(slow)
    await worker.start(js)
    await js.publish(SUBJECT, b"lambat")
    try:
        await asyncio.wait_for(done.wait(), ACK_WAIT * 6)
        await asyncio.sleep(ACK_WAIT + 1)  # a redelivery would have come by now
        info = await js.consumer_info(subjects.EVENTS_STREAM, "uji-redelivery")
        after = worker.oldest_unacked_age()
    finally:
        await worker.stop()
    assert deliveries == [b"lambat"]
    assert info.num_redelivered == 0
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert ACK_WAIT * 3 <= held[0] < ACK_WAIT * 5
    assert after == 0.0


async def test_a_consumer_made_with_a_longer_ack_wait_takes_the_current_one(
    js: JetStreamContext,
) -> None:
    old = ConsumerConfig(
        durable_name="uji-redelivery", ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0,
        filter_subject=SUBJECT,
    )  # fmt: skip
    await js.add_consumer(subjects.EVENTS_STREAM, config=old)

    async def nothing(batch: list[Msg]) -> None:
        for message in batch:
            await message.ack()

    worker = PullConsumer(SUBJECT, "uji-redelivery", subjects.EVENTS_STREAM, nothing)
    await worker.start(js)
    try:
        info = await js.consumer_info(subjects.EVENTS_STREAM, "uji-redelivery")
    finally:
        await worker.stop()
    assert info.config.ack_wait == ACK_WAIT_SECONDS


async def test_a_batch_slowed_by_the_database_is_applied_once_and_not_redelivered(
    js: JetStreamContext, server_database_url: str
) -> None:
    """The idempotent consumer on a real PostgreSQL whose table is locked for three times
    ack_wait: the batch waits, JetStream is told it is in progress, and once the lock goes
    every event has its effect once."""
    async with provisioned_database(server_database_url) as database:
        pool = await create_pool(database.admin_url, "intake")  # may add the test's table
        await pool.execute("CREATE TABLE seen (case_id text PRIMARY KEY)")
        reader = EventConsumer(
            service="uji", pool=pool, js=lambda: js, handlers={CaseClosed.event_type(): remember}
        )
        held = HeldConnection(lambda: pool)

        async def process(batch: list[Msg]) -> None:
            await reader.process_batch(batch, held)

        worker = PullConsumer(
            CaseClosed.subject(), "uji-slow", subjects.EVENTS_STREAM, process, ack_wait=ACK_WAIT
        )
        blocker = await pool.acquire()
        try:
            await blocker.execute("BEGIN; LOCK TABLE seen IN ACCESS EXCLUSIVE MODE")
            await worker.start(js)
            for number in range(5):
                await js.publish(CaseClosed.subject(), closing(number))
            await asyncio.sleep(ACK_WAIT * 3)  # the batch waits on the lock
            await blocker.execute("COMMIT")
            await eventually(lambda: seen_count(pool), equals=5)
            await asyncio.sleep(ACK_WAIT + 1)  # a redelivery would have come by now
            info = await js.consumer_info(subjects.EVENTS_STREAM, "uji-slow")
            processed = await pool.fetchval("SELECT count(*) FROM processed_events")
        finally:
            await worker.stop()
            await held.release()
            await pool.release(blocker)
            await pool.close()
    assert processed == 5
    assert info.num_redelivered == 0
    assert (info.num_ack_pending, info.num_pending) == (0, 0)


def closing(number: int) -> bytes:
    payload = CaseClosed(case_id=f"3514-ZZZZZZ{number:04d}", closed_by="uji", reason="selesai")
    return make_event(payload, source="/rujuk/test").to_bytes()


async def remember(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, CaseClosed)
    await conn.execute("INSERT INTO seen (case_id) VALUES ($1)", payload.case_id)


async def seen_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM seen")
    return count


async def eventually(
    read: Callable[[], Awaitable[int]], *, equals: int, seconds: float = 20
) -> None:
    deadline = time.monotonic() + seconds
    while (value := await read()) != equals:
        assert time.monotonic() < deadline, f"still {value}, not {equals}"
        await asyncio.sleep(0.1)
