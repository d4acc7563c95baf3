"""Notify's door: consumes `referral requested`, queues it per channel, runs the delivery
worker, takes partners' replies (NATS and HTTP) in."""

import aiohttp

from notify import store
from notify.breaker import Breakers
from notify.channels import EmailSender, NatsFeed, SmsGateway, WebhookSender
from notify.directory import Directory
from notify.replies import NatsReplies, forward_refusal
from notify.settings import NotifySettings
from notify.worker import DeliveryWorker, RetryPolicy, Senders
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import (
    DeliveryChannel,
    EventPayload,
    ReferralReplyRefused,
    ReferralRequested,
)
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime

log = get_logger(__name__)


class Notify:
    """What the running service holds, for its routes and its tests."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime("notify", settings)
        self.directory = Directory.load(settings.partners_file, settings.webhook_base_url)
        self.signing_key = settings.webhook_signing_key.get_secret_value().encode()
        if not self.signing_key:
            raise SystemExit("NOTIFY_WEBHOOK_SIGNING_KEY is not set: webhooks cannot be signed")
        self.client: aiohttp.ClientSession | None = None  # made on start, in the event loop
        self.worker: DeliveryWorker | None = None
        self.replies: NatsReplies | None = None
        self.available = {DeliveryChannel.NATS, DeliveryChannel.WEBHOOK}
        if settings.smtp_host:
            self.available.add(DeliveryChannel.EMAIL)
        if settings.sms_gateway_url:
            self.available.add(DeliveryChannel.SMS)

    def senders(self, client: aiohttp.ClientSession) -> Senders:
        s = self.settings
        email = None
        if s.smtp_host:
            email = EmailSender(
                s.smtp_host,
                s.smtp_port,
                s.smtp_sender,
                starttls=s.smtp_starttls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() or None,
                timeout=s.smtp_timeout_seconds,
            )
        sms = None
        if s.sms_gateway_url:
            sms = SmsGateway(
                client,
                s.sms_gateway_url,
                s.sms_gateway_body_template,
                method=s.sms_gateway_method,
                token=s.sms_gateway_token.get_secret_value() or None,
            )
        return Senders(
            feed=NatsFeed(self.runtime.js()),
            webhook=WebhookSender(client, self.signing_key),
            email=email,
            sms=sms,
            intake_url=s.intake_public_url,
        )

    async def on_referrals_requested(
        self, conn: Connection, events: list[tuple[CloudEvent, EventPayload]]
    ) -> None:
        """Queue a batch's referrals, each on the channels its agency has, in one statement."""
        queue: list[tuple[store.Delivery, list[str]]] = []
        for event, payload in events:
            if not isinstance(payload, ReferralRequested):
                raise Rejected(f"expected a referral request, got {event.type}")
            channels = self.directory.channels_for(payload.agency_id, self.available)
            delivery = store.Delivery(
                referral_id=payload.referral_id,
                case_id=payload.case_id,
                agency_id=payload.agency_id,
                event_id=event.id,
                event_type=event.type,
                body=event.to_bytes(),
                traceparent=event.traceparent,
                channels_done=[],
                attempts=0,
            )
            queue.append((delivery, [str(c) for c in channels]))
        await store.enqueue_many(conn, queue)

    async def on_reply_refused(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        if not isinstance(payload, ReferralReplyRefused):
            raise Rejected(f"expected a refused reply, got {event.type}")
        await forward_refusal(self.runtime.js(), event, payload)

    async def start_worker(self) -> None:
        s = self.settings
        # aiohttp rather than httpx: httpx's request path was a quarter of notify's CPU per
        # referral. One session, its connection pool shared by every lane.
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.webhook_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=0),  # lanes are limited per endpoint
        )
        senders = self.senders(self.client)
        for agency_id in self.directory.agencies():  # each agency's durable feed consumer
            await senders.feed.ensure_consumer(agency_id)
        worker = DeliveryWorker(
            self.runtime.pool,
            senders,
            self.directory,
            RetryPolicy(s.max_attempts, s.backoff_base_seconds, s.backoff_cap_seconds),
            breakers=Breakers(s.breaker_threshold, s.breaker_cooldown_seconds),
            endpoint_concurrency=s.endpoint_concurrency,
            poll_interval=s.poll_interval_seconds,
        )
        worker.after_commit.append(self.runtime.wake_relay)
        self.worker = worker
        worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self.client is not None:
            await self.client.close()


def build_notify(settings: NotifySettings | None = None) -> Notify:
    notify = Notify(settings or NotifySettings())
    runtime = notify.runtime
    runtime.handle_batches(
        ReferralRequested, notify.on_referrals_requested, durable="notify-referral-requested"
    )
    replies = NatsReplies(lambda: runtime.pool, runtime.js, runtime.wake_relay)
    notify.replies = replies
    runtime.subscribe_batches(
        f"{subjects.PREFIX}.partner.*.in.>",
        durable="notify-partner-replies",
        stream=subjects.PARTNER_STREAM,
        process=replies.process,
    )
    runtime.handle(ReferralReplyRefused, notify.on_reply_refused, durable="notify-reply-refused")
    runtime.on_started.insert(0, notify.start_worker)
    runtime.on_stopping.append(notify.stop)
    return notify


def build(settings: NotifySettings | None = None) -> ServiceRuntime:
    return build_notify(settings).runtime
