"""Audit's bus door: what it does with each message it reads.

- Every event on ``rujuk.evt.>`` is chained onto the ledger. The default path is the ledger
  writer (``audit.writer.LedgerWriter.process``, a batch processor of its own: it keeps stream
  order, pipelines commits and holds a connection, which makes it a room of its own rather
  than a handler here); ``append_handler`` is the per-event path through the runtime's
  generic idempotent consumer, kept for comparison in bench/audit_append.py.
- Every message any service parked on the dead-letter stream is counted (``ParkedCounter``).
"""

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from nats.aio.msg import Msg

from audit import store
from audit.chain import UnrepresentableEvent
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CloudEvent
from rujuk_runtime.bus import DLQ_REASON_HEADER, DLQ_SERVICE_HEADER, DLQ_SUBJECT_HEADER
from rujuk_runtime.consumer import Rejected, nak_later
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger

log = get_logger(__name__)

MAX_REASON_CHARS = 500


async def append_handler(conn: Connection, event: CloudEvent) -> None:
    """Record one event through the generic idempotent consumer (the unbatched path)."""
    try:
        entry = await store.append(conn, event)
    except UnrepresentableEvent as exc:
        raise Rejected(str(exc)) from exc
    if entry is None:
        log.info("event already in the ledger", event_id=event.id, case_id=event.subject)


def parked_message(message: Msg) -> store.ParkedMessage:
    """What the ledger keeps of a parked message: service, reason, subject, size, time."""
    headers = message.headers or {}
    metadata = message.metadata
    return store.ParkedMessage(
        dlq_seq=metadata.sequence.stream,
        service=headers.get(DLQ_SERVICE_HEADER)
        or message.subject.removeprefix(subjects.dead_letter("")),
        reason=(headers.get(DLQ_REASON_HEADER) or "(no reason given)")[:MAX_REASON_CHARS],
        original_subject=headers.get(DLQ_SUBJECT_HEADER) or "(unknown)",
        size=len(message.data),
        parked_at=metadata.timestamp or datetime.now(UTC),
    )


class ParkedCounter:
    """Counts every message on the dead-letter stream: service, reason, subject, size, time."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool

    async def process(self, batch: list[Msg]) -> None:
        rows = [parked_message(message) for message in batch]
        try:
            async with self._pool().acquire() as conn:
                new = await store.record_parked(conn, rows)
        except Exception as exc:
            log.warning("parked batch failed, will be redelivered", error=type(exc).__name__)
            for message in batch:
                await nak_later(message)
            return
        for message in batch:
            await message.ack()
        if new:
            log.info("parked messages counted", count=new)
