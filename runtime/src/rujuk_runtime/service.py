"""What every rujuk service is made of: a FastStream broker with durable JetStream consumers,
a pool on its own schema, an outbox relay, its health, and a clean stop on SIGTERM."""

import asyncio
import contextlib
import cProfile
import inspect
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import uvicorn
import uvloop
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from rujuk_contracts import subjects
from rujuk_contracts.events import EventPayload
from rujuk_runtime.bus import ensure_streams, identity, jetstream, make_broker
from rujuk_runtime.consumer import BatchHandler, EnvelopeHandler, EventConsumer, Handler
from rujuk_runtime.db import HeldConnection, SchemaNotReady, create_pool
from rujuk_runtime.logs import configure_logging, get_logger
from rujuk_runtime.metrics import DEPENDENCY_UP
from rujuk_runtime.outbox import OutboxRelay
from rujuk_runtime.pull import BatchProcessor, PullConsumer
from rujuk_runtime.settings import ServiceSettings
from rujuk_runtime.tasks import BackgroundTask
from rujuk_runtime.telemetry import configure_tracing, instrument_asgi, shutdown_tracing

log = get_logger(__name__)

POOL_CLOSE_SECONDS = 10.0
STOP_STEP_SECONDS = 10.0


class ServiceRuntime:
    """The resources of one service process, set up at start and released at stop."""

    def __init__(self, name: str, settings: ServiceSettings) -> None:
        self.name = name
        self.settings = settings
        self.broker = make_broker(settings, name)
        self.handlers: dict[str, Handler] = {}
        self.batch_handlers: dict[str, BatchHandler] = {}
        self._pool: asyncpg.Pool | None = None
        self._relay: OutboxRelay | None = None
        self._consumer: EventConsumer | None = None
        self.on_started: list[Callable[[], Awaitable[None]]] = []
        self.on_stopping: list[Callable[[], Awaitable[None]]] = []
        self.fallback: EnvelopeHandler | None = None
        # A consumer of every subject that handles some types only: the other known types
        # are acknowledged without any work (no transaction, no processed_events row).
        self.skip_unhandled = False
        self._pull_consumers: list[PullConsumer] = []
        self._background: list[BackgroundTask] = []
        # What /healthz reports besides NATS and PostgreSQL, without deciding its status
        # (a coroutine function when it reads the database).
        self.health_details: list[
            Callable[[], dict[str, Any]] | Callable[[], Awaitable[dict[str, Any]]]
        ] = []

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: the database pool is not open yet")
        return self._pool

    @property
    def relay(self) -> OutboxRelay:
        if self._relay is None:
            raise RuntimeError(f"{self.name}: the outbox relay is not running yet")
        return self._relay

    @property
    def consumer(self) -> EventConsumer:
        if self._consumer is None:
            raise RuntimeError(f"{self.name}: the consumer is not ready yet")
        return self._consumer

    @property
    def pull_consumers(self) -> tuple[PullConsumer, ...]:
        """The durable consumers this service declared: each subject it reads, and how."""
        return tuple(self._pull_consumers)

    def run_in_background(self, task: BackgroundTask) -> None:
        """Start ``task`` once the service has started (after the ``on_started`` callbacks);
        stop it after the ``on_stopping`` callbacks, before the outbox relay."""
        self._background.append(task)

    def handles(self, event_type: str) -> bool:
        """Whether a handler of this service acts on ``event_type``."""
        return event_type in self.handlers or event_type in self.batch_handlers

    def js(self) -> JetStreamContext:
        return jetstream(self.broker)

    def handle(self, payload_type: type[EventPayload], handler: Handler, *, durable: str) -> None:
        """Consume ``payload_type`` events with a durable pull consumer, in batches."""
        self.handlers[payload_type.event_type()] = handler
        self.subscribe_batches(payload_type.subject(), durable=durable)

    def handle_batches(
        self, payload_type: type[EventPayload], handler: BatchHandler, *, durable: str
    ) -> None:
        """Like ``handle``, with a handler that takes each run of new events at once."""
        self.batch_handlers[payload_type.event_type()] = handler
        self.subscribe_batches(payload_type.subject(), durable=durable)

    def subscribe_batches(
        self,
        subject: str,
        *,
        durable: str,
        process: BatchProcessor | None = None,
        stream: str = subjects.EVENTS_STREAM,
        max_ack_pending: int | None = None,
    ) -> None:
        """A durable batch consumer; by default the idempotent consumer processes it.

        ``max_ack_pending`` caps the messages delivered and not yet acknowledged: a consumer
        that must see the stream strictly in order sets it to what it keeps in flight, so that
        after a crash the redelivered messages cannot be overtaken by newer ones."""
        runtime = self
        # Each durable consumer handles its batches one at a time: while one batch follows
        # another, on a connection of its own (no reset between them); given back to the pool
        # as soon as nothing is waiting, so idle consumers hold none.
        held = HeldConnection(lambda: runtime.pool)

        async def process_with_consumer(batch: list[Msg]) -> None:
            await runtime.consumer.process_batch(batch, held)

        self._pull_consumers.append(
            PullConsumer(
                subject=subject,
                durable=durable,
                stream=stream,
                process=process or process_with_consumer,
                batch_size=self.settings.batch_size,
                service=self.name,
                max_ack_pending=max_ack_pending,
                on_idle=None if process else held.release,
            )
        )

    async def _on_startup(self) -> None:
        configure_logging(self.name, self.settings.log_level)
        configure_tracing(self.name)
        connection = await nats.connect(
            self.settings.nats_servers(), **identity(self.settings, self.name)
        )
        try:
            await ensure_streams(connection.jetstream(), self.settings.stream_replicas)
        finally:
            await connection.close()
        # Besides requests and consumers, up to two loops keep a connection of their own (the
        # outbox relay, and a scheduler or deadline watcher or ledger writer).
        try:
            self._pool = await create_pool(self.settings.database_url, self.name, max_size=12)
        except SchemaNotReady as exc:  # said plainly before the stack trace of a failed start
            log.error("not starting: database schema not ready", reason=str(exc))
            raise
        self._consumer = EventConsumer(
            service=self.name,
            pool=self._pool,
            js=self.js,
            handlers=self.handlers,
            batch_handlers=self.batch_handlers,
            after_commit=self.wake_relay,
            fallback=self.fallback,
            skip_unhandled=self.skip_unhandled,
        )

    def wake_relay(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def _after_startup(self) -> None:
        connection = self.broker.connection  # connected: what /metrics says of NATS
        DEPENDENCY_UP.labels(self.name, "nats").set_function(lambda: float(connection.is_connected))
        self._relay = OutboxRelay(self.pool, self.js(), service=self.name)  # broker connected
        self._relay.start()
        for consumer in self._pull_consumers:
            await consumer.start(self.js())
        for callback in self.on_started:
            await callback()
        for task in self._background:
            task.start()
        log.info("service started", http_port=self.settings.http_port)

    async def _on_shutdown(self) -> None:
        for consumer in self._pull_consumers:
            await _bounded(consumer.stop(), f"consumer {consumer.durable}")
        for callback in self.on_stopping:
            await _bounded(callback(), "a stopping callback")
        for task in self._background:
            await _bounded(task.stop(), task.name)
        if self._relay is not None:
            await _bounded(self._relay.stop(), "the outbox relay")

    async def _after_shutdown(self) -> None:
        if self._pool is not None:
            try:  # close waits for every connection to come back: not for ever
                await asyncio.wait_for(self._pool.close(), POOL_CLOSE_SECONDS)
            except TimeoutError:
                log.warning("database connections still in use at stop; closed anyway")
                self._pool.terminate()
        log.info("service stopped")
        shutdown_tracing()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {"nats": await self.broker.ping(2.0)}
        try:
            async with self.pool.acquire(timeout=2) as conn:
                checks["postgres"] = await conn.fetchval("SELECT true") is True
        except Exception as exc:
            checks["postgres"] = False
            checks["postgres_error"] = type(exc).__name__
        ok = all(v for k, v in checks.items() if not k.endswith("_error"))
        for details in self.health_details:  # said, not counted in ``ok``
            found = details()
            checks.update(await found if inspect.isawaitable(found) else found)
        return ok, checks

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start everything, yield while the service serves, then stop everything."""
        await self._on_startup()
        await self.broker.start()
        try:
            await self._after_startup()  # a start-up callback that fails still stops the rest
            yield
        finally:
            await self._on_shutdown()
            await _bounded(self.broker.stop(), "the NATS connection")
            await self._after_shutdown()

    def lifespan(self, _app: object) -> contextlib.AbstractAsyncContextManager[None]:
        """The lifespan of the service's FastAPI door (``rujuk_runtime.webapp``)."""
        return self.running()


async def _bounded(stopping: Awaitable[None], what: str) -> None:
    """One step of a stop, given STOP_STEP_SECONDS at most: a stop must end (SIGTERM, a test's
    teardown) even when a step waits on something that never answers or fails; what was in
    flight is redelivered, as after a crash."""
    try:
        await asyncio.wait_for(stopping, STOP_STEP_SECONDS)
    except TimeoutError:
        log.error("stop step did not finish; going on", step=what, seconds=STOP_STEP_SECONDS)
    except Exception as exc:  # one step's failure must not leave the others undone
        log.error("stop step failed; going on", step=what, error=type(exc).__name__)


def serve(app: Any, settings: ServiceSettings) -> None:
    """Run an ASGI app under uvicorn; SIGTERM and Ctrl-C stop it cleanly.

    On uvloop with httptools' HTTP parser: uvicorn's pure-Python defaults (asyncio's loop, h11)
    cost several times the CPU per request, and the loop also carries asyncpg and nats-py."""
    config = uvicorn.Config(
        instrument_asgi(app),
        host=settings.http_host,
        port=settings.http_port,
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    with _profiled(settings):
        uvloop.run(uvicorn.Server(config).serve())


@contextlib.contextmanager
def _profiled(settings: ServiceSettings) -> Iterator[None]:
    """With RUJUK_PROFILE_DIR (benches), the whole run under cProfile, written out at stop."""
    if not settings.profile_dir:
        yield
        return
    # CPU time, not wall-clock: on a shared machine a function's wall time counts the other
    # processes' turns on the cores too.
    profile = cProfile.Profile(time.process_time)
    name = type(settings).__name__.removesuffix("Settings").lower() or "service"
    folder = Path(settings.profile_dir)

    def write_out() -> None:
        profile.disable()
        folder.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(folder / f"{name}-{os.getpid()}.prof")

    def on_stop_signal(number: int, _: object) -> None:
        # uvicorn raises the stop signal again once it has shut down: write out, then let
        # the signal do what it does.
        write_out()
        signal.signal(number, signal.SIG_DFL)
        signal.raise_signal(number)

    previous = {n: signal.signal(n, on_stop_signal) for n in (signal.SIGTERM, signal.SIGINT)}
    profile.enable()
    try:
        yield
    finally:
        write_out()
        for number, handler in previous.items():
            signal.signal(number, handler)
