"""The idempotent consumer against a real PostgreSQL: a batch runs in one transaction without
savepoints; when one event fails, the batch runs again with a savepoint per event, so the good
events commit once, the rejected one is parked, the failing one is retried, and the metrics
count what committed only."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import CaseClosed, EventPayload
from rujuk_runtime.consumer import EventConsumer, Rejected
from rujuk_runtime.db import Connection, create_pool
from rujuk_runtime.outbox import add_to_outbox
from tests.conftest import provisioned_database

pytestmark = pytest.mark.integration


@dataclass
class FakeMessage:
    subject: str
    data: bytes


def closing(number: int, reason: str) -> FakeMessage:
    event = make_event(
        CaseClosed(case_id=f"3514-ZZZZZZ{number:04d}", closed_by="uji", reason=reason),
        source="/rujuk/test",
    )
    return FakeMessage(CaseClosed.subject(), event.to_bytes())


async def remember(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    assert isinstance(payload, CaseClosed)
    await conn.execute("INSERT INTO seen (case_id) VALUES ($1)", payload.case_id)
    if payload.reason == "tolak":
        raise Rejected("ditolak / refused for the test")
    if payload.reason == "rusak":
        raise RuntimeError("handler broke (for the test)")


@pytest.fixture
async def pool(server_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with provisioned_database(server_database_url) as database:
        # The administrator, who (unlike intake's role) may add the test's own table.
        pool = await create_pool(database.admin_url, "intake")
        await pool.execute("CREATE TABLE seen (case_id text PRIMARY KEY)")
        try:
            yield pool
        finally:
            await pool.close()


def consumer(pool: asyncpg.Pool) -> EventConsumer:
    return EventConsumer(
        service="uji",
        pool=pool,
        js=lambda: None,  # type: ignore[arg-type, return-value]  # nothing is published here
        handlers={CaseClosed.event_type(): remember},
    )


async def test_a_failing_event_is_its_own_and_the_others_commit_once(pool: asyncpg.Pool) -> None:
    messages = [
        closing(1, "selesai"),
        closing(2, "tolak"),
        closing(3, "selesai"),
        closing(4, "rusak"),
        closing(5, "selesai"),
    ]
    reader = consumer(pool)
    outcome = await reader._handle_in_transaction(messages)  # type: ignore[arg-type]

    assert [m.data for m in outcome.ack] == [messages[i].data for i in (0, 2, 4)]
    assert [(m.data, reason) for m, reason in outcome.park] == [
        (messages[1].data, "rejected: ditolak / refused for the test")
    ]
    assert [m.data for m in outcome.retry] == [messages[3].data]
    seen = {row["case_id"] for row in await pool.fetch("SELECT case_id FROM seen")}
    assert seen == {"3514-ZZZZZZ0001", "3514-ZZZZZZ0003", "3514-ZZZZZZ0005"}
    processed = await pool.fetchval("SELECT count(*) FROM processed_events")
    assert processed == 3
    # Counted once, though the good events ran twice (the first run was rolled back).
    assert (reader.stats.processed, reader.stats.duplicates) == (3, 0)

    again = await reader._handle_in_transaction(messages[:1])  # type: ignore[arg-type]
    assert again.ack == messages[:1]
    assert (reader.stats.processed, reader.stats.duplicates) == (3, 1)


async def test_a_batch_of_good_events_commits_in_one_run(pool: asyncpg.Pool) -> None:
    reader = consumer(pool)
    messages = [closing(n, "selesai") for n in range(10, 20)]
    outcome = await reader._handle_in_transaction(messages)  # type: ignore[arg-type]
    assert outcome.ack == messages
    assert (outcome.park, outcome.retry) == ([], [])
    assert await pool.fetchval("SELECT count(*) FROM seen") == 10
    assert reader.stats.processed == 10


async def test_the_same_event_twice_in_one_batch_is_handled_once(pool: asyncpg.Pool) -> None:
    reader = consumer(pool)
    twice = closing(30, "selesai")
    outcome = await reader._handle_in_transaction([twice, twice])  # type: ignore[list-item]
    assert outcome.ack == [twice, twice]
    assert await pool.fetchval("SELECT count(*) FROM seen") == 1
    assert (reader.stats.processed, reader.stats.duplicates) == (1, 1)


def batch_consumer(pool: asyncpg.Pool, calls: list[list[str]]) -> EventConsumer:
    """Closings handled by a batch handler that records the case ids of each call."""

    async def remember_all(conn: Connection, events: list[tuple[CloudEvent, EventPayload]]) -> None:
        calls.append([event.subject or "" for event, _ in events])
        for event, payload in events:
            await remember(conn, event, payload)

    return EventConsumer(
        service="uji",
        pool=pool,
        js=lambda: None,  # type: ignore[arg-type, return-value]  # nothing is published here
        handlers={},
        batch_handlers={CaseClosed.event_type(): remember_all},
    )


async def test_a_batch_handler_takes_the_new_events_of_a_batch_in_one_call_in_order(
    pool: asyncpg.Pool,
) -> None:
    calls: list[list[str]] = []
    reader = batch_consumer(pool, calls)
    seen_before = closing(40, "selesai")
    await reader._handle_in_transaction([seen_before])  # type: ignore[list-item]
    calls.clear()

    messages = [closing(n, "selesai") for n in (41, 42)] + [seen_before, closing(43, "selesai")]
    outcome = await reader._handle_in_transaction(messages)  # type: ignore[arg-type]

    assert outcome.ack == messages
    # The duplicate is skipped; it splits the run but the order is kept.
    assert calls == [["3514-ZZZZZZ0041", "3514-ZZZZZZ0042"], ["3514-ZZZZZZ0043"]]
    assert await pool.fetchval("SELECT count(*) FROM seen") == 4
    assert (reader.stats.processed, reader.stats.duplicates) == (4, 1)


async def test_when_a_batch_handler_fails_each_event_is_judged_on_its_own(
    pool: asyncpg.Pool,
) -> None:
    calls: list[list[str]] = []
    reader = batch_consumer(pool, calls)
    messages = [closing(50, "selesai"), closing(51, "tolak"), closing(52, "rusak")]
    outcome = await reader._handle_in_transaction(messages)  # type: ignore[arg-type]

    assert outcome.ack == messages[:1]
    assert [m for m, _ in outcome.park] == messages[1:2]
    assert outcome.retry == messages[2:]
    # One call for the whole run (rolled back), then one per event.
    assert len(calls[0]) == 3
    assert calls[1:] == [["3514-ZZZZZZ0050"], ["3514-ZZZZZZ0051"], ["3514-ZZZZZZ0052"]]
    seen = [row["case_id"] for row in await pool.fetch("SELECT case_id FROM seen")]
    assert seen == ["3514-ZZZZZZ0050"]
    assert reader.stats.processed == 1


@dataclass
class AckedMessage(FakeMessage):
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


async def announce(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    await remember(conn, event, payload)
    await add_to_outbox(conn, make_event(payload, source="/rujuk/uji"))


async def test_the_relay_is_woken_only_after_a_batch_that_staged_events(
    pool: asyncpg.Pool,
) -> None:
    wakes: list[str] = []
    reader = consumer(pool)
    reader.after_commit = lambda: wakes.append("woken")
    quiet = [AckedMessage(m.subject, m.data) for m in (closing(40, "selesai"), closing(41, "x"))]
    await reader.process_batch(quiet)  # type: ignore[arg-type]
    assert all(m.acked for m in quiet)
    assert wakes == []  # nothing staged: no relay pass to find an empty outbox

    reader.handlers[CaseClosed.event_type()] = announce
    loud = [AckedMessage(m.subject, m.data) for m in (closing(42, "selesai"), closing(43, "x"))]
    await reader.process_batch(loud)  # type: ignore[arg-type]
    assert all(m.acked for m in loud)
    assert wakes == ["woken"]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 2
