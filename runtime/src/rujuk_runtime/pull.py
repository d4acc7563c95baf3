"""Durable JetStream pull consumption in batches, in stream order.

Why not FastStream's ``PullSub(batch=True)``: in faststream 0.7.8 its batch loop keeps
fetching until the batch is full or the timeout passes (every hop waits the full timeout), and
it catches only ``nats.errors.TimeoutError`` while nats-py also raises the builtin
``TimeoutError``; the batch gathered so far is then dropped and comes back only after
``ack_wait``, behind later messages. Here a batch is whatever is waiting now, and when nothing
is, one message is awaited; messages are handled strictly in the order they were delivered.

Redelivery after a crash takes seconds, not half a minute: ``ack_wait`` is short
(``ACK_WAIT_SECONDS``), and while a message is being worked on (a batch in a slow transaction,
audit's commit that trails its batch) the consumer tells JetStream so every
third of ``ack_wait`` with an in-progress acknowledgement (``+WPI``), until the message
is acknowledged, or for ``MAX_IN_PROGRESS_SECONDS`` at most. A process that dies stops telling,
and JetStream hands its messages to the restarted one after ``ack_wait``. Redelivery of a
message that was in fact processed is harmless: every consumer records what it processed.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from rujuk_runtime.bus import when_jetstream_answers
from rujuk_runtime.logs import get_logger
from rujuk_runtime.metrics import (
    CONSUMER_ACK_PENDING,
    CONSUMER_OLDEST_UNACKED,
    CONSUMER_PENDING,
    CONSUMER_REDELIVERED,
    STREAM_BYTES,
    STREAM_MESSAGES,
)
from rujuk_runtime.tasks import cancel_and_wait

log = get_logger(__name__)

ACK_WAIT_SECONDS = 3.0
# A message held longer is left to redelivery: whoever held it has lost it (e.g. a failed
# commit that acks nothing).
MAX_IN_PROGRESS_SECONDS = 120.0
# How long one wait for the next message lasts (then it is renewed). A NATS server that
# restarts forgets the pull requests waiting on it: a consumer finds out only when its wait
# ends, so this bounds the delay after a NATS crash (at 5 s, the first delivery of a report
# accepted as NATS was killed came 5.2-5.9 s later: bench/recovery.py).
IDLE_WAIT_SECONDS = 2.0
DRAIN_WAIT_SECONDS = 0.01
STATE_INTERVAL_SECONDS = 5.0  # how long to wait for "what is there now"

BatchProcessor = Callable[[list[Msg]], Awaitable[None]]
IdleCallback = Callable[[], Awaitable[None]]


@dataclass
class PullConsumer:
    """One durable consumer on ``subject`` whose batches go to ``process``, one at a time."""

    subject: str
    durable: str
    stream: str
    process: BatchProcessor
    batch_size: int = 100
    service: str = ""
    max_ack_pending: int | None = None  # a consumer that must keep stream order sets it low
    # Called whenever nothing is waiting (before waiting for the next message) and at stop:
    # e.g. give back a database connection held only while one batch follows another.
    on_idle: IdleCallback | None = None
    ack_wait: float = ACK_WAIT_SECONDS
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _subscription: JetStreamContext.PullSubscription | None = field(default=None, init=False)
    # Delivered and not yet acknowledged, by id(): the message, when it went to ``process``.
    _working: dict[int, tuple[Msg, float]] = field(default_factory=dict, init=False)

    @property
    def progress_interval(self) -> float:
        """How often a message still worked on is said to be in progress: three times within
        ``ack_wait``, so that one lost +WPI does not let JetStream redeliver it."""
        return self.ack_wait / 3

    def config(self, existing: ConsumerConfig | None = None) -> ConsumerConfig:
        """This consumer's configuration. Made new, it reads the stream from its start; an
        ``existing`` one keeps where it started (JetStream cannot change that, and `rujuk
        restore` sets it to where the backed-up database had read up to)."""
        config = ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            filter_subject=self.subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=self.max_ack_pending or max(1000, self.batch_size * 10),
        )
        if existing is not None and existing.deliver_policy is not None:
            config.deliver_policy = existing.deliver_policy
            config.opt_start_seq = existing.opt_start_seq
            config.opt_start_time = existing.opt_start_time
        return config

    async def _existing(self, js: JetStreamContext) -> ConsumerConfig | None:
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return None
        existing: ConsumerConfig = info.config
        return existing

    async def start(self, js: JetStreamContext) -> None:
        # Created, or updated to this config: a consumer made by an earlier version (e.g. with
        # a 30 s ack_wait) takes the current settings rather than keeping its own.
        existing = await when_jetstream_answers(
            lambda: self._existing(js), f"consumer {self.durable}"
        )
        await when_jetstream_answers(
            lambda: js.add_consumer(self.stream, config=self.config(existing)),
            f"consumer {self.durable}",
        )
        subscription = await when_jetstream_answers(
            lambda: js.pull_subscribe(
                self.subject, durable=self.durable, stream=self.stream, config=self.config()
            ),
            f"consumer {self.durable}",
        )
        self._subscription = subscription
        self._tasks = [
            asyncio.create_task(self._report_state(js), name=f"watch-{self.durable}"),
            asyncio.create_task(self._keep_in_progress(), name=f"progress-{self.durable}"),
            asyncio.create_task(self._run(subscription), name=f"pull-{self.durable}"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        self._working.clear()
        if self.on_idle is not None:
            await self.on_idle()
        if self._subscription is not None:
            # Otherwise closing the connection waits out a drain of this subscription.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                batch = await self._next_batch(subscription)
            except (ConnectionClosedError, ServiceUnavailableError, OSError) as exc:
                if isinstance(exc, TimeoutError):
                    continue
                log.warning("pull failed, will retry", durable=self.durable,
                            error=type(exc).__name__)  # fmt: skip
                await asyncio.sleep(0.5)
                continue
            if not batch:
                continue
            handed = time.monotonic()
            self._working.update((id(message), (message, handed)) for message in batch)
            try:
                await self.process(batch)
            except Exception:  # unacked messages come back after ack_wait; keep consuming
                log.exception("batch processing failed", durable=self.durable, size=len(batch))
                for message in batch:
                    self._working.pop(id(message), None)

    async def _keep_in_progress(self) -> None:
        """Tell JetStream, for each message still being worked on, that it is (``+WPI``)."""
        while True:
            await asyncio.sleep(self.progress_interval)
            now = time.monotonic()
            for key, (message, handed) in list(self._working.items()):
                if message.is_acked or now - handed > MAX_IN_PROGRESS_SECONDS:
                    del self._working[key]
                elif now - handed >= self.progress_interval:
                    with contextlib.suppress(Exception):  # NATS away: ack_wait decides
                        await message.in_progress()

    def oldest_unacked_age(self) -> float:
        """Seconds since the oldest message in hand and not yet acknowledged was taken."""
        held = [handed for message, handed in self._working.values() if not message.is_acked]
        return time.monotonic() - min(held) if held else 0.0

    async def _report_state(self, js: JetStreamContext) -> None:
        """Keep the consumer's pending, unacknowledged and redelivered counts, the age of the
        oldest message in hand, and its stream's size in the metrics."""
        labels = (self.service, self.durable)
        while True:
            CONSUMER_OLDEST_UNACKED.labels(*labels).set(self.oldest_unacked_age())
            try:
                info = await js.consumer_info(self.stream, self.durable)
                CONSUMER_PENDING.labels(*labels).set(info.num_pending or 0)
                CONSUMER_ACK_PENDING.labels(*labels).set(info.num_ack_pending or 0)
                CONSUMER_REDELIVERED.labels(*labels).set(info.num_redelivered or 0)
                stream = await js.stream_info(self.stream)
                STREAM_MESSAGES.labels(self.stream).set(stream.state.messages)
                STREAM_BYTES.labels(self.stream).set(stream.state.bytes)
            except Exception as exc:  # NATS away for a moment: the next round will tell
                log.debug("consumer info unavailable", durable=self.durable, error=str(exc))
            await asyncio.sleep(STATE_INTERVAL_SECONDS)

    async def _next_batch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        try:
            return await subscription.fetch(self.batch_size, timeout=DRAIN_WAIT_SECONDS)
        except TimeoutError:  # nothing waiting: wait for the next message
            pass
        if self.on_idle is not None:
            await self.on_idle()
        try:
            batch = await subscription.fetch(1, timeout=IDLE_WAIT_SECONDS)
        except TimeoutError:
            return []
        # What came right behind it joins it: the rest of one report's events, or, for a
        # consumer at its max_ack_pending, everything the acks of its last batch let through
        # (else such a consumer alternates full batches with batches of one). If nothing more
        # is there (or NATS is away), the one message goes alone.
        with contextlib.suppress(Exception):
            if self.batch_size > 1:
                batch += await subscription.fetch(self.batch_size - 1, timeout=DRAIN_WAIT_SECONDS)
        return batch
