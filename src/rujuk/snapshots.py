"""JetStream stream snapshots and restores through the server's own API, which nats-py does not
wrap: what `nats stream backup` and `nats stream restore` do.

- ``$JS.API.STREAM.SNAPSHOT.<stream>`` ``{"deliver_subject", "chunk_size"}`` answers the
  stream's configuration and state, then sends the stream's files (its messages and its
  consumers' state, packed by the server) to ``deliver_subject`` in chunks, each to be
  answered (flow control), and an empty message at the end.
- ``$JS.API.STREAM.RESTORE.<stream>`` ``{"config", "state"}`` answers a subject to send those
  chunks to, each answered by the server; an empty message ends the upload and is answered
  with the restored stream's state, or the error.

A restored stream keeps its sequence numbers, its messages' times and its consumers. It does
not know the message ids it stored before (JetStream's duplicate window starts empty), which is
why ``rujuk.backup`` reconciles what would be published again.
"""

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

API_TIMEOUT_SECONDS = 10.0
CHUNK_BYTES = 128 * 1024
# A snapshot or restore with no chunk for this long has stalled (the server gives up after 5 s
# without one on a restore).
STALL_SECONDS = 30.0


class SnapshotError(RuntimeError):
    """A snapshot or restore JetStream refused or did not finish; the message says which."""


async def _api(nc: NatsClient, subject: str, request: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(request).encode(), timeout=API_TIMEOUT_SECONDS)
    answer: dict[str, Any] = json.loads(reply.data)
    if answer.get("error"):
        error = answer["error"]
        raise SnapshotError(f"{subject}: {error.get('description', error)}")
    return answer


async def save_snapshot(nc: NatsClient, stream: str, path: Path) -> dict[str, Any]:
    """Snapshot ``stream`` (messages and consumers) into ``path`` (0600); return its
    configuration and state as JetStream gave them (what a restore needs)."""
    inbox = nc.new_inbox()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    progress = asyncio.Event()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:

        async def on_chunk(message: Msg) -> None:
            progress.set()
            if finished.done():
                return
            if message.headers and message.headers.get("Status"):
                finished.set_exception(
                    SnapshotError(f"snapshot of {stream}: {dict(message.headers)}")
                )
                return
            if not message.data:  # the end
                finished.set_result(None)
                return
            file.write(message.data)
            if message.reply:
                await nc.publish(message.reply, b"")

        subscription = await nc.subscribe(inbox, cb=on_chunk)
        try:
            answer = await _api(
                nc,
                f"$JS.API.STREAM.SNAPSHOT.{stream}",
                {"deliver_subject": inbox, "chunk_size": CHUNK_BYTES, "no_consumers": False},
            )
            await _until_finished(finished, progress, f"snapshot of {stream}")
        finally:
            await subscription.unsubscribe()
    return {"config": answer["config"], "state": answer["state"]}


async def _until_finished(
    finished: "asyncio.Future[None]", progress: asyncio.Event, what: str
) -> None:
    while not finished.done():
        progress.clear()
        try:
            await asyncio.wait_for(asyncio.shield(progress.wait()), STALL_SECONDS)
        except TimeoutError:
            if not finished.done():
                raise SnapshotError(f"{what}: nothing for {STALL_SECONDS:.0f} s") from None
    await finished


async def restore_snapshot(
    nc: NatsClient, stream: str, meta: dict[str, Any], path: Path
) -> dict[str, Any]:
    """Restore ``stream`` from a snapshot ``save_snapshot`` wrote (``meta``: what it returned);
    the stream must not exist. Returns the restored stream's state."""
    answer = await _api(
        nc,
        f"$JS.API.STREAM.RESTORE.{stream}",
        {"config": meta["config"], "state": meta["state"]},
    )
    deliver = answer["deliver_subject"]
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            reply = await nc.request(deliver, chunk, timeout=STALL_SECONDS)
            if reply.data:
                raise SnapshotError(f"restore of {stream}: {reply.data.decode(errors='replace')}")
    done = await nc.request(deliver, b"", timeout=max(STALL_SECONDS, 600.0))
    result: dict[str, Any] = json.loads(done.data)
    if result.get("error"):
        raise SnapshotError(f"restore of {stream}: {result['error'].get('description')}")
    state: dict[str, Any] = result.get("state") or {}
    return state
