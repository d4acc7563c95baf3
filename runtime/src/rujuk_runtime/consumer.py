"""The idempotent JetStream consumer every service uses.

A batch of messages is handled in one database transaction. It is first run without a savepoint
per event (two round trips each); if any handler fails, that transaction is rolled back and the
batch runs again with each event in its own savepoint, where
- a message that is not a valid event, or of a type the service does not take, is parked on the
  service's dead-letter subject with the reason, and the batch goes on;
- an event already processed (its id is in ``processed_events``) is skipped;
- a handler that raises ``Rejected`` parks the event with that reason, and changes nothing;
- an unexpected error rolls that event back and asks JetStream to redeliver it later, until
  ``max_deliveries``, when it is parked rather than retried for ever.
Messages are acknowledged, and counted in the metrics, only after the transaction committed.
(After such a second run, the events before the failing one have a span from each run.)
"""

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import asyncpg
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from rujuk_contracts.envelope import CloudEvent, EventError, parse_envelope, payload_of
from rujuk_contracts.events import EVENT_MODELS, EventPayload, model_for_type
from rujuk_runtime.bus import consumer_name, park
from rujuk_runtime.db import Connection, HeldConnection
from rujuk_runtime.inbox import record_processed, record_processed_batch
from rujuk_runtime.logs import get_logger
from rujuk_runtime.messages import deliveries, message_id
from rujuk_runtime.metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_SECONDS
from rujuk_runtime.outbox import counting_staged
from rujuk_runtime.telemetry import batch_span, handling_each, span_from

log = get_logger(__name__)

Handler = Callable[[Connection, CloudEvent, EventPayload], Awaitable[None]]
# Acts on a run of consecutive events of a batch at once, in their order (set-based SQL instead
# of statements per event); called with one event when the batch is judged event by event.
BatchHandler = Callable[[Connection, list[tuple[CloudEvent, EventPayload]]], Awaitable[None]]
# For a service that takes every valid CloudEvent, whatever its type or version (audit).
EnvelopeHandler = Callable[[Connection, CloudEvent], Awaitable[None]]
RETRY_DELAY_SECONDS = 1.0


class Rejected(Exception):
    """A valid event this service refuses for a reason a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    parked: int = 0
    retried: int = 0


@dataclass
class BatchOutcome:
    ack: list[Msg] = field(default_factory=list)
    retry: list[Msg] = field(default_factory=list)
    park: list[tuple[Msg, str]] = field(default_factory=list)


_Count = tuple[str, str, float]  # event type, outcome, handler seconds


class _EventFailed(Exception):
    """An event's handler failed in a batch run without savepoints."""


@dataclass(frozen=True)
class _Work:
    """A valid event this consumer acts on: its handler (or batch handler) and payload, or
    the fallback's."""

    event: CloudEvent
    handler: Handler | None
    payload: EventPayload | None
    batch_handler: BatchHandler | None = None


