"""Notify's composition root: the runtime, the directory, the bus handlers (referrals to
deliver, on-call pages, partners' replies and SOP answers, routing's refusals, SOP proposals'
notices), the delivery worker and its channels, the token verifier, and the HTTP app."""

import aiohttp
from fastapi import FastAPI

from notify import http
from notify.breaker import Breakers
from notify.channels import EmailSender, NatsFeed, SmsGateway, WebhookSender
from notify.directory import Directory
from notify.handlers import (
    NatsReplies,
    OnCallPages,
    ReferralRequests,
    RefusalForwarder,
    SopNotices,
)
from notify.settings import NotifySettings
from notify.worker import DeliveryWorker, RetryPolicy, Senders
from rujuk_contracts import subjects
from rujuk_contracts.events import (
    DeliveryChannel,
    OnCallPaged,
    ReferralReplyRefused,
    ReferralRequested,
    SopAnswerRefused,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
)
from rujuk_runtime.access import TokenVerifier, follow_tokens
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.webapp import service_app


class Notify:
    """The running service's parts, for its app and its tests: the runtime, the directory,
    the NATS reply consumer and, once started, the delivery worker and its HTTP client."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime("notify", settings)
        self.directory = Directory.load(settings.partners_file, settings.webhook_base_url)
        self.signing_key = settings.webhook_signing_key.get_secret_value().encode()
        if not self.signing_key:
            raise SystemExit("NOTIFY_WEBHOOK_SIGNING_KEY is not set: webhooks cannot be signed")
        self.client: aiohttp.ClientSession | None = None  # made on start, in the event loop
        self.worker: DeliveryWorker | None = None
        self.available = {DeliveryChannel.NATS, DeliveryChannel.WEBHOOK}
        if settings.smtp_host:
            self.available.add(DeliveryChannel.EMAIL)
        if settings.sms_gateway_url:
            self.available.add(DeliveryChannel.SMS)
        runtime = self.runtime
        self.replies = NatsReplies(lambda: runtime.pool, runtime.js, runtime.wake_relay)

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
            console_url=s.console_public_url,
            routing_url=s.routing_public_url,
        )

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
    """Notify's runtime with its bus handlers and its worker, without the HTTP app."""
    notify = Notify(settings or NotifySettings())
    runtime = notify.runtime
    requests = ReferralRequests(notify.directory, notify.available)
    runtime.handle_batches(
        ReferralRequested, requests.on_referrals_requested, durable="notify-referral-requested"
    )
    pages = OnCallPages(notify.directory, notify.available)
    runtime.handle_batches(OnCallPaged, pages.on_paged, durable="notify-oncall-paged")
    runtime.subscribe_batches(
        f"{subjects.PREFIX}.partner.*.in.>",
        durable="notify-partner-replies",
        stream=subjects.PARTNER_STREAM,
        process=notify.replies.process,
    )
    refusals = RefusalForwarder(runtime.js)
    runtime.handle(ReferralReplyRefused, refusals.on_reply_refused, durable="notify-reply-refused")
    notices = SopNotices(notify.directory, notify.available)
    runtime.handle(SopProposed, notices.on_proposed, durable="notify-sop-proposed")
    runtime.handle(SopProposalWithdrawn, notices.on_closed, durable="notify-sop-proposal-withdrawn")
    runtime.handle(SopPublished, notices.on_closed, durable="notify-sop-published")
    runtime.handle(
        SopAnswerRefused, refusals.on_sop_answer_refused, durable="notify-sop-answer-refused"
    )
    runtime.on_started.insert(0, notify.start_worker)
    runtime.on_stopping.append(notify.stop)
    return notify


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    notify = build_notify(settings)
    runtime = notify.runtime
    verifier = TokenVerifier(lambda: runtime.pool, ttl=settings.token_cache_seconds)
    follow_tokens(runtime, verifier)
    return service_app(
        runtime,
        title="rujuk notify",
        version="1.0.0",
        summary="Partners' replies to referrals; referrals as FHIR R4 resources; on-call "
        "contacts' replies to pages.",
        routers=[http.router],
        state={"notify": notify, "verifier": verifier, "settings": settings},
        max_body_bytes=settings.max_body_bytes,
    )
