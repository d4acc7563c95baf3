"""JetStream stream snapshots and restores through the server's own API, which nats-py does not
wrap: what `nats stream backup` and `nats stream restore` do.

- ``$JS.API.STREAM.SNAPSHOT.<stream>`` ``{"deliver_subject", "chunk_size"}`` answers the
  stream's configuration and state, then sends the stream's files (its messages and its
  consumers' state, packed by the server in an S2-compressed stream) to ``deliver_subject``.
  What arrives there (nats-server ``streamSnapshot``, the same from 2.10 to 2.15):

  - each full chunk with a reply ``$JS.SNAPSHOT.ACK.<stream>.<id>.<bytes>.<index>`` to be
    answered (flow control: at most 8 MiB unanswered; after 5 s without an answer the server
    gives up), its size and its number from 1 in the reply's last two tokens;
  - the last, shorter chunk without a reply (none if the snapshot is a whole number of chunks);
  - the end, an empty message: without headers if no full chunk was sent, else with the
    status ``204``; or, instead, an error status: ``408 No Interest``, ``408 No Flow
    Response``, ``500 <reason>``.

  The server sends no checksum or total: the chunks' sizes and numbers are checked as they
  come, and the file at the end must hold whole S2 frames (a lost last chunk ends it inside
  one; each frame carries the CRC of its data, which the server checks on restore).
- ``$JS.API.STREAM.RESTORE.<stream>`` ``{"config", "state"}`` answers a subject to send those
  chunks to, each answered by the server with an empty message, or a JSON error; an empty
  message ends the upload and is answered with the restored stream's information, or the error.
  The server drops a restore that gets no chunk for 5 s.

A restored stream keeps its sequence numbers, its messages' times and its consumers. It does
not know the message ids it stored before (JetStream's duplicate window starts empty), which is
why ``rujuk.backup`` reconciles what would be published again.
"""

import asyncio
import json
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

API_TIMEOUT_SECONDS = 10.0
CHUNK_BYTES = 128 * 1024
# A snapshot or restore with no chunk for this long has stalled (the server gives up after 5 s
# without one on a restore).
STALL_SECONDS = 30.0
# The server answers the end of an upload once it has rebuilt the stream from it.
RESTORE_FINISH_SECONDS = 600.0
SNAPSHOT_ACK_PREFIX = "$JS.SNAPSHOT.ACK."
# What an S2 stream (or a Snappy-framed one, which S2 readers also take) starts with.
S2_STREAM_IDENTIFIERS = (b"\xff\x06\x00\x00S2sTwO", b"\xff\x06\x00\x00sNaPpY")
S2_FRAME_HEADER_BYTES = 4


class SnapshotError(RuntimeError):
    """A snapshot or restore JetStream refused or did not finish; the message says which."""


class Delivery(Enum):
    """What one message on a snapshot's deliver subject is."""

    CHUNK = "chunk"  # data, to be written (and answered, if it has a reply)
    CONTROL = "control"  # a status without data that is not the end: answered, nothing written
    END = "end"


@dataclass
class ChunkTally:
    """What a snapshot's deliver subject has brought so far; ``read`` checks each message
    against it."""

    stream: str
    chunks: int = 0
    total_bytes: int = 0
    last_chunk_seen: bool = False  # a chunk without a reply: only the end may follow it

    def read(self, data: bytes, reply: str, headers: dict[str, str] | None) -> Delivery:
        """What this message is; a ``SnapshotError`` for an error status or a chunk out of
        place (one missing, a size other than the server's)."""
        status = (headers or {}).get("Status")
        if status == "204" or (not status and not data):
            return Delivery.END
        if status == "100":  # flow control or heartbeat in NATS' vocabulary: no data
            return Delivery.CONTROL
        if status:
            description = (headers or {}).get("Description", "")
            raise SnapshotError(f"snapshot of {self.stream}: {status} {description}".rstrip())
        if self.last_chunk_seen:
            raise SnapshotError(f"snapshot of {self.stream}: a chunk after the last one")
        if reply:
            self._check_numbered(len(data), reply)
        else:
            self.last_chunk_seen = True
        self.chunks += 1
        self.total_bytes += len(data)
        return Delivery.CHUNK

    def _check_numbered(self, size: int, reply: str) -> None:
        if not reply.startswith(SNAPSHOT_ACK_PREFIX):
            return  # another server's flow control: nothing to check it by
        *_, said_size, said_index = reply.split(".")
        if not (said_size.isdigit() and said_index.isdigit()):
            raise SnapshotError(f"snapshot of {self.stream}: chunk reply {reply!r} unreadable")
        if int(said_index) != self.chunks + 1:
            raise SnapshotError(
                f"snapshot of {self.stream}: chunk {said_index} came after chunk "
                f"{self.chunks} (a chunk was lost)"
            )
        if int(said_size) != size:
            raise SnapshotError(
                f"snapshot of {self.stream}: chunk {said_index} has {size} bytes, "
                f"the server sent {said_size}"
            )