@dataclass
class EventConsumer:
    """Runs ``handlers[event type]`` for each message, idempotently, acking after commit."""

    service: str
    pool: asyncpg.Pool
    js: Callable[[], JetStreamContext]
    handlers: dict[str, Handler]
    batch_handlers: dict[str, BatchHandler] = field(default_factory=dict)
    after_commit: Callable[[], None] = lambda: None  # after a commit that staged events
    fallback: EnvelopeHandler | None = None
    skip_unhandled: bool = False  # known types without a handler: acked, nothing done
    max_deliveries: int = 10
    stats: ConsumerStats = field(default_factory=ConsumerStats)

    async def process_batch(self, messages: list[Msg], held: HeldConnection | None = None) -> None:
        """Handle a batch in one transaction, on ``held`` (the calling loop's own connection)
        or else on one taken from the pool for it; then ack, park or retry each message."""
        started = time.perf_counter()
        try:
            with counting_staged() as staged:
                outcome = await self._handle_in_transaction(messages, held)
        except Exception as exc:  # the database is away: nothing committed, retry them all
            log.warning(
                "batch failed, will be redelivered",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                size=len(messages),
            )
            for message in messages:
                await nak_later(message)
            return
        if staged:  # a batch that staged no event (most of them) leaves the relay asleep
            self.after_commit()
        for message, reason in outcome.park:
            await park(
                self.js(),
                self.service,
                subject=message.subject,
                data=message.data,
                reason=reason,
                message_id=message_id(message),
                consumer=consumer_name(message),
            )
            await message.ack()
        for message in outcome.retry:
            await nak_later(message)
        for message in outcome.ack:
            await message.ack()
        self.stats.parked += len(outcome.park)
        self.stats.retried += len(outcome.retry)
        DEAD_LETTERED.labels(self.service).inc(len(outcome.park))
        log.debug(
            "batch handled", size=len(messages), ms=round((time.perf_counter() - started) * 1000, 1)
        )

    async def _handle_in_transaction(
        self, messages: list[Msg], held: HeldConnection | None = None
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        work: list[tuple[Msg, _Work]] = []
        for message in messages:  # what needs no database is decided before a transaction
            checked = self._check(message)
            if isinstance(checked, _Work):
                work.append((message, checked))
            elif checked is None:
                outcome.ack.append(message)
            else:
                outcome.park.append((message, checked))
        if not work:
            return outcome
        tally: list[_Count] = []
        with batch_span(
            f"{self.service} process batch",
            (item.event.traceparent for _, item in work),
            {"messaging.operation.type": "process", "messaging.batch.message_count": len(work)},
        ):
            try:  # optimistic: one transaction, no savepoint per event (two round trips each)
                verdicts = await self._apply_all(work, tally, held, savepoints=False)
            except _EventFailed:  # one failed: again, each in its savepoint, to judge each
                tally.clear()
                verdicts = await self._apply_all(work, tally, held, savepoints=True)
        for (message, _), verdict in zip(work, verdicts, strict=True):
            if verdict is None:
                outcome.ack.append(message)
            elif verdict == "retry":
                outcome.retry.append(message)
            else:
                outcome.park.append((message, verdict))
        self._count(tally)  # only what committed
        return outcome

    async def _apply_all(
        self,
        work: list[tuple[Msg, _Work]],
        tally: list[_Count],
        held: HeldConnection | None,
        *,
        savepoints: bool,
    ) -> list[str | None]:
        connection = held.use() if held is not None else self.pool.acquire()
        async with connection as conn, conn.transaction():
            if savepoints:  # each event records itself, in its savepoint
                return [
                    await self._apply(conn, message, item, tally, savepoint=True)
                    for message, item in work
                ]
            # One statement records the whole batch as processed, instead of one per event.
            new_ids = await record_processed_batch(
                conn, [item.event.id for _, item in work], [item.event.type for _, item in work]
            )
            verdicts: list[str | None] = []
            run: list[_Work] = []  # consecutive new events for one batch handler
            for message, item in work:
                new = item.event.id in new_ids
                new_ids.discard(item.event.id)  # the same event twice in a batch: once
                if run and (not new or item.batch_handler is not run[0].batch_handler):
                    await self._apply_run(conn, run, tally)
                    run = []
                if new and item.batch_handler is not None:
                    run.append(item)
                    verdicts.append(None)  # a failure aborts the whole batch (_EventFailed)
                    continue
                verdicts.append(
                    await self._apply(conn, message, item, tally, savepoint=False, new=new)
                )
            if run:
                await self._apply_run(conn, run, tally)
            return verdicts

    async def _apply_run(self, conn: Connection, run: list[_Work], tally: list[_Count]) -> None:
        """A run of new events for one batch handler, in the batch's transaction without
        savepoints: any failure aborts it so that the batch is judged event by event."""
        handler = run[0].batch_handler
        assert handler is not None
        started = time.perf_counter()
        spans: Iterator[tuple[str, str, str | None, dict[str, str | int]]] = (
            (f"{self.service} handle {item.event.type}", item.event.id, item.event.traceparent,
             {"rujuk.case_id": item.event.subject or "", "rujuk.event_id": item.event.id,
              "rujuk.event_type": item.event.type, "rujuk.batch_size": len(run)})
            for item in run
        )  # fmt: skip
        try:
            with handling_each(spans):  # each event's span, open while the batch is handled
                await handler(conn, [(item.event, item.payload) for item in run if item.payload])
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            raise
        except Exception as exc:
            raise _EventFailed from exc
        share = (time.perf_counter() - started) / len(run)
        tally.extend((item.event.type, "processed", share) for item in run)

    def _count(self, tally: list[_Count]) -> None:
        for event_type, outcome, seconds in tally:
            EVENTS_CONSUMED.labels(self.service, event_type, outcome).inc()
            if outcome == "duplicate":
                self.stats.duplicates += 1
            elif outcome == "processed":
                self.stats.processed += 1
                HANDLER_SECONDS.labels(self.service, event_type).observe(seconds)

    async def _handle_one(self, conn: Connection, message: Msg) -> str | None:
        """None when done (or a duplicate or skipped), "retry", or the reason to park it."""
        checked = self._check(message)
        if not isinstance(checked, _Work):
            return checked
        tally: list[_Count] = []
        verdict = await self._apply(conn, message, checked, tally, savepoint=True)
        self._count(tally)
        return verdict

    def _check(self, message: Msg) -> _Work | str | None:
        """Parse and validate without the database: the work to do, None when there is none
        (a skipped type), or the reason to park the message."""
        try:
            event = parse_envelope(message.data)
            handler = self.handlers.get(event.type)
            batch_handler = self.batch_handlers.get(event.type)
            handled = handler is not None or batch_handler is not None
            skip = not handled and self.skip_unhandled and event.type in EVENT_MODELS
            if handled or skip:
                # Its own subject only: each durable consumer, and so stream order, is per subject.
                expected = _subject_of(event.type)
                if message.subject != expected:
                    return f"{event.type} belongs on {expected}, not on {message.subject}"
            if skip:
                EVENTS_CONSUMED.labels(self.service, event.type, "skipped").inc()
                return None
            if handled:
                return _Work(event, handler, payload_of(event), batch_handler)
            if self.fallback is not None:
                return _Work(event, None, None)
            return f"{self.service} does not handle event type {event.type!r}" + _other_versions(
                event.type
            )
        except EventError as exc:
            return str(exc)

    async def _apply(
        self,
        conn: Connection,
        message: Msg,
        work: _Work,
        tally: list[_Count],
        *,
        savepoint: bool,
        new: bool | None = None,
    ) -> str | None:
        """Act on one event in the batch's transaction. With ``savepoint`` its failure is its
        own (the verdict says retry or park); without, any failure aborts the batch's
        transaction (``_EventFailed``) so that it is run again with savepoints. ``new`` says
        whether the batch's one INSERT into processed_events took this event (None: take it
        here)."""
        event, handler, payload = work.event, work.handler, work.payload
        attributes = {
            "rujuk.case_id": event.subject,
            "rujuk.event_id": event.id,
            "rujuk.event_type": event.type,
        }
        started = time.perf_counter()
        with (
            structlog.contextvars.bound_contextvars(case_id=event.subject, event_id=event.id),
            span_from(f"{self.service} handle {event.type}", event.traceparent, attributes),
        ):
            try:
                async with conn.transaction() if savepoint else contextlib.nullcontext():
                    inserted = new
                    if inserted is None:  # not recorded with its batch: record it here
                        inserted = await record_processed(conn, event.id, event.type)
                    if not inserted:
                        tally.append((event.type, "duplicate", 0.0))
                        return None
                    if work.batch_handler is not None and payload is not None:
                        await work.batch_handler(conn, [(event, payload)])
                    elif handler is not None and payload is not None:
                        await handler(conn, event, payload)
                    elif self.fallback is not None:
                        await self.fallback(conn, event)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                raise  # the connection is gone: let the whole batch be redelivered
            except Exception as exc:
                if not savepoint:
                    raise _EventFailed from exc
                return self._failed(message, event, exc, tally)
        tally.append((event.type, "processed", time.perf_counter() - started))
        return None

    def _failed(self, message: Msg, event: CloudEvent, exc: Exception, tally: list[_Count]) -> str:
        """The verdict on an event whose handler failed: park it if it was rejected or has
        failed too often, else retry it."""
        if isinstance(exc, Rejected):
            log.warning(
                "event rejected",
                event_id=event.id,
                case_id=event.subject,
                event_type=event.type,
                reason=exc.reason,
            )
            tally.append((event.type, "parked", 0.0))
            return f"rejected: {exc.reason}"
        delivered = deliveries(message)
        log.error(
            "event handler failed",
            event_id=event.id,
            case_id=event.subject,
            event_type=event.type,
            deliveries=delivered,
            exc_info=exc,
        )
        if delivered >= self.max_deliveries:
            tally.append((event.type, "parked", 0.0))
            return f"handler failed {delivered} times: {type(exc).__name__}: {exc}"
        tally.append((event.type, "retried", 0.0))
        return "retry"


def _subject_of(event_type: str) -> str | None:
    model = model_for_type(event_type)
    return model.subject() if model is not None else None


def _other_versions(event_type: str) -> str:
    """For an unknown version of a known event: which versions there are."""
    family = event_type.rpartition(".v")[0]
    known = sorted(t for t in EVENT_MODELS if t.rpartition(".v")[0] == family)
    if not family or not known or event_type in known:
        return ""
    return f": unknown schema version (known: {', '.join(known)})"


async def nak_later(message: Msg) -> None:
    """Ask JetStream to redeliver after ``RETRY_DELAY_SECONDS``; if the connection dropped,
    ack_wait brings it back anyway."""
    try:
        await message.nak(delay=RETRY_DELAY_SECONDS)
    except Exception as exc:  # the connection dropped: JetStream redelivers after ack_wait
        log.warning("nak failed", error=type(exc).__name__)
