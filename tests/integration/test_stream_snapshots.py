"""Stream snapshots and restores against the real nats-server: a snapshot of one chunk or of
many (the server ends the latter with a ``204`` status, not an empty message), and a restore
the server refuses."""

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig

from rujuk.snapshots import (
    CHUNK_BYTES,
    SnapshotError,
    restore_snapshot,
    s2_frames_problem,
    save_snapshot,
)

pytestmark = pytest.mark.integration

BODY_BYTES = 2048


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[NatsClient]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


@pytest.fixture
async def stream(bus: NatsClient) -> AsyncIterator[str]:
    """A stream of the test's own (the session's bus is shared), removed afterwards."""
    name = f"SNAPTEST_{uuid.uuid4().hex[:8].upper()}"
    js = bus.jetstream()
    await js.add_stream(name=name, subjects=[f"snaptest.{name.lower()}.>"])
    yield name
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)


async def _fill(bus: NatsClient, stream: str, messages: int) -> list[bytes]:
    """Random bodies: they do not compress, so the snapshot is as large as the stream."""
    js = bus.jetstream()
    bodies = [os.urandom(BODY_BYTES) for _ in range(messages)]
    for body in bodies:
        await js.publish(f"snaptest.{stream.lower()}.body", body)
    return bodies


@pytest.mark.parametrize(
    ("messages", "least_chunks"),
    [(3, 1), (3 * CHUNK_BYTES // BODY_BYTES, 3)],
    ids=["within-one-chunk", "several-chunks"],
)
async def test_snapshot_restores_the_stream_and_its_consumers(
    bus: NatsClient, stream: str, tmp_path: Path, messages: int, least_chunks: int
) -> None:
    bodies = await _fill(bus, stream, messages)
    js = bus.jetstream()
    await js.add_consumer(stream, ConsumerConfig(durable_name="reader"))
    path = tmp_path / f"{stream}.snapshot"

    meta = await save_snapshot(bus, stream, path)

    assert meta["state"]["messages"] == messages
    assert path.stat().st_size > (least_chunks - 1) * CHUNK_BYTES
    assert path.stat().st_mode & 0o777 == 0o600
    await js.delete_stream(stream)
    state = await restore_snapshot(bus, stream, meta, path)
    assert (state["messages"], state["last_seq"]) == (messages, messages)
    assert (await js.get_msg(stream, messages)).data == bodies[-1]
    assert (await js.consumer_info(stream, "reader")).name == "reader"


async def test_a_snapshot_cut_short_is_refused_on_restore_with_the_servers_reason(
    bus: NatsClient, stream: str, tmp_path: Path
) -> None:
    await _fill(bus, stream, 3 * CHUNK_BYTES // BODY_BYTES)
    path = tmp_path / f"{stream}.snapshot"
    meta = await save_snapshot(bus, stream, path)
    await bus.jetstream().delete_stream(stream)
    path.write_bytes(path.read_bytes()[: CHUNK_BYTES + 100])
    with path.open("rb") as cut:  # what save_snapshot checks its file by
        assert "ends inside a frame" in (s2_frames_problem(cut) or "")

    with pytest.raises(SnapshotError, match=f"restore of {stream}: restore failed: s2: corrupt"):
        await restore_snapshot(bus, stream, meta, path)


async def test_a_restore_the_server_refuses_says_why(
    bus: NatsClient, stream: str, tmp_path: Path
) -> None:
    """The stream still exists: the server's own words come back."""
    await _fill(bus, stream, 3)
    path = tmp_path / f"{stream}.snapshot"
    meta = await save_snapshot(bus, stream, path)

    with pytest.raises(SnapshotError, match="already in use"):
        await restore_snapshot(bus, stream, meta, path)
