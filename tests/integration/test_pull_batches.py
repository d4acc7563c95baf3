"""The durable pull loop against a real nats-server: a consumer at its max_ack_pending, whose
acks trail its batches (audit's writer commits one batch while it reads the next), still reads
full batches, not a full one and then one message at a time."""

import asyncio
import contextlib

import nats
import pytest
from nats.aio.msg import Msg

from rujuk_contracts import subjects
from rujuk_runtime.bus import ensure_streams
from rujuk_runtime.pull import PullConsumer

pytestmark = pytest.mark.integration

SUBJECT = "rujuk.evt.uji.pull"


async def test_acks_that_trail_their_batch_still_let_full_batches_through(clean_bus: str) -> None:
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    await ensure_streams(js)
    sizes: list[int] = []
    acking: set[asyncio.Task[None]] = set()
    done = asyncio.Event()

    async def ack_later(batch: list[Msg]) -> None:
        await asyncio.sleep(0.05)  # the commit of this batch, while the next is fetched
        for message in batch:
            await message.ack()

    async def process(batch: list[Msg]) -> None:
        sizes.append(len(batch))
        task = asyncio.create_task(ack_later(batch))
        acking.add(task)
        task.add_done_callback(acking.discard)
        if sum(sizes) >= 40:
            done.set()

    for n in range(40):
        await js.publish(SUBJECT, str(n).encode())
    consumer = PullConsumer(SUBJECT, "uji-pull", subjects.EVENTS_STREAM, process, batch_size=10,
                            max_ack_pending=10)  # fmt: skip
    await consumer.start(js)
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await consumer.stop()
        for task in list(acking):
            with contextlib.suppress(Exception):
                await task
        await connection.close()

    # [10, 10, 10, 10] on a quiet machine; without taking what follows the one message the
    # long wait brings, [10, 1, 9, 1, 1, 8, ...]: eight batches or more.
    assert sum(sizes) == 40
    assert len(sizes) <= 5, sizes
