"""From the bus into the ledger: each pulled batch of events chained in stream order."""

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from audit import store, tree
from audit.chain import UnrepresentableEvent, canonical_texts
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CloudEvent, EventError, parse_envelope
from rujuk_runtime.bus import consumer_name, park
from rujuk_runtime.db import HeldConnection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.messages import message_id, stream_sequence
from rujuk_runtime.metrics import EVENTS_CONSUMED
from rujuk_runtime.telemetry import batch_span, record_span

log = get_logger(__name__)

RETRY_DELAY_SECONDS = 1.0
MAX_RETRY_DELAY_SECONDS = 5.0


class LedgerWriter:
    """Appends each batch of bus messages to the ledger in one transaction, in stream order.

    Every valid CloudEvent, of any type or version, is chained (one lock, one head read, one
    multi-row INSERT per batch); an event id already in the ledger takes no seq, so
    redelivery is harmless. A message that is not a CloudEvent, or has no canonical form, is
    parked with the reason. Messages are acked after the commit; if the database fails, the
    batch is retried in place (held with in_progress) until it commits, so nothing newer is
    chained before it.

    Pipelined by one batch: ``process`` parses a batch, waits for the previous batch's
    commit, then starts this one's and returns, so the next fetch from NATS overlaps it.
    Commits still run one at a time in stream order (each attaches to the head the last one
    left); ``drain`` waits for the one in flight (call it before the pool closes).
    """

    def __init__(
        self,
        service: str,
        pool: Callable[[], asyncpg.Pool],
        js: Callable[[], JetStreamContext],
        on_appended: Callable[[int], None] = lambda count: None,
        *,
        public_key: bytes | None = None,
    ) -> None:
        self.service = service
        self._pool = pool
        self._js = js
        self._on_appended = on_appended
        # A span per appended event cost ~35% of the writer's CPU even with no exporter (the
        # SDK makes and ends every span). Record them only when they are exported, by the
        # rule rujuk_runtime.telemetry.configure_tracing applies.
        self.spans = _exporting_spans()
        self._in_flight: asyncio.Task[None] | None = None
        # Batches commit one after another: on one connection kept for them (no reset round
        # trip per batch); given back to the pool after a failure and at stop.
        self._held = HeldConnection(pool)
        self.closing = False  # set on stop: a batch the database refuses is left to redelivery
        self._position: int | None = None  # last RUJUK_EVENTS sequence read
        self._public_key = public_key  # old checkpoints' key, for the switch to the tree
        self._tree_ready = False

    async def process(self, batch: list[Msg]) -> None:
        batch, position = await self._in_stream_order(batch)
        events: list[CloudEvent] = []
        valid: list[Msg] = []
        to_park: list[tuple[Msg, str]] = []
        for message in batch:
            try:
                events.append(parse_envelope(message.data))
                valid.append(message)
            except EventError as exc:
                to_park.append((message, str(exc)))
        # Canonical JSON needs no seq: made here, while the previous batch commits.
        texts = canonical_texts(events)
        await self._finish_in_flight()
        self._in_flight = asyncio.create_task(
            self._commit(batch, events, texts, valid, to_park, position),
            name="audit-ledger-commit",
        )

    async def _in_stream_order(self, batch: list[Msg]) -> tuple[list[Msg], int | None]:
        """The batch in stream order, with every message between the last one read and this
        batch's last read from the stream itself where its delivery is missing: JetStream
        redelivers a message lost on the way (e.g. while NATS restarts) only after ack_wait,
        behind newer ones. Returns the position to record with the batch."""
        numbered: list[tuple[int, Msg]] = []
        for message in batch:
            seq = stream_sequence(message)
            if seq is None:  # not JetStream messages (e.g. a test's): as they come
                return batch, None
            numbered.append((seq, message))
        numbered.sort(key=lambda pair: pair[0])
        if self._position is None:
            self._position = await self._recorded_position()
        last = max(seq for seq, _ in numbered)
        if self._position is None:  # nothing recorded yet: from this batch on
            self._position = last
            return [m for _, m in numbered], last
        present = {seq for seq, _ in numbered}
        missing = [seq for seq in range(self._position + 1, last) if seq not in present]
        if len(missing) > MAX_GAP:
            log.warning("stream gap too wide to fill", missing=len(missing), after=self._position)
            missing = []
        for seq in missing:
            fetched = await self._from_stream(seq)
            if fetched is not None:
                numbered.append((seq, fetched))  # type: ignore[arg-type]
        if missing:
            log.info("read from the stream what was not delivered", count=len(missing))
            numbered.sort(key=lambda pair: pair[0])
        self._position = max(self._position, last)
        return [m for _, m in numbered], self._position

    async def _recorded_position(self) -> int | None:
        while True:  # the database may be away right now: wait for it, as appends do
            try:
                async with self._pool().acquire() as conn:
                    return await store.stream_position(conn, subjects.EVENTS_STREAM)
            except Exception as exc:
                log.warning("cannot read the stream position yet", error=type(exc).__name__)
                await asyncio.sleep(RETRY_DELAY_SECONDS)

    async def _from_stream(self, seq: int) -> "_FromStream | None":
        try:
            raw = await self._js().get_msg(subjects.EVENTS_STREAM, seq)
        except NotFoundError:  # removed from the stream (limits): nothing to keep in order
            return None
        return _FromStream(raw.subject or "", raw.data or b"", raw.headers, seq)

    async def close(self) -> None:
        """On stop: finish the batch in flight, without waiting for a database that is away."""
        self.closing = True
        await self.drain()

    async def drain(self) -> None:
        """Wait for the batch being committed, if any, and give the writer's connection back
        to the pool (which can then close)."""
        await self._finish_in_flight()
        await self._held.release()

    async def _finish_in_flight(self) -> None:
        """Wait for the batch being committed, if any (its failures are handled within)."""
        if self._in_flight is not None:
            # Shielded: a consumer cancelled while waiting must not abort a commit halfway.
            await asyncio.shield(self._in_flight)
            self._in_flight = None

    async def _commit(
        self,
        batch: list[Msg],
        events: list[CloudEvent],
        texts: list[str | UnrepresentableEvent],
        valid: list[Msg],
        to_park: list[tuple[Msg, str]],
        position: int | None,
    ) -> None:
        try:
            await self._append(batch, events, texts, valid, to_park, position)
        except Exception:  # unacked messages come back after ack_wait
            log.exception("ledger batch: parking or acking failed", size=len(batch))

    async def _append_until_committed(
        self,
        batch: list[Msg],
        events: list[CloudEvent],
        texts: list[str | UnrepresentableEvent],
        position: int | None,
    ) -> store.BatchAppend | None:
        """Retry the batch in place while the database is away. A nak would let newer
        messages be fetched and chained first, breaking stream order; instead the batch is
        held (in_progress keeps JetStream from redelivering it) until it commits."""
        attempt = 0
        while True:
            try:
                async with self._held.use() as conn:
                    if not self._tree_ready:  # once: a ledger from before the tree gets one
                        switch = await tree.ensure_tree(conn, public_key=self._public_key)
                        if switch.built:
                            log.info("merkle tree built over the ledger", leaves=switch.built)
                        self._tree_ready = True
                    return await store.append_batch(
                        conn,
                        events,
                        texts=texts,
                        position=None if position is None else (subjects.EVENTS_STREAM, position),
                    )
            except Exception as exc:  # nothing committed
                attempt += 1
                if isinstance(exc, tree.TreeSwitchRefused):  # nothing is sealed over tampering
                    log.error("ledger not appended: its chain does not verify", reason=str(exc))
                log.warning("ledger batch failed, retrying in place", error=type(exc).__name__,
                            detail=str(exc)[:200], size=len(batch), attempt=attempt)  # fmt: skip
                if self.closing:
                    return None
                for message in batch:
                    with contextlib.suppress(Exception):
                        await message.in_progress()
                await asyncio.sleep(min(RETRY_DELAY_SECONDS * attempt, MAX_RETRY_DELAY_SECONDS))

    async def _append(
        self,
        batch: list[Msg],
        events: list[CloudEvent],
        texts: list[str | UnrepresentableEvent],
        valid: list[Msg],
        to_park: list[tuple[Msg, str]],
        position: int | None,
    ) -> None:
        started = time.time_ns()
        with batch_span(
            f"{self.service} append batch",
            (event.traceparent for event in events),
            {"messaging.operation.type": "process", "messaging.batch.message_count": len(batch)},
        ):
            result = await self._append_until_committed(batch, events, texts, position)
        if result is None:  # stopping with the database away: JetStream redelivers, in order
            return
        if result.entries:
            self._on_appended(len(result.entries))
        self._observe(events, result, started, time.time_ns())
        for index, reason in result.refused:
            to_park.append((valid[index], f"rejected: {reason}"))
        refused = {index for index, _ in result.refused}
        for message, reason in to_park:
            await park(self._js(), self.service, subject=message.subject, data=message.data,
                       reason=reason, message_id=message_id(message),
                       consumer=consumer_name(message))  # fmt: skip
            await message.ack()
        for index, message in enumerate(valid):
            if index not in refused:
                await message.ack()
        if result.duplicates:
            log.info("events already in the ledger", count=len(result.duplicates))
        log.debug("ledger batch", size=len(batch), recorded=len(result.entries))

    def _observe(
        self, events: list[CloudEvent], result: store.BatchAppend, started: int, ended: int
    ) -> None:
        """One span per appended event, in that event's trace (when spans are exported), and
        the consumed-events count (one increment per type and outcome)."""
        seqs = {entry.event_id: entry.seq for entry in result.entries}
        refused = {index for index, _ in result.refused}
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        for index, event in enumerate(events):
            if index in refused:
                outcome = "parked"
            elif event.id in seqs:
                outcome = "processed"
                if self.spans:
                    record_span(
                        f"audit append {event.type}",
                        event.traceparent,
                        {"rujuk.case_id": event.subject, "rujuk.event_id": event.id,
                         "rujuk.event_type": event.type, "rujuk.ledger_seq": seqs[event.id]},
                        started,
                        ended,
                    )  # fmt: skip
            else:
                outcome = "duplicate"
            counts[event.type, outcome] += 1
        for (event_type, outcome), count in counts.items():
            EVENTS_CONSUMED.labels(self.service, event_type, outcome).inc(count)


def _exporting_spans() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


MAX_GAP = 10_000  # more missing than this is not a lost delivery (e.g. a recreated consumer)


@dataclass
class _FromStream:
    """A message read from the stream by its sequence because its delivery never came: there
    is nothing to acknowledge; its late redelivery finds the event in the ledger."""

    subject: str
    data: bytes
    headers: dict[str, str] | None
    seq: int

    async def ack(self) -> None:
        return None

    async def in_progress(self) -> None:
        return None
