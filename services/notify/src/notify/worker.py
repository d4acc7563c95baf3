"""The delivery worker: delivers each lane (agency, channel) in order, retries with backoff,
keeps dead endpoints behind a circuit breaker, and reports `delivered` or, after the last
attempt, `delivery failed` through the outbox. Pages to on-call contacts ride the same lanes
(contact, channel) and are reported as `page delivered` / `page failed`.

Why lanes: a partner must see its referrals in the order they were issued, and one partner
(or one channel) being down must never delay another. Each lane runs as its own task, one
delivery in flight at a time, so a dead endpoint's timeouts are paid by that lane only; an
endpoint's breaker, once open, stops its lanes from trying at all until the cool-down ends.
A lane whose head failed waits for the head's backoff: later referrals never overtake it.
"""

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter, Gauge

from notify import store
from notify.breaker import Breakers
from notify.channels import EmailSender, NatsFeed, Outgoing, SmsGateway, WebhookSender
from notify.directory import Directory
from notify.oncall import page_event_id, page_failed
from notify.retry import next_delay
from notify.sop_notices import NOTICE_TYPES, HowToAnswer, notice_text
from notify.templates import render_email, render_page_email, render_page_sms, render_sms
from rujuk_contracts import CloudEvent, make_event, parse_event
from rujuk_contracts.events import (
    DeliveryChannel,
    OnCallPaged,
    OnCallPageDelivered,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralRequested,
)
from rujuk_runtime.db import Connection, HeldConnection
from rujuk_runtime.logs import get_logger, logging_about
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.tasks import BackgroundTask, cancel_and_wait
from rujuk_runtime.telemetry import current_traceparent, span_from

log = get_logger(__name__)

DELIVERY_ATTEMPTS = Counter(
    "rujuk_delivery_attempts_total",
    "Delivery attempts by partner agency, channel and outcome (ok, failed)",
    ["agency_id", "channel", "outcome"],
)
REFERRALS_SETTLED = Counter(
    "rujuk_referrals_settled_total",
    "Referrals notify finished: delivered on every channel, or delivery failed",
    ["agency_id", "outcome"],
)
SOP_NOTICES_SETTLED = Counter(
    "rujuk_sop_notices_settled_total",
    "Notices of a proposed SOP version notify finished: delivered on every channel, or failed",
    ["agency_id", "outcome"],
)
PAGES_SETTLED = Counter(
    "rujuk_oncall_pages_settled_total",
    "On-call pages notify finished: delivered on at least one channel, or failed on every one",
    ["contact_id", "outcome"],
)
BREAKER_OPEN = Gauge(
    "rujuk_breaker_open",
    "Whether deliveries to an agency's channel are held back by an open circuit breaker",
    ["agency_id", "channel"],
)

RECLAIM_SECONDS = 5.0  # how often a worker looks for sends a killed worker had claimed
SOURCE = "/rujuk/notify"
# The webhook of a page carries the contact's acknowledgement code (docs/notify.md, "Paging").
ACK_CODE_HEADER = "rujuk-ack-code"
PAGE_EVENT_TYPE = OnCallPaged.event_type()
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1f0e-2f43-4d1e-9d0a-6a1b2c3d4e5f")


@dataclass
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    cap_seconds: float


@dataclass
class Senders:
    """The channels notify can deliver on; e-mail and SMS only when configured."""

    feed: NatsFeed
    webhook: WebhookSender
    email: EmailSender | None = None
    sms: SmsGateway | None = None
    intake_url: str = "http://127.0.0.1:8081"
    console_url: str = "http://127.0.0.1:8085"  # where a paged contact acknowledges
    routing_url: str = "http://127.0.0.1:8082"  # where an asked agency answers a proposal

    def available(self) -> set[DeliveryChannel]:
        channels = {DeliveryChannel.NATS, DeliveryChannel.WEBHOOK}
        if self.email is not None:
            channels.add(DeliveryChannel.EMAIL)
        if self.sms is not None:
            channels.add(DeliveryChannel.SMS)
        return channels


