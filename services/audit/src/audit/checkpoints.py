"""Signed checkpoints of the ledger's head: made in a background task of their own, stored
beside the ledger and published on ``rujuk.audit.checkpoint``."""

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext
from prometheus_client import Gauge

from audit import store
from audit.signing import SigningKey
from rujuk_contracts import subjects
from rujuk_contracts.ledger import Checkpoint
from rujuk_runtime.logs import get_logger
from rujuk_runtime.tasks import BackgroundTask

HEAD_SIGNED = Gauge(
    "rujuk_ledger_head_signed_timestamp_seconds",
    "When the checkpointer last found the ledger's head covered by a signed checkpoint",
)

log = get_logger(__name__)


class Checkpointer(BackgroundTask):
    """Signs the ledger's head every ``every`` entries or ``interval`` seconds, if it moved;
    stores the checkpoint and publishes it on ``rujuk.audit.checkpoint``. At stop, a last
    checkpoint of what was recorded."""

    def __init__(
        self,
        key: SigningKey,
        pool: Callable[[], asyncpg.Pool],
        js: Callable[[], JetStreamContext],
        *,
        every: int,
        interval: float,
    ) -> None:
        super().__init__("audit-checkpointer")
        self.key = key
        self._pool = pool
        self._js = js
        self.every = every
        self.interval = interval
        self._since = 0

    def appended(self, count: int) -> None:
        """The writer chained ``count`` entries: sign at once when ``every`` is reached."""
        self._since += count
        if self._since >= self.every:
            self.wake()

    async def run(self) -> None:
        while True:
            await self.wait_for_wake(self.interval)
            self.clear_wake()
            try:
                await self.checkpoint_now()
            except Exception:
                log.exception("checkpoint failed, will retry")
                await asyncio.sleep(1)

    async def stopped(self) -> None:
        with contextlib.suppress(Exception):  # a last checkpoint of what was recorded
            await self.checkpoint_now()

    async def checkpoint_now(self) -> Checkpoint | None:
        """Sign, store and publish the head, unless a checkpoint already covers it."""
        async with self._pool().acquire() as conn:
            head = await store.head(conn)
            latest = await store.latest_checkpoint(conn)
            self._since = 0
            if head.seq == 0 or (latest is not None and latest.checkpoint.seq >= head.seq):
                HEAD_SIGNED.set_to_current_time()  # nothing new: the head stands signed
                return None
            checkpoint = self.key.sign(seq=head.seq, hash=head.hash, time=datetime.now(UTC))
            if not await store.insert_checkpoint(conn, checkpoint, self.key.public_raw):
                HEAD_SIGNED.set_to_current_time()
                return None  # another replica signed this head first
        HEAD_SIGNED.set_to_current_time()
        try:
            await self._js().publish(
                subjects.CHECKPOINT_SUBJECT,
                checkpoint.to_bytes(),
                headers={
                    "Nats-Msg-Id": f"checkpoint:{checkpoint.seq}",
                    "Content-Type": "application/json",
                },
            )
        except Exception as exc:  # stored all the same; the next one is published
            log.warning("checkpoint not published", seq=checkpoint.seq, error=type(exc).__name__)
        log.info("checkpoint signed", seq=checkpoint.seq, key_id=checkpoint.key_id)
        return checkpoint
