"""The audit service on real NATS and PostgreSQL: every event on the bus, once, in stream order."""

import asyncio
from collections.abc import Awaitable, Callable

import nats
import pytest

from audit.bootstrap import DURABLE, create_runtime
from audit.cli import case_history, verify_ledger
from audit.settings import AuditSettings
from rujuk_contracts import CloudEvent, model_for_type, subjects
from rujuk_runtime.bus import DLQ_REASON_HEADER, ensure_streams, event_headers
from tests.unit.test_audit_chain import CASE_ID, case_story

pytestmark = pytest.mark.integration

OTHER_CASE_ID = "3513-0123456789"


def subject_of(event: CloudEvent) -> str:
    model = model_for_type(event.type)
    assert model is not None
    return model.subject()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.1)


async def test_every_event_on_the_bus_is_recorded_once_in_stream_order(
    database_url: str, clean_bus: str
) -> None:
    events = [
        event
        for pair in zip(case_story(), case_story(OTHER_CASE_ID), strict=True)
        for event in pair
    ]
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    await ensure_streams(js)
    for event in events:
        await js.publish(subject_of(event), event.to_bytes(), headers=event_headers(event.id, None))
    # The same event again, past JetStream's duplicate window (a new message id), and garbage.
    await js.publish(
        subject_of(events[0]), events[0].to_bytes(), headers={"Nats-Msg-Id": "republished"}
    )
    await js.publish(subjects.event_subject("case", "reported"), b"not json at all")
    runtime = create_runtime(AuditSettings(nats_url=clean_bus, database_url=database_url))

    try:
        async with runtime.running():

            async def all_recorded() -> bool:
                count = await runtime.pool.fetchval("SELECT count(*) FROM ledger")
                info = await js.consumer_info(subjects.EVENTS_STREAM, DURABLE)
                return bool(
                    count >= len(events) and info.num_pending == 0 and info.num_ack_pending == 0
                )

            await eventually(all_recorded)
            order = await runtime.pool.fetch("SELECT seq, event_id FROM ledger ORDER BY seq")
        parked = await js.get_last_msg(subjects.DLQ_STREAM, subjects.dead_letter("audit"))
    finally:
        await connection.close()

    assert [row["event_id"] for row in order] == [event.id for event in events]
    assert [row["seq"] for row in order] == list(range(1, len(events) + 1))
    assert (await verify_ledger(database_url)).ok
    assert [entry.event_id for entry in await case_history(database_url, CASE_ID)] == [
        event.id for event in events[::2]
    ]
    assert parked.data == b"not json at all"
    assert parked.headers is not None
    assert "not JSON" in parked.headers[DLQ_REASON_HEADER]


async def test_a_delivery_lost_on_the_way_is_read_from_the_stream_in_its_place(
    database_url: str, clean_bus: str
) -> None:
    """A message JetStream delivered but audit never received (as when NATS restarts) comes back
    only after ack_wait (30 s), behind newer ones. Audit sees the hole in the stream sequence
    and reads the missing messages from the stream: the ledger keeps stream order at once."""
    events = case_story()
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    await ensure_streams(js)
    for event in events:
        await js.publish(subject_of(event), event.to_bytes(), headers=event_headers(event.id, None))
    runtime = create_runtime(AuditSettings(nats_url=clean_bus, database_url=database_url))
    consumer = next(c for c in runtime.pull_consumers if c.durable == DURABLE)
    # The first two are delivered to nobody who will ever ack them.
    lost = await js.pull_subscribe(
        subjects.EVENTS_WILDCARD, durable=DURABLE, stream=subjects.EVENTS_STREAM,
        config=consumer.config(),
    )  # fmt: skip
    assert len(await lost.fetch(2, timeout=5)) == 2
    try:
        async with runtime.running():

            async def all_recorded() -> bool:
                return bool(await runtime.pool.fetchval("SELECT count(*) FROM ledger") >= 5)

            await eventually(all_recorded, seconds=10)  # well before the 30 s ack_wait
            order = await runtime.pool.fetch("SELECT event_id FROM ledger ORDER BY seq")
            position = await runtime.pool.fetchval("SELECT last_seq FROM stream_position")
    finally:
        await connection.close()
    assert [row["event_id"] for row in order] == [event.id for event in events]
    assert position == len(events)
