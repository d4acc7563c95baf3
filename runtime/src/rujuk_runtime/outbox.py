"""Transactional outbox: add events inside the state's transaction; a relay publishes them.

The relay publishes with the event id as Nats-Msg-Id and deletes a row only after JetStream
acknowledged it, so a crash anywhere republishes, and JetStream drops the duplicate.
"""

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import asyncpg
from nats.js import JetStreamContext

from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import model_for_type
from rujuk_runtime.bus import event_headers
from rujuk_runtime.db import DATABASE_AWAY, Connection, HeldConnection, columns
from rujuk_runtime.logs import get_logger
from rujuk_runtime.metrics import DEPENDENCY_UP, EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST
from rujuk_runtime.tasks import BackgroundTask

log = get_logger(__name__)


OUTBOX_COLUMNS = "event_id, event_type, subject, body, traceparent"


def outbox_row(event: CloudEvent) -> tuple[str, str, str, bytes, str | None]:
    """The outbox row of an event, in ``OUTBOX_COLUMNS`` order; for a caller that stages it
    within a larger statement."""
    model = model_for_type(event.type)
    if model is None:
        raise ValueError(f"unknown event type {event.type!r}")
    return event.id, event.type, model.subject(), event.to_bytes(), event.traceparent


_ADD_MANY = f"""
INSERT INTO outbox ({OUTBOX_COLUMNS})
SELECT {OUTBOX_COLUMNS} FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])
    WITH ORDINALITY AS e (event_id, event_type, subject, body, traceparent, n)
ORDER BY n
"""  # noqa: S608 (OUTBOX_COLUMNS is a constant, not input)


# Events staged by the work ``counting_staged`` surrounds (that task and the tasks it starts).
_STAGED: ContextVar[list[int] | None] = ContextVar("rujuk_outbox_staged", default=None)


@contextmanager
def counting_staged() -> Iterator[list[int]]:
    """A list that gets the number of events of each ``add_to_outbox`` call made inside: empty
    when nothing was staged, so a caller wakes the relay only when there is work for it."""
    staged: list[int] = []
    token = _STAGED.set(staged)
    try:
        yield staged
    finally:
        _STAGED.reset(token)


async def add_to_outbox(conn: Connection, *events: CloudEvent) -> None:
    """Stage events in the caller's transaction, in one statement; the relay publishes them
    in the order given."""
    if not events:
        return
    staged = _STAGED.get()
    if staged is not None:
        staged.append(len(events))
    rows = [outbox_row(event) for event in events]
    if len(rows) == 1:
        sql = f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"  # noqa: S608
        await conn.execute(sql, *rows[0])
        return
    await conn.execute(_ADD_MANY, *columns(rows, len(rows[0])))


# Takes the oldest rows no other relay holds; the caller's transaction keeps them until JetStream
# has acknowledged them (RETURNING's order is not the table's: the caller sorts by seq).
# `= ANY(ARRAY(...))`, not `IN (...)`: with IN, the generic plan PostgreSQL caches for this
# prepared statement while the outbox is empty is a hash semi-join over a sequential scan,
# kept while dead rows pile up between vacuums (12 ms a pass seen at 20 reports/s); an array
# of keys takes the primary key's index in every plan.
_TAKE = """
DELETE FROM outbox WHERE seq = ANY(ARRAY(
    SELECT seq FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
)) RETURNING seq, event_id, event_type, subject, body, traceparent
"""


class OutboxRelay(BackgroundTask):
    """Publishes staged events in order. Woken after each commit; polls as a safety net."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        service: str = "",
        batch_size: int = 200,
        poll_interval: float = 0.5,
        # A publish made as NATS died is given up after this and made again (JetStream drops
        # the duplicate by Nats-Msg-Id): at 5 s, the first delivery of a report accepted just
        # before a NATS crash came 5.3-5.9 s after it (bench/recovery.py), past the 5 s target.
        publish_timeout: float = 2.0,
    ) -> None:
        super().__init__("outbox-relay")
        self._pool = pool
        self._js = js
        self._service = service
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._publish_timeout = publish_timeout
        # The relay runs one pass at a time, every few milliseconds under load: on a connection
        # of its own rather than one taken from the pool (and reset) for each pass.
        self._held = HeldConnection(lambda: pool)
        self.published = 0

    async def stopped(self) -> None:
        await self._held.release()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published and removed.

        The rows are deleted and returned by one statement in a transaction that commits only
        after JetStream acknowledged every publish: a crash or a refused publish rolls the
        delete back and the rows are published again (JetStream drops the duplicates)."""
        async with self._held.use() as conn, conn.transaction():
            rows = sorted(await conn.fetch(_TAKE, self._batch_size), key=lambda row: row["seq"])
            if not rows:
                OUTBOX_BACKLOG.labels(self._service).set(0)
                return 0
            # Pipelined: every publish is on the wire before we wait for the first ack.
            await asyncio.gather(
                *(
                    self._js.publish(
                        row["subject"],
                        bytes(row["body"]),
                        headers=event_headers(row["event_id"], row["traceparent"]),
                        timeout=self._publish_timeout,
                    )
                    for row in rows
                )
            )
            # A full batch may have more behind it; counting them costs a scan, so only then
            # (this transaction no longer sees the rows it took).
            backlog = (
                await conn.fetchval("SELECT count(*) FROM outbox")
                if len(rows) == self._batch_size
                else 0
            )
        self.published += len(rows)
        for row in rows:
            EVENTS_PUBLISHED.labels(self._service, row["event_type"]).inc()
        OUTBOX_BACKLOG.labels(self._service).set(backlog)
        return len(rows)

    async def _measure_stuck(self, failure: Exception) -> None:
        """After a failed pass: is PostgreSQL away, and how old is the oldest waiting event."""
        database_away = isinstance(failure, DATABASE_AWAY)
        DEPENDENCY_UP.labels(self._service, "postgres").set(0 if database_away else 1)
        if database_away:
            return
        with contextlib.suppress(Exception):  # it may have gone meanwhile: the next pass says
            async with self._held.use() as conn:
                age = await conn.fetchval(
                    "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) FROM outbox"
                )
            OUTBOX_OLDEST.labels(self._service).set(float(age))

    async def run(self) -> None:
        backoff = self._poll_interval
        while True:
            # Cleared before the rows are taken: a commit after this wakes the next round.
            self.clear_wake()
            try:
                while await self.relay_once() == self._batch_size:
                    pass
                backoff = self._poll_interval
                OUTBOX_OLDEST.labels(self._service).set(0)
                DEPENDENCY_UP.labels(self._service, "postgres").set(1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or PostgreSQL away: keep the rows, try again
                log.warning(
                    "outbox relay failed, will retry",
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                    retry_in=backoff,
                )
                await self._measure_stuck(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            await self.wait_for_wake(self._poll_interval)