def s2_frames_problem(file: BinaryIO) -> str | None:
    """Why ``file`` is not a whole S2 stream (frames read by their headers only, checksums
    left to the restore), or None."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if file.read(len(S2_STREAM_IDENTIFIERS[0])) not in S2_STREAM_IDENTIFIERS:
        return "it does not start as an S2 stream"
    offset = file.tell()
    while offset < size:
        header = file.read(S2_FRAME_HEADER_BYTES)
        if len(header) < S2_FRAME_HEADER_BYTES:
            return f"it ends inside the header of the frame at byte {offset} of {size}"
        offset += S2_FRAME_HEADER_BYTES + int.from_bytes(header[1:], "little")
        if offset > size:
            return f"it ends inside a frame: the frame wants {offset} bytes, the file has {size}"
        file.seek(offset)
    return None


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
    tally = ChunkTally(stream)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:

        async def on_delivery(message: Msg) -> None:
            progress.set()
            if finished.done():
                return
            try:
                kind = tally.read(message.data, message.reply, message.headers)
                if kind is Delivery.END:
                    finished.set_result(None)
                    return
                if kind is Delivery.CHUNK:
                    file.write(message.data)
            except SnapshotError as exc:
                finished.set_exception(exc)
                return
            except OSError as exc:  # the disk is full, say: the snapshot cannot be whole
                finished.set_exception(SnapshotError(f"snapshot of {stream}: {path}: {exc}"))
                return
            if message.reply:
                await nc.publish(message.reply, b"")

        subscription = await nc.subscribe(inbox, cb=on_delivery)
        try:
            answer = await _api(
                nc,
                f"$JS.API.STREAM.SNAPSHOT.{stream}",
                {"deliver_subject": inbox, "chunk_size": CHUNK_BYTES, "no_consumers": False},
            )
            await _until_finished(finished, progress, f"snapshot of {stream}")
        finally:
            await subscription.unsubscribe()
    with path.open("rb") as written:
        if problem := s2_frames_problem(written):
            raise SnapshotError(
                f"snapshot of {stream}: {path} is incomplete ({tally.chunks} chunks, "
                f"{tally.total_bytes} bytes): {problem}"
            )
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
            if reply := await _upload(nc, stream, deliver, chunk, STALL_SECONDS):
                _restore_answer(stream, reply)  # anything but an empty answer is an error
                raise SnapshotError(f"restore of {stream}: {reply[:500].decode(errors='replace')}")
    done = await _upload(nc, stream, deliver, b"", RESTORE_FINISH_SECONDS)
    state: dict[str, Any] = _restore_answer(stream, done).get("state") or {}
    return state


async def _upload(nc: NatsClient, stream: str, deliver: str, chunk: bytes, timeout: float) -> bytes:
    try:
        reply = await nc.request(deliver, chunk, timeout=timeout)
    except nats.errors.NoRespondersError:
        raise SnapshotError(
            f"restore of {stream}: the server no longer takes this restore (it drops one that "
            "failed, or that got no chunk for 5 s)"
        ) from None
    except TimeoutError:  # nats-py's own, or asyncio's: both are TimeoutError
        raise SnapshotError(f"restore of {stream}: no answer for {timeout:.0f} s") from None
    return reply.data


def _restore_answer(stream: str, data: bytes) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise SnapshotError(
            f"restore of {stream}: unreadable answer {data[:200].decode(errors='replace')!r}"
        ) from None
    if error := answer.get("error"):
        raise SnapshotError(f"restore of {stream}: {error.get('description', error)}")
    return answer