@dataclass
class WorkerStats:
    attempts: int = 0
    failures: int = 0
    skipped_open_breaker: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)


class DeliveryWorker(BackgroundTask):
    """The scheduler loop (``run``), woken by new sends or a lane that needs another look,
    starts a task per due lane; the lanes' batches are settled together by a settler task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        senders: Senders,
        directory: Directory,
        policy: RetryPolicy,
        *,
        breakers: Breakers | None = None,
        endpoint_concurrency: int = 4,
        poll_interval: float = 1.0,
        lease_seconds: float = 60.0,
        lane_batch: int = 20,
    ) -> None:
        super().__init__("delivery-worker")
        self._pool = pool
        self._held = HeldConnection(lambda: pool)  # the scheduler's, used on every wake
        self._senders = senders
        self._directory = directory
        self._policy = policy
        self.breakers = breakers or Breakers(threshold=5, cooldown=30.0)
        self._endpoint_concurrency = endpoint_concurrency
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._poll_interval = poll_interval
        self._lease = timedelta(seconds=lease_seconds)
        self._lane_batch = lane_batch
        self._lanes: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self._recheck: set[tuple[str, str]] = set()
        # Lane batches waiting to be settled, and the task settling them (see _settle).
        self._to_settle: list[
            tuple[list[tuple[store.Send, str | None]], list[int], asyncio.Future[None]]
        ] = []
        self._settler: asyncio.Task[None] | None = None
        self._listener: PoolConnectionProxy | None = None
        self.after_commit: list[Callable[[], None]] = []
        self.stats = WorkerStats()
        # Its leases carry this id; its listening session holds a lock on it (store).
        self.worker_id = uuid.uuid4().hex
        self._reclaimed_at = float("-inf")

    def channels_for(self, agency_id: str) -> list[DeliveryChannel]:
        return self._directory.channels_for(agency_id, self._senders.available())

    async def stopped(self) -> None:
        """The scheduler has ended: end the lanes and the settler, give the connections back."""
        tasks: list[asyncio.Task[Any]] = [*self._lanes.values()]
        if self._settler is not None:
            tasks.append(self._settler)
        await asyncio.gather(*(cancel_and_wait(task) for task in tasks))
        self._lanes.clear()
        await self._held.release()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.remove_listener(store.WAKE_CHANNEL, self._on_notify)
                await self._pool.release(self._listener)
            self._listener = None

    async def _listen(self) -> None:
        """New sends wake the worker at once (NOTIFY on commit); polling is the safety net."""
        if self._listener is not None:
            try:
                if not self._listener.is_closed():
                    return
                with contextlib.suppress(Exception):  # closed: give its slot back
                    await self._pool.release(self._listener)
            except asyncpg.InterfaceError:
                pass  # its connection closed and the pool took it back (PostgreSQL restarted)
            self._listener = None
        try:
            connection = await self._pool.acquire()
            self._listener = connection
            await store.hold_worker_lock(connection, self.worker_id)
            await connection.add_listener(store.WAKE_CHANNEL, self._on_notify)
        except Exception as exc:
            log.warning("cannot listen for new deliveries", error=type(exc).__name__)

    def _on_notify(self, *_: object) -> None:
        self.wake()

    async def run(self) -> None:
        while True:
            await self._listen()
            self.clear_wake()
            try:
                wait = await self.schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery round failed", error=type(exc).__name__,
                            detail=str(exc)[:200])  # fmt: skip
                wait = 1.0
            await self.wait_for_wake(max(0.005, wait))

    async def _reclaim_abandoned(self, conn: Connection) -> None:
        """At start and every RECLAIM_SECONDS: the sends a killed worker had claimed are due
        again now, not when their lease would have ended (a minute later)."""
        now = time.monotonic()
        if now - self._reclaimed_at < RECLAIM_SECONDS:
            return
        self._reclaimed_at = now
        reclaimed = await store.reclaim_abandoned(conn, self.worker_id)
        if reclaimed:
            log.info("sends of a stopped worker taken back", sends=reclaimed)

    async def schedule_once(self) -> float:
        """Start a task for each lane whose head is due and whose endpoint may be tried;
        return how long the scheduler may sleep."""
        async with self._held.use() as conn:
            await self._reclaim_abandoned(conn)
            heads = await store.lane_heads(conn)
        wait = self._poll_interval
        due: list[tuple[str, str]] = []
        for head in heads:
            lane = (head.agency_id, head.channel)
            if lane in self._lanes:
                self._recheck.add(lane)  # new work may have come after the lane's last claim
                continue
            if head.wait_seconds > 0:
                wait = min(wait, head.wait_seconds)
                continue
            breaker = self.breakers[self._endpoint(head.agency_id, head.channel)]
            blocked = breaker.blocked_for()
            if blocked > 0:
                self.stats.skipped_open_breaker += 1
                wait = min(wait, blocked)
                continue
            if breaker.state == "closed":
                due.append(lane)
            else:  # a trial delivery: the lane claims its one send itself
                self._start_lane(lane, None)
        if due:  # the lanes a wake finds due (a case's agencies) claimed in one statement
            for lane in due:
                self._recheck.discard(lane)  # answered by this claim
            async with self._held.use() as conn:
                claimed = await store.claim_lanes(
                    conn, due, self._lane_batch, self._lease, self.worker_id
                )
            for lane in due:
                if lane in claimed:
                    self._start_lane(lane, claimed[lane])
        return wait

    def _start_lane(self, lane: tuple[str, str], claimed: list[store.Send] | None) -> None:
        task = asyncio.create_task(
            self._run_lane(*lane, claimed=claimed), name=f"lane-{lane[0]}-{lane[1]}"
        )
        self._lanes[lane] = task
        task.add_done_callback(functools.partial(self._lane_done, lane))

    def _lane_done(self, lane: tuple[str, str], task: "asyncio.Task[bool]") -> None:
        """A lane that drained needs no new look at the queue (new work wakes the scheduler
        anyway) unless work came after its last claim; one that stopped on a failure does."""
        self._lanes.pop(lane, None)
        drained = not task.cancelled() and task.exception() is None and not task.result()
        if lane in self._recheck or not drained:
            self._recheck.discard(lane)
            self.wake()

    def _endpoint(self, agency_id: str, channel: str) -> str:
        if channel == DeliveryChannel.WEBHOOK:
            return self._directory.webhook_url(agency_id) or f"webhook:{agency_id}"
        if channel == DeliveryChannel.EMAIL and self._senders.email is not None:
            return self._senders.email.endpoint
        if channel == DeliveryChannel.SMS and self._senders.sms is not None:
            return self._senders.sms.endpoint
        return channel

    async def _run_lane(
        self, agency_id: str, channel: str, *, claimed: list[store.Send] | None = None
    ) -> bool:
        """Deliver the lane's due sends in order until one fails or none is due; True when
        the scheduler should look at the lane again (a failure, an open breaker).

        Sends are claimed a few at a time (one statement; the first batch may come
        ``claimed`` by the scheduler), tried one after another, and settled in one
        transaction; after a failure the rest go back untried."""
        endpoint = self._endpoint(agency_id, channel)
        breaker = self.breakers[endpoint]
        limit = self._limits.setdefault(endpoint, asyncio.Semaphore(self._endpoint_concurrency))
        try:
            while breaker.allow():
                batch = 1 if breaker.state != "closed" else self._lane_batch
                if claimed is not None:
                    sends, claimed = claimed, None
                else:
                    # This claim sees all work committed before it: a recheck asked for
                    # earlier is answered by it (one asked for from now on still stands).
                    self._recheck.discard((agency_id, channel))
                    async with self._pool.acquire() as conn:
                        sends = await store.claim_lane(
                            conn, agency_id, channel, batch, self._lease, self.worker_id
                        )
                if not sends:
                    breaker.release()
                    return False
                results: list[tuple[store.Send, str | None]] = []
                async with limit:
                    for send in sends:
                        error = await self._attempt(send)
                        results.append((send, error))
                        if error is not None:
                            breaker.failed()
                            break
                        breaker.succeeded()
                BREAKER_OPEN.labels(agency_id, channel).set(breaker.state == "open")
                untried = [send.send_id for send in sends[len(results) :]]
                await self._settle(results, untried)
                if results[-1][1] is not None:
                    return True
                if len(sends) < batch:
                    return False  # drained: no need for another (empty) claim
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: the lease brings the sends back
            breaker.release()
            log.warning("lane failed", agency_id=agency_id, channel=channel,
                        error=type(exc).__name__, detail=str(exc)[:200])  # fmt: skip
            return True

    async def _attempt(self, send: store.Send) -> str | None:
        """Deliver one send; None on success, else the error."""
        delivery = send.delivery
        self.stats.attempts += 1
        attributes = {
            "rujuk.case_id": delivery.case_id,
            "rujuk.agency_id": delivery.agency_id,
            "rujuk.channel": send.channel,
        }
        what = "page" if delivery.event_type == PAGE_EVENT_TYPE else "referral"
        if delivery.event_type in NOTICE_TYPES:
            what = "sop notice"
            attributes = {
                "rujuk.proposal_id": delivery.case_id,  # a notice's "case" is its proposal
                "rujuk.agency_id": delivery.agency_id,
                "rujuk.channel": send.channel,
            }
        with span_from(f"notify deliver {what}", delivery.traceparent, attributes):
            try:
                if what == "page":
                    await self._deliver_page(send)
                elif what == "sop notice" and send.channel in (
                    DeliveryChannel.EMAIL,
                    DeliveryChannel.SMS,
                ):
                    await self._deliver_notice_text(send)
                else:
                    await self._deliver(send)
                return None
            except Exception as exc:  # DeliveryError, or NATS away: retry later
                self.stats.failures += 1
                return f"{send.channel}: {exc}"[:500]

    async def _deliver(self, send: store.Send) -> None:
        delivery = send.delivery
        channel = send.channel
        if channel in (DeliveryChannel.NATS, DeliveryChannel.WEBHOOK):
            outgoing = Outgoing(
                agency_id=delivery.agency_id,
                event_id=delivery.event_id,
                event_name=".".join(delivery.event_type.split(".")[2:4]),
                body=delivery.body,
                traceparent=delivery.traceparent,
            )
            if channel == DeliveryChannel.NATS:
                await self._senders.feed.deliver(outgoing)
                return
            url = self._directory.webhook_url(delivery.agency_id)
            if url is None:
                raise RuntimeError("no webhook URL for this agency any more")
            await self._senders.webhook.deliver(outgoing, url)
            return
        referral = parse_event(delivery.body)[1]
        if not isinstance(referral, ReferralRequested):
            raise RuntimeError(f"cannot render {delivery.event_type} as a message")
        entry = self._directory.entry(delivery.agency_id)
        language = entry.language
        if channel == DeliveryChannel.EMAIL and self._senders.email and entry.email:
            mail = render_email(referral, language, self._senders.intake_url)
            await self._senders.email.deliver(entry.email, mail.subject, mail.text,
                                              delivery.event_id)  # fmt: skip
        elif channel == DeliveryChannel.SMS and self._senders.sms and entry.sms_number:
            sms = render_sms(referral, language, self._senders.intake_url)
            await self._senders.sms.deliver(entry.sms_number, sms.text, delivery.referral_id,
                                            delivery.event_id)  # fmt: skip
        else:
            raise RuntimeError(f"channel {channel} is not configured for this agency any more")

    async def _deliver_notice_text(self, send: store.Send) -> None:
        """A notice of a proposed SOP version by e-mail or SMS (its feed and webhook carry the
        CloudEvent, as a referral's do); its idempotency key is the notice's own event id."""
        notice = send.delivery
        event, payload = parse_event(notice.body)
        senders, entry = self._senders, self._directory.entry(notice.agency_id)
        how = HowToAnswer(console_url=senders.console_url, routing_url=senders.routing_url)
        text = notice_text(payload, notice.agency_id, how, at=event.time)
        if send.channel == DeliveryChannel.EMAIL and senders.email and entry.email:
            await senders.email.deliver(entry.email, text.subject, text.body, notice.event_id)
        elif send.channel == DeliveryChannel.SMS and senders.sms and entry.sms_number:
            await senders.sms.deliver(entry.sms_number, text.sms, notice.referral_id,
                                      notice.event_id)  # fmt: skip
        else:
            raise RuntimeError(f"channel {send.channel} is not configured for this agency any more")

    async def _deliver_page(self, send: store.Send) -> None:
        """One round's page to one on-call contact on one channel; its idempotency key (the
        webhook-id, the e-mail's Message-ID, the SMS gateway's Idempotency-Key) is the page
        id, one per (alert, round, contact)."""
        page = send.delivery
        paged = parse_event(page.body)[1]
        if not isinstance(paged, OnCallPaged):
            raise RuntimeError(f"{page.referral_id} is not an on-call page")
        async with self._pool.acquire() as conn:
            code = await store.ack_code_of(conn, paged.alert_id, page.agency_id)
        if code is None:
            raise RuntimeError(f"no acknowledgement code for page {page.referral_id}")
        entry = self._directory.entry(page.agency_id)
        channel, senders = send.channel, self._senders
        if channel == DeliveryChannel.WEBHOOK:
            url = self._directory.webhook_url(page.agency_id)
            if url is None:
                raise RuntimeError("no webhook URL for this contact any more")
            outgoing = Outgoing(
                agency_id=page.agency_id,
                event_id=page.referral_id,
                event_name="oncall.paged",
                body=page.body,
                traceparent=page.traceparent,
            )
            await senders.webhook.deliver(outgoing, url, {ACK_CODE_HEADER: code})
        elif channel == DeliveryChannel.EMAIL and senders.email and entry.email:
            mail = render_page_email(paged, entry.language, code, senders.console_url)
            await senders.email.deliver(entry.email, mail.subject, mail.text, page.referral_id)
        elif channel == DeliveryChannel.SMS and senders.sms and entry.sms_number:
            sms = render_page_sms(paged, entry.language, code, senders.console_url)
            await senders.sms.deliver(entry.sms_number, sms.text, page.referral_id,
                                      page.referral_id)  # fmt: skip
        else:
            raise RuntimeError(f"channel {channel} is not configured for this contact any more")

    async def _settle(
        self, results: list[tuple[store.Send, str | None]], untried: list[int]
    ) -> None:
        """Settle a lane batch, together with the batches other lanes finish meanwhile: one
        transaction for all of them (a case's referrals go to several agencies on two
        channels each, and their lanes finish within milliseconds of each other). The
        lane goes on once its batch is committed."""
        done = asyncio.get_running_loop().create_future()
        self._to_settle.append((results, untried, done))
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_waiting(), name="settler")
        await done

    async def _settle_waiting(self) -> None:
        while self._to_settle:
            waiting, self._to_settle = self._to_settle, []
            results = sorted(  # each lane's in order of issue (send ids), as one lane's are
                (r for lane_results, _, _ in waiting for r in lane_results),
                key=lambda result: result[0].send_id,
            )
            untried = [send_id for _, lane_untried, _ in waiting for send_id in lane_untried]
            try:
                await self._settle_now(results, untried)
            except Exception as exc:  # each lane handles it (the lease brings its sends back)
                for _, _, done in waiting:
                    if not done.done():
                        done.set_exception(exc)
            except BaseException:  # cancelled (stopping): no lane may wait for ever
                for _, _, done in [*waiting, *self._to_settle]:
                    done.cancel()
                self._to_settle = []
                raise
            else:
                for _, _, done in waiting:
                    if not done.done():
                        done.set_result(None)

    async def _settle_now(
        self, results: list[tuple[store.Send, str | None]], untried: list[int]
    ) -> None:
        """Settle in one transaction: one statement for every send, one for the reports of
        the referrals it finished (and, only after a failure, the failure's own)."""
        tried = [self._tried(send, error) for send, error in results]
        async with self._pool.acquire() as conn, conn.transaction():
            finished = await store.settle(conn, tried)
            for send, error in results:
                DELIVERY_ATTEMPTS.labels(
                    send.delivery.agency_id, send.channel, "ok" if error is None else "failed"
                ).inc()
            deliveries = {send.delivery.referral_id: send.delivery for send, _ in results}
            events = []
            for f in finished:
                delivery = deliveries[f.referral_id]
                if delivery.event_type in NOTICE_TYPES:
                    await self._finish_notice(conn, delivery, f)
                    continue
                with logging_about(*_ids(delivery)):  # its lines name the case, event, trace
                    events.append(await self._finish(conn, delivery, f))
            await add_to_outbox(conn, *events)
            await store.unclaim(conn, untried)
        if finished:
            for callback in self.after_commit:
                callback()

    def _tried(self, send: store.Send, error: str | None) -> store.Tried:
        """What to record of one attempt: done, failed to be retried after a backoff, or failed
        for good after the last attempt."""
        retry_in: timedelta | None = None
        if error is not None and send.attempt < self._policy.max_attempts:
            delay = next_delay(
                send.attempt, base=self._policy.base_seconds, cap=self._policy.cap_seconds
            )
            retry_in = timedelta(seconds=delay)
            with logging_about(*_ids(send.delivery)):
                log.info("referral delivery will be retried", referral_id=send.delivery.referral_id,
                         channel=send.channel, attempt=send.attempt,
                         retry_in=round(delay, 2))  # fmt: skip
        return store.Tried(send, error is None, error or "ok", retry_in)

    async def _finish(
        self, conn: Connection, delivery: store.Delivery, finished: store.Finished
    ) -> CloudEvent:
        """Every channel is settled: `delivered` (the settle marked it so), or `delivery
        failed` with the reason (marked here); the event that reports it."""
        if delivery.event_type == PAGE_EVENT_TYPE:
            return await self._finish_page(conn, delivery, finished)
        done, attempts = finished.channels_done, finished.attempts
        payload: ReferralDelivered | ReferralDeliveryFailed
        if finished.failed_sends == 0:
            REFERRALS_SETTLED.labels(delivery.agency_id, "delivered").inc()
            payload = ReferralDelivered(
                case_id=delivery.case_id,
                referral_id=delivery.referral_id,
                agency_id=delivery.agency_id,
                channels=[DeliveryChannel(c) for c in done],
                attempts=attempts,
            )
            # DEBUG: the ledger and rujuk_referrals_settled_total say it; failures are WARNING
            log.debug("referral delivered", referral_id=delivery.referral_id,
                      agency_id=delivery.agency_id, channels=done, attempts=attempts)  # fmt: skip
        else:
            failed = [o for o in await store.sends_of(conn, delivery.referral_id)
                      if o.state == "failed"]  # fmt: skip
            reason = "; ".join(f"{o.last_error}" for o in failed)
            if done:
                reason += f" (delivered on {', '.join(done)})"
            await store.mark_failed(conn, delivery.referral_id, attempts, reason)
            REFERRALS_SETTLED.labels(delivery.agency_id, "delivery_failed").inc()
            payload = ReferralDeliveryFailed(
                case_id=delivery.case_id,
                referral_id=delivery.referral_id,
                agency_id=delivery.agency_id,
                reason=reason[:500],
                attempts=attempts,
            )
            log.warning("referral delivery failed", referral_id=delivery.referral_id,
                        agency_id=delivery.agency_id, attempts=attempts,
                        reason=reason[:200])  # fmt: skip
        attributes = {"rujuk.case_id": delivery.case_id, "rujuk.agency_id": delivery.agency_id}
        with span_from("notify report delivery", delivery.traceparent, attributes):
            return make_event(
                payload,
                source=SOURCE,
                traceparent=current_traceparent(),
                event_id=str(
                    uuid.uuid5(EVENT_ID_NAMESPACE, f"{delivery.referral_id}:{payload.event}")
                ),
            )

    async def _finish_notice(
        self, conn: Connection, notice: store.Delivery, finished: store.Finished
    ) -> None:
        """Every channel of a notice is settled: logged and counted, not reported on the bus
        (the proposal shows who answered; a failure is a WARNING and a metric for ops)."""
        if finished.failed_sends == 0:
            SOP_NOTICES_SETTLED.labels(notice.agency_id, "delivered").inc()
            log.info("sop notice delivered", notice=notice.referral_id,
                     channels=finished.channels_done, attempts=finished.attempts)  # fmt: skip
            return
        failed = [o for o in await store.sends_of(conn, notice.referral_id)
                  if o.state == "failed"]  # fmt: skip
        reason = "; ".join(f"{o.last_error}" for o in failed)
        await store.mark_failed(conn, notice.referral_id, finished.attempts, reason)
        SOP_NOTICES_SETTLED.labels(notice.agency_id, "failed").inc()
        log.warning("sop notice failed", notice=notice.referral_id,
                    delivered_on=finished.channels_done, reason=reason[:200])  # fmt: skip

    async def _finish_page(
        self, conn: Connection, page: store.Delivery, finished: store.Finished
    ) -> CloudEvent:
        """Every channel of a page is settled: `page delivered` when at least one channel took
        it (a person was reached; those that failed are named in the log), else `page failed`
        with each channel's last error."""
        paged = parse_event(page.body)[1]
        assert isinstance(paged, OnCallPaged)  # queued from one (handlers.OnCallPages)
        done, attempts, contact_id = finished.channels_done, finished.attempts, page.agency_id
        attributes = {"rujuk.case_id": page.case_id, "rujuk.contact_id": contact_id}
        failed: list[store.SendOutcome] = []
        reason = ""
        if finished.failed_sends:
            failed = [o for o in await store.sends_of(conn, page.referral_id)
                      if o.state == "failed"]  # fmt: skip
            reason = "; ".join(f"{o.last_error}" for o in failed)
            await store.mark_failed(conn, page.referral_id, attempts, reason)
        with span_from("notify report page", page.traceparent, attributes):
            if not done:
                PAGES_SETTLED.labels(contact_id, "failed").inc()
                log.warning("on-call page failed", alert_id=paged.alert_id, round=paged.round,
                            contact_id=contact_id, reason=reason[:200])  # fmt: skip
                return page_failed(paged, contact_id, reason, attempts, current_traceparent())
            PAGES_SETTLED.labels(contact_id, "delivered").inc()
            if failed:
                log.warning("on-call page delivered on some channels only",
                            alert_id=paged.alert_id, round=paged.round, contact_id=contact_id,
                            delivered_on=done, failed=[o.channel for o in failed])  # fmt: skip
            payload = OnCallPageDelivered(
                case_id=page.case_id,
                alert_id=paged.alert_id,
                round=paged.round,
                contact_id=contact_id,
                channels=[DeliveryChannel(c) for c in done],
                attempts=attempts,
            )
            return make_event(
                payload,
                source=SOURCE,
                traceparent=current_traceparent(),
                event_id=page_event_id(page.referral_id, payload.event),
            )


def _ids(delivery: store.Delivery) -> tuple[str, str, str | None]:
    """What notify's log lines about a delivery carry: its case, the referral.requested event
    it delivers and that event's trace."""
    return delivery.case_id, delivery.event_id, delivery.traceparent
