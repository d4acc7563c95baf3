"""The ledger writer commits batches one at a time in stream order, one batch behind the
consumer: what ``process`` returned from is committed by the next ``process`` or ``drain``."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from audit.cli import verify_ledger
from audit.writer import LedgerWriter
from rujuk_contracts import CloudEvent
from rujuk_runtime.bus import DLQ_REASON_HEADER
from rujuk_runtime.db import create_pool
from tests.unit.test_audit_chain import case_story

pytestmark = pytest.mark.integration


class FakeMsg:
    def __init__(self, data: bytes, acks: list[bytes]) -> None:
        self.data, self.subject, self.headers = data, "rujuk.evt.case.reported", None
        self._acks = acks

    async def ack(self) -> None:
        await asyncio.sleep(0)
        self._acks.append(self.data)

    async def nak(self, delay: float | None = None) -> None:
        raise AssertionError("nothing should be nak'ed")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "audit")
    yield pool
    await pool.close()


async def test_batches_commit_in_order_one_behind_and_drain_finishes_the_last(
    pool: asyncpg.Pool, database_url: str
) -> None:
    stories = [case_story(f"3514-{n:010}") for n in range(4)]
    acks: list[bytes] = []
    writer = LedgerWriter("audit", lambda: pool, lambda: Any)  # type: ignore[arg-type,return-value]
    batches = [[FakeMsg(e.to_bytes(), acks) for e in story] for story in stories]

    for batch in batches:
        await writer.process(batch)  # type: ignore[arg-type]
    await writer.drain()

    rows = await pool.fetch("SELECT event_id FROM ledger ORDER BY seq")
    assert [r["event_id"] for r in rows] == [e.id for story in stories for e in story]
    assert acks == [m.data for batch in batches for m in batch]  # acked after commit, in order
    assert (await verify_ledger(database_url)).ok


async def test_a_cancelled_consumer_does_not_abort_the_commit_in_flight(
    pool: asyncpg.Pool,
) -> None:
    acks: list[bytes] = []
    writer = LedgerWriter("audit", lambda: pool, lambda: Any)  # type: ignore[arg-type,return-value]
    first = [FakeMsg(e.to_bytes(), acks) for e in case_story("3514-0000000001")]
    second = [FakeMsg(e.to_bytes(), acks) for e in case_story("3514-0000000002")]
    await writer.process(first)  # type: ignore[arg-type]
    consumer = asyncio.create_task(writer.process(second))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    consumer.cancel()  # what PullConsumer.stop does
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await writer.drain()

    assert await pool.fetchval("SELECT count(*) FROM ledger") == len(first)
    assert acks == [m.data for m in first]


class FakeJetStream:
    def __init__(self) -> None:
        self.parked: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        self.parked.append((subject, data, headers))


async def test_an_event_with_no_canonical_form_is_parked_and_the_rest_chained(
    pool: asyncpg.Pool,
) -> None:
    story = case_story("3514-0000000003")
    document = story[1].model_dump(mode="json", exclude_none=True)
    document["data"] = {**document["data"], "huge": 2**60}  # beyond RFC 8785's integers
    unsafe = CloudEvent.model_validate(document)
    acks: list[bytes] = []
    js = FakeJetStream()
    writer = LedgerWriter("audit", lambda: pool, lambda: js)  # type: ignore[arg-type,return-value]
    batch = [FakeMsg(e.to_bytes(), acks) for e in [story[0], unsafe, *story[2:]]]

    await writer.process(batch)  # type: ignore[arg-type]
    await writer.drain()

    rows = await pool.fetch("SELECT seq, event_id FROM ledger ORDER BY seq")
    assert [r["event_id"] for r in rows] == [story[0].id, *(e.id for e in story[2:])]
    assert [r["seq"] for r in rows] == list(range(1, len(story)))
    assert len(js.parked) == 1
    assert "no RFC 8785 canonical form" in js.parked[0][2][DLQ_REASON_HEADER]
    assert sorted(acks) == sorted(m.data for m in batch)
