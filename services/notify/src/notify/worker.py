"""The delivery worker: claims due deliveries, tries each channel, retries with backoff, and
reports `delivered` or, after the last attempt, `delivery failed` through the outbox."""

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from notify import store
from notify.channels import NatsFeed, Outgoing, WebhookSender
from notify.directory import WebhookDirectory
from notify.retry import next_delay
from rujuk_contracts import make_event
from rujuk_contracts.events import DeliveryChannel, ReferralDelivered, ReferralDeliveryFailed
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent, span_from

log = get_logger(__name__)

SOURCE = "/rujuk/notify"
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1f0e-2f43-4d1e-9d0a-6a1b2c3d4e5f")


@dataclass
class AttemptResult:
    channels_done: list[str]
    errors: list[str]


@dataclass
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    cap_seconds: float


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        feed: NatsFeed,
        webhook: WebhookSender,
        directory: WebhookDirectory,
        policy: RetryPolicy,
        *,
        batch_size: int = 50,
        poll_interval: float = 0.1,
    ) -> None:
        self._pool = pool
        self._feed = feed
        self._webhook = webhook
        self._directory = directory
        self._policy = policy
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None
        self.after_commit: list[Callable[[], None]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            due = await store.claim_due(conn, self._batch_size)
            if not due:
                return 0
            results = await asyncio.gather(*(self._attempt(d) for d in due))
            for delivery, result in zip(due, results, strict=True):
                await self._settle(conn, delivery, result)
        for callback in self.after_commit:
            callback()
        return len(due)

    async def _run(self) -> None:
        while True:
            try:
                if await self.run_once():
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery round failed", error=type(exc).__name__,
                            detail=str(exc)[:200])  # fmt: skip
                await asyncio.sleep(1)
            await asyncio.sleep(self._poll_interval)

    def _channels_for(self, agency_id: str) -> dict[str, str | None]:
        channels: dict[str, str | None] = {DeliveryChannel.NATS: None}
        url = self._directory.webhook_url(agency_id)
        if url:
            channels[DeliveryChannel.WEBHOOK] = url
        return channels

    async def _attempt(self, delivery: store.Delivery) -> AttemptResult:
        outgoing = Outgoing(
            agency_id=delivery.agency_id,
            event_id=delivery.event_id,
            event_name=".".join(delivery.event_type.split(".")[2:4]),
            body=delivery.body,
            traceparent=delivery.traceparent,
        )
        done = list(delivery.channels_done)
        errors: list[str] = []
        attributes = {"rujuk.case_id": delivery.case_id, "rujuk.agency_id": delivery.agency_id}
        with span_from("notify deliver referral", delivery.traceparent, attributes):
            for channel, url in self._channels_for(delivery.agency_id).items():
                if channel in done:
                    continue  # never send twice on a channel that already took it
                try:
                    if channel == DeliveryChannel.WEBHOOK and url is not None:
                        await self._webhook.deliver(outgoing, url)
                    else:
                        await self._feed.deliver(outgoing)
                    done.append(channel)
                except Exception as exc:  # DeliveryError, or NATS away: retry later
                    errors.append(f"{channel}: {exc}")
        return AttemptResult(done, errors)

    async def _settle(
        self, conn: Connection, delivery: store.Delivery, result: AttemptResult
    ) -> None:
        attempt = delivery.attempts + 1
        for channel in result.channels_done:
            if channel not in delivery.channels_done:
                await store.record_attempt(conn, delivery.referral_id, channel, attempt, True, "ok")
        for error in result.errors:
            await store.record_attempt(
                conn, delivery.referral_id, error.split(":")[0], attempt, False, error
            )
        if not result.errors:
            await store.mark_delivered(conn, delivery.referral_id, result.channels_done, attempt)
            payload: ReferralDelivered | ReferralDeliveryFailed = ReferralDelivered(
                case_id=delivery.case_id,
                referral_id=delivery.referral_id,
                agency_id=delivery.agency_id,
                channels=[DeliveryChannel(c) for c in result.channels_done],
                attempts=attempt,
            )
            log.info("referral delivered", case_id=delivery.case_id,
                     referral_id=delivery.referral_id, agency_id=delivery.agency_id,
                     attempts=attempt)  # fmt: skip
        elif attempt >= self._policy.max_attempts:
            reason = "; ".join(result.errors)
            await store.mark_failed(conn, delivery.referral_id, attempt, reason)
            payload = ReferralDeliveryFailed(
                case_id=delivery.case_id,
                referral_id=delivery.referral_id,
                agency_id=delivery.agency_id,
                reason=reason[:500],
                attempts=attempt,
            )
            log.warning("referral delivery failed", case_id=delivery.case_id,
                        referral_id=delivery.referral_id, agency_id=delivery.agency_id,
                        attempts=attempt, reason=reason[:200])  # fmt: skip
        else:
            delay = next_delay(
                attempt, base=self._policy.base_seconds, cap=self._policy.cap_seconds
            )
            await store.schedule_retry(
                conn, delivery.referral_id, result.channels_done, attempt,
                "; ".join(result.errors), timedelta(seconds=delay),
            )  # fmt: skip
            log.info("referral delivery will be retried", case_id=delivery.case_id,
                     referral_id=delivery.referral_id, attempt=attempt,
                     retry_in=round(delay, 1))  # fmt: skip
            return
        with span_from("notify report delivery", delivery.traceparent):
            event = make_event(
                payload,
                source=SOURCE,
                traceparent=current_traceparent(),
                event_id=str(
                    uuid.uuid5(EVENT_ID_NAMESPACE, f"{delivery.referral_id}:{payload.event}")
                ),
            )
        await add_to_outbox(conn, event)
