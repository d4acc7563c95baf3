"""Notify's door: consumes `referral requested`, queues it, and runs the delivery worker."""

import httpx

from notify import store
from notify.channels import NatsFeed, WebhookSender
from notify.directory import WebhookDirectory
from notify.settings import NotifySettings
from notify.worker import DeliveryWorker, RetryPolicy
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import EventPayload, ReferralRequested
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.service import ServiceRuntime


def build(settings: NotifySettings | None = None) -> ServiceRuntime:
    settings = settings or NotifySettings()
    runtime = ServiceRuntime("notify", settings)
    directory = WebhookDirectory.load(settings.partners_file, settings.webhook_base_url)
    signing_key = settings.webhook_signing_key.get_secret_value().encode()
    if not signing_key:
        raise SystemExit("NOTIFY_WEBHOOK_SIGNING_KEY is not set: webhooks cannot be signed")
    client = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds)
    workers: list[DeliveryWorker] = []

    async def on_referral_requested(
        conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        if not isinstance(payload, ReferralRequested):
            raise Rejected(f"expected a referral request, got {event.type}")
        await store.enqueue(
            conn,
            store.Delivery(
                referral_id=payload.referral_id,
                case_id=payload.case_id,
                agency_id=payload.agency_id,
                event_id=event.id,
                event_type=event.type,
                body=event.to_bytes(),
                traceparent=event.traceparent,
                channels_done=[],
                attempts=0,
            ),
        )

    runtime.handle(ReferralRequested, on_referral_requested, durable="notify-referral-requested")

    async def start_worker() -> None:
        worker = DeliveryWorker(
            runtime.pool,
            NatsFeed(runtime.js()),
            WebhookSender(client, signing_key),
            directory,
            RetryPolicy(
                settings.max_attempts, settings.backoff_base_seconds, settings.backoff_cap_seconds
            ),
        )
        worker.after_commit.append(runtime.wake_relay)
        worker.start()
        workers.append(worker)

    runtime.on_started.append(start_worker)
    runtime.on_stopping.append(lambda: _stop_all(workers, client))
    return runtime


async def _stop_all(workers: list[DeliveryWorker], client: httpx.AsyncClient) -> None:
    for worker in workers:
        await worker.stop()
    await client.aclose()
