"""Signed tree heads (C2SP checkpoints as signed notes): made in a background task of their
own, stored beside the ledger, published on ``rujuk.audit.checkpoint`` and sent to the
witnesses to cosign."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext
from prometheus_client import Gauge

from audit import note, store
from audit.signing import SigningKey
from rujuk_contracts import subjects
from rujuk_runtime.logs import get_logger
from rujuk_runtime.tasks import BackgroundTask

HEAD_SIGNED = Gauge(
    "rujuk_ledger_head_signed_timestamp_seconds",
    "When the checkpointer last found the ledger's head covered by a signed checkpoint",
)

log = get_logger(__name__)


class Checkpointer(BackgroundTask):
    """Signs the tree head every ``every`` entries or ``interval`` seconds, if it moved; stores
    it, publishes it on ``rujuk.audit.checkpoint`` and has ``cosign`` ask the witnesses. At
    stop, a last head of what was recorded."""

    def __init__(
        self,
        key: SigningKey,
        pool: Callable[[], asyncpg.Pool],
        js: Callable[[], JetStreamContext],
        *,
        every: int,
        interval: float,
        origin: str,
        cosign: Callable[[store.StoredHead], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__("audit-checkpointer")
        self.key = key
        self.origin = origin
        self.signer = key.signer(origin)
        self._cosign = cosign
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

    async def checkpoint_now(self) -> store.StoredHead | None:
        """Sign, store and publish the tree head, unless a signed head already covers it; then
        ask the witnesses to cosign it."""
        async with self._pool().acquire() as conn:
            async with store.snapshot(conn):
                size, root = await store.tree_head(conn)
                latest = await store.latest_head(conn)
            self._since = 0
            if size == 0 or (latest is not None and latest.size >= size):
                HEAD_SIGNED.set_to_current_time()  # nothing new: the head stands signed
                return None
            now = datetime.now(UTC)
            signed = note.sign_head(self.signer, note.Checkpoint(self.origin, size, root), now)
            head = store.StoredHead(
                size=size,
                root_hash=root,
                signed_at=now.replace(microsecond=0),  # the cosignature/v1 time, in seconds
                origin=self.origin,
                public_key=self.key.public_raw,
                note=signed.render(),
            )
            if not await store.insert_head(conn, head):
                HEAD_SIGNED.set_to_current_time()
                return None  # another replica signed this size first
        HEAD_SIGNED.set_to_current_time()
        try:
            await self._js().publish(
                subjects.CHECKPOINT_SUBJECT,
                head.note.encode(),
                headers={"Nats-Msg-Id": f"head:{size}", "Content-Type": HEAD_CONTENT_TYPE},
            )
        except Exception as exc:  # stored all the same; the next one is published
            log.warning("head not published", size=size, error=type(exc).__name__)
        log.info("tree head signed", size=size, origin=self.origin)
        if self._cosign is not None:
            try:
                await self._cosign(head)
            except Exception:
                log.exception("asking the witnesses failed; the next head asks again")
        return head


HEAD_CONTENT_TYPE = "text/plain; charset=utf-8"
