"""Settling lane batches in one statement, on real PostgreSQL: a batch where one channel fails
mid-way reports the right referrals once each, in order, and retries the failed one; the two
channels of the same referrals settled at the same time report each referral exactly once,
without deadlocking whatever order their batches come in; lanes that finish together are
settled together, in one transaction; and two replicas racing for the same lanes send each
send once, in order."""

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import asyncpg
import pytest

from notify import store
from notify.channels import DeliveryError, NatsFeed, Outgoing, WebhookSender
from notify.directory import AgencyChannels, Directory
from notify.worker import EVENT_ID_NAMESPACE, DeliveryWorker, RetryPolicy, Senders
from rujuk_contracts import make_event, parse_event
from rujuk_contracts.events import ReferralDelivered, ReferralDeliveryFailed, ReferralRequested
from rujuk_runtime.db import Connection, create_pool
from tests.integration.test_notify_support import referral

pytestmark = pytest.mark.integration

AGENCY = "rsud-bangil"
LEASE = timedelta(seconds=60)


@dataclass
class FakeChannel:
    """A partner's channel: takes what it is given, in order, unless told to refuse it."""

    refuse: dict[str, int] = field(default_factory=dict)  # referral id -> refusals left
    got: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None  # while set to an unset event, deliveries wait
    delivering: asyncio.Event = field(default_factory=asyncio.Event)  # one has begun

    async def deliver(self, message: Outgoing, url: str | None = None) -> str:
        self.delivering.set()
        if self.hold is not None:
            await self.hold.wait()
        payload = parse_event(message.body)[1]
        assert isinstance(payload, ReferralRequested)
        referral_id = payload.referral_id
        if self.refuse.get(referral_id, 0) > 0:
            self.refuse[referral_id] -= 1
            raise DeliveryError("HTTP 503")
        self.got.append(referral_id)
        return "ok"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "notify")
    yield pool
    await pool.close()


def worker_for(
    pool: asyncpg.Pool, feed: FakeChannel, webhook: FakeChannel, *, max_attempts: int = 5,
    lane_batch: int = 20,
) -> DeliveryWorker:  # fmt: skip
    directory = Directory({AGENCY: AgencyChannels(webhook_url="http://partner.invalid/hook")}, None)
    senders = Senders(feed=cast(NatsFeed, feed), webhook=cast(WebhookSender, webhook))
    policy = RetryPolicy(max_attempts=max_attempts, base_seconds=0.05, cap_seconds=0.05)
    return DeliveryWorker(pool, senders, directory, policy, lane_batch=lane_batch)


async def enqueue(pool: asyncpg.Pool, count: int, channels: list[str]) -> list[str]:
    """Queue ``count`` referrals to AGENCY on ``channels``; their ids, in the order queued
    (which is also their sort order)."""
    async with pool.acquire() as conn:
        return [await enqueue_to(conn, AGENCY, n, channels) for n in range(count)]


def delivery_for(agency: str, n: int) -> store.Delivery:
    """The ``n``th referral to ``agency``, as notify queues it."""
    payload = referral(agency, n)
    event = make_event(payload, source="/rujuk/routing")
    return store.Delivery(payload.referral_id, payload.case_id, agency, event.id, event.type,
                          event.to_bytes(), None, [], 0)  # fmt: skip


async def enqueue_to(conn: Connection, agency: str, n: int, channels: list[str]) -> str:
    """Queue the ``n``th referral to ``agency`` on ``channels``; its id."""
    delivery = delivery_for(agency, n)
    assert await store.enqueue_many(conn, [(delivery, channels)]) == 1
    return delivery.referral_id


def agencies_worker(
    pool: asyncpg.Pool, agencies: list[str], feed: FakeChannel, webhook: FakeChannel,
    *, lane_batch: int = 20,
) -> DeliveryWorker:  # fmt: skip
    """A worker for several agencies, each with a webhook of its own."""
    directory = Directory(
        {a: AgencyChannels(webhook_url=f"http://partner.invalid/{a}") for a in agencies}, None
    )
    senders = Senders(feed=cast(NatsFeed, feed), webhook=cast(WebhookSender, webhook))
    policy = RetryPolicy(max_attempts=5, base_seconds=0.05, cap_seconds=0.05)
    return DeliveryWorker(pool, senders, directory, policy, lane_batch=lane_batch)


async def reports(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """(event id, event name, referral id) of every staged report, in the order published."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT event_id, body FROM outbox ORDER BY seq")
    staged = []
    for row in rows:
        event, payload = parse_event(bytes(row["body"]))
        assert isinstance(payload, ReferralDelivered | ReferralDeliveryFailed)
        assert event.id == row["event_id"]
        staged.append((event.id, payload.event, payload.referral_id))
    return staged


def report_id(referral_id: str, event: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{referral_id}:{event}"))


@pytest.mark.parametrize("final", [False, True], ids=["retried", "failed-for-good"])
async def test_a_batch_failing_mid_way_reports_those_before_once_in_order_and_the_rest_later(
    pool: asyncpg.Pool, final: bool
) -> None:
    feed, webhook = FakeChannel(), FakeChannel()
    worker = worker_for(pool, feed, webhook, max_attempts=1 if final else 5)
    ids = await enqueue(pool, 5, ["nats", "webhook"])
    webhook.refuse[ids[2]] = 1

    # The feed takes all five: each is half done, none reported yet.
    assert await worker._run_lane(AGENCY, "nats") is False
    assert feed.got == ids
    assert await reports(pool) == []

    # The webhook takes two, refuses the third: the two are reported (in order), the third
    # waits for its backoff (or, after its last attempt, is reported failed), the last two go
    # back untried.
    assert await worker._run_lane(AGENCY, "webhook") is True
    assert webhook.got == ids[:2]
    expected = [(report_id(i, "delivered"), "delivered", i) for i in ids[:2]]
    if final:
        expected.append((report_id(ids[2], "delivery_failed"), "delivery_failed", ids[2]))
    assert await reports(pool) == expected
    async with pool.acquire() as conn:
        states = {
            r["referral_id"]: (r["state"], r["pending_sends"], r["attempts"], r["last_error"])
            for r in await conn.fetch("SELECT * FROM deliveries")
        }
        sends = {
            r["referral_id"]: (r["state"], r["attempts"])
            for r in await conn.fetch("SELECT * FROM sends WHERE channel = 'webhook'")
        }
        attempts = await conn.fetch(
            "SELECT referral_id, channel, attempt, ok, detail FROM delivery_attempts ORDER BY id"
        )
    assert states[ids[0]] == states[ids[1]] == ("delivered", 0, 1, None)
    assert sends[ids[2]] == (("failed", 1) if final else ("pending", 1))
    if final:
        assert states[ids[2]][:3] == ("failed", 0, 1)
        assert states[ids[2]][3] == "webhook: HTTP 503 (delivered on nats)"
    else:
        assert states[ids[2]] == ("pending", 1, 1, None)
    assert states[ids[3]] == states[ids[4]] == ("pending", 1, 1, None)
    assert sends[ids[3]] == sends[ids[4]] == ("pending", 0)  # untried: no attempt counted
    assert [(r["referral_id"], r["channel"], r["ok"]) for r in attempts] == [
        *((i, "nats", True) for i in ids),
        (ids[0], "webhook", True),
        (ids[1], "webhook", True),
        (ids[2], "webhook", False),
    ]
    assert attempts[-1]["detail"] == "webhook: HTTP 503"

    # After the backoff the lane goes on from where it stopped; nothing is reported twice.
    await asyncio.sleep(0.1)
    assert await worker._run_lane(AGENCY, "webhook") is False
    assert webhook.got == ([*ids[:2], *ids[3:]] if final else ids)
    expected += [(report_id(i, "delivered"), "delivered", i) for i in ids[2 if not final else 3 :]]
    assert await reports(pool) == expected


async def settle_all(conn: asyncpg.Connection, sends: list[store.Send]) -> list[str]:
    return [
        f.referral_id
        for f in await store.settle(conn, [store.Tried(s, True, "ok", None) for s in sends])
    ]


async def blocked_on_locks(conn: asyncpg.Connection, count: int) -> None:
    """Wait until ``count`` sessions of this database wait for a lock."""
    async with asyncio.timeout(10):
        while (
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            < count
        ):
            await asyncio.sleep(0.02)


async def test_both_channels_settled_at_once_report_each_referral_once_and_never_deadlock(
    pool: asyncpg.Pool,
) -> None:
    ids = await enqueue(pool, 5, ["nats", "webhook"])
    async with pool.acquire() as conn:
        nats = await store.claim_lane(conn, AGENCY, "nats", 20, LEASE, "uji")
        webhook = await store.claim_lane(conn, AGENCY, "webhook", 20, LEASE, "uji")
    async with (
        pool.acquire() as blocker,
        pool.acquire() as first,
        pool.acquire() as second,
        pool.acquire() as watcher,
    ):
        # One session holds the middle referral's row; the nats batch takes the rows before
        # it and waits. The webhook batch comes in the opposite order: were rows locked in
        # the order given, it would hold the last two and the two would deadlock once the
        # middle row is free. Locked in referral order, it waits behind the nats batch.
        blocker_tx = blocker.transaction()
        await blocker_tx.start()
        await blocker.execute(
            "SELECT 1 FROM deliveries WHERE referral_id = $1 FOR NO KEY UPDATE", ids[2]
        )
        first_tx, second_tx = first.transaction(), second.transaction()
        await first_tx.start()
        await second_tx.start()
        nats_settle = asyncio.create_task(settle_all(first, nats))
        await blocked_on_locks(watcher, 1)
        webhook_settle = asyncio.create_task(settle_all(second, webhook[::-1]))
        await blocked_on_locks(watcher, 2)
        await blocker_tx.rollback()
        assert await asyncio.wait_for(nats_settle, 10) == []  # half done: nothing to report
        await first_tx.commit()
        # The webhook batch counted from the rows as the nats batch left them: all done.
        assert await asyncio.wait_for(webhook_settle, 10) == ids[::-1]
        await second_tx.commit()
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM deliveries ORDER BY referral_id")
    assert [(r["state"], r["pending_sends"], r["channels_done"]) for r in rows] == [
        ("delivered", 0, ["nats", "webhook"])
    ] * 5


async def test_lanes_running_side_by_side_report_every_referral_exactly_once(
    pool: asyncpg.Pool,
) -> None:
    feed, webhook = FakeChannel(), FakeChannel()
    worker = worker_for(pool, feed, webhook, lane_batch=3)
    ids = await enqueue(pool, 30, ["nats", "webhook"])
    # Every third referral is refused once on one channel or the other: batches of the two
    # lanes stop at different places, and retried sends settle beside fresh ones.
    for n, referral_id in enumerate(ids):
        if n % 3 == 0:
            (feed if n % 2 else webhook).refuse[referral_id] = 1
    async with asyncio.timeout(20):
        while True:
            await asyncio.gather(
                worker._run_lane(AGENCY, "nats"), worker._run_lane(AGENCY, "webhook")
            )
            if len(feed.got) == len(webhook.got) == len(ids):
                break
            await asyncio.sleep(0.06)  # the backoff
    assert feed.got == webhook.got == ids
    # Each referral is reported by whichever lane passed it second: once, and in order.
    assert await reports(pool) == [(report_id(i, "delivered"), "delivered", i) for i in ids]


async def test_a_lane_that_claimed_the_new_work_itself_asks_for_no_extra_look(
    pool: asyncpg.Pool,
) -> None:
    for batch, wakes in ((1, False), (20, True)):
        hold = asyncio.Event()
        feed = FakeChannel(hold=hold)
        worker = worker_for(pool, feed, FakeChannel(), lane_batch=batch)
        [first] = await enqueue(pool, 1, ["nats"])
        await worker.schedule_once()  # starts the lane: it delivers `first` and waits
        [lane] = worker._lanes.values()
        await asyncio.wait_for(feed.delivering.wait(), 10)  # its claim is made
        [second] = await enqueue(pool, 1, ["nats"])
        await worker.schedule_once()  # the lane is busy: it is to be looked at again
        hold.set()
        await lane
        await asyncio.sleep(0)  # the task's done callback
        # Batches of one: the lane's next claim took `second`, so nothing is left to look
        # at. Batches of twenty: `first` was all its claim found; it drained without
        # `second`, which the scheduler must now be woken for.
        assert feed.got == ([first, second] if not wakes else [first])
        assert worker.woken is wakes
        if wakes:
            assert await worker._run_lane(AGENCY, "nats") is False
            assert feed.got == [first, second]
        await worker.stop()  # gives the scheduler's connection back


async def test_a_batch_of_requests_is_queued_at_once_with_each_lane_in_order_of_issue(
    pool: asyncpg.Pool,
) -> None:
    [seen_before] = await enqueue(pool, 1, ["nats"])
    queue = []
    for n in range(1, 4):
        payload = referral(AGENCY, n)
        event = make_event(payload, source="/rujuk/routing")
        delivery = store.Delivery(payload.referral_id, payload.case_id, AGENCY, event.id,
                                  event.type, event.to_bytes(), None, [], 0)  # fmt: skip
        queue.append((delivery, ["nats", "webhook"] if n != 2 else ["webhook"]))
    first = await pool.fetchrow("SELECT * FROM deliveries WHERE referral_id = $1", seen_before)
    repeat = store.Delivery(seen_before, first["case_id"], AGENCY, first["event_id"],
                            first["event_type"], bytes(first["body"]), None, [], 0)  # fmt: skip

    async with pool.acquire() as conn, conn.transaction():
        assert await store.enqueue_many(conn, [(repeat, ["webhook"]), *queue]) == 3

    rows = await pool.fetch("SELECT referral_id, channel FROM sends ORDER BY id")
    ids = [d.referral_id for d, _ in queue]
    assert [(r["referral_id"], r["channel"]) for r in rows] == [
        (seen_before, "nats"),  # queued before: not again, and no webhook added
        (ids[0], "nats"), (ids[0], "webhook"),
        (ids[1], "webhook"),
        (ids[2], "nats"), (ids[2], "webhook"),
    ]  # fmt: skip
    pending = await pool.fetch("SELECT referral_id, pending_sends FROM deliveries ORDER BY 1")
    assert {r["referral_id"]: r["pending_sends"] for r in pending} == {
        seen_before: 1, ids[0]: 2, ids[1]: 1, ids[2]: 2
    }  # fmt: skip


async def test_lanes_finishing_together_are_settled_in_one_transaction(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    feed, webhook = FakeChannel(hold=gate), FakeChannel(hold=gate)
    worker = worker_for(pool, feed, webhook)
    ids = await enqueue(pool, 4, ["nats", "webhook"])
    settled: list[list[tuple[str, str]]] = []
    real_settle = store.settle

    async def counting_settle(conn: Connection, tried: list[store.Tried]) -> list[store.Finished]:
        settled.append([(t.send.delivery.referral_id, t.send.channel) for t in tried])
        return await real_settle(conn, tried)

    monkeypatch.setattr(store, "settle", counting_settle)
    lanes = asyncio.gather(worker._run_lane(AGENCY, "nats"), worker._run_lane(AGENCY, "webhook"))
    await asyncio.wait_for(feed.delivering.wait(), 5)
    await asyncio.wait_for(webhook.delivering.wait(), 5)
    gate.set()  # both lanes deliver their batch and settle at the same moment
    assert list(await asyncio.wait_for(lanes, 10)) == [False, False]

    assert len(settled) == 1  # one transaction for both lanes, instead of one each
    assert sorted(settled[0]) == sorted((i, c) for i in ids for c in ("nats", "webhook"))
    assert await reports(pool) == [(report_id(i, "delivered"), "delivered", i) for i in ids]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT state, pending_sends FROM deliveries")
    assert [(r["state"], r["pending_sends"]) for r in rows] == [("delivered", 0)] * len(ids)


async def test_lanes_waiting_on_a_settle_that_is_cancelled_do_not_wait_for_ever(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed, webhook = FakeChannel(), FakeChannel()
    worker = worker_for(pool, feed, webhook)
    await enqueue(pool, 2, ["nats", "webhook"])
    writing, never = asyncio.Event(), asyncio.Event()

    async def stuck_settle(conn: Connection, tried: list[store.Tried]) -> list[store.Finished]:
        writing.set()
        await never.wait()  # a settle that does not come back (the worker is stopping)
        return []

    monkeypatch.setattr(store, "settle", stuck_settle)
    first = asyncio.create_task(worker._run_lane(AGENCY, "nats"))
    await asyncio.wait_for(writing.wait(), 5)
    second = asyncio.create_task(worker._run_lane(AGENCY, "webhook"))  # queued behind it
    await asyncio.wait_for(webhook.delivering.wait(), 5)
    await asyncio.sleep(0.05)
    assert worker._settler is not None
    worker._settler.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
    assert [type(o) for o in outcomes] == [asyncio.CancelledError] * 2
    assert worker._to_settle == []


async def test_the_lanes_a_wake_finds_due_are_claimed_in_one_statement(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    agencies = [AGENCY, "pkm-uji", "polres-uji"]
    feed, webhook = FakeChannel(), FakeChannel()
    worker = agencies_worker(pool, agencies, feed, webhook)
    async with pool.acquire() as conn:  # a case to each agency, twice: two sends per lane
        issued = [
            await enqueue_to(conn, agency, n, ["nats", "webhook"])
            for n in range(2)
            for agency in agencies
        ]
    lane_claims: list[tuple[str, str]] = []
    one_lane = store.claim_lane

    async def counting_claim_lane(conn: Connection, agency_id: str, channel: str, *args: object):  # type: ignore[no-untyped-def]
        lane_claims.append((agency_id, channel))
        return await one_lane(conn, agency_id, channel, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "claim_lane", counting_claim_lane)
    await worker.schedule_once()
    assert sorted(worker._lanes) == sorted((a, c) for a in agencies for c in ("nats", "webhook"))
    await asyncio.wait_for(asyncio.gather(*worker._lanes.values()), 10)
    await worker.stop()

    assert lane_claims == []  # every lane's sends came with the scheduler's one claim
    assert sorted(feed.got) == sorted(webhook.got) == sorted(issued)
    for agency in agencies:  # each lane in its order of issue
        mine = [i for i in issued if i.startswith(f"ref-{agency}-")]
        assert [i for i in feed.got if i in mine] == [i for i in webhook.got if i in mine] == mine
    assert len(await reports(pool)) == len(issued)  # each referral reported once


async def test_two_replicas_claiming_the_same_lanes_deliver_each_send_once_in_order(
    database_url: str,
) -> None:
    """Two notify replicas (each with its own pool) racing for the same lanes, batch after
    batch: a lane's head that one has leased is not due for the other, so no send goes out
    twice, each lane stays in its order of issue, and each referral is reported once."""
    agencies = [AGENCY, "pkm-uji"]
    feed, webhook = FakeChannel(), FakeChannel()  # the partners: what either replica sent
    pools = [await create_pool(database_url, "notify") for _ in range(2)]
    replicas = [agencies_worker(p, agencies, feed, webhook, lane_batch=3) for p in pools]
    try:
        issued: dict[str, list[str]] = {a: [] for a in agencies}
        async with pools[0].acquire() as conn:
            for n in range(24):
                for agency in agencies:
                    referral_id = await enqueue_to(conn, agency, n, ["nats", "webhook"])
                    issued[agency].append(referral_id)
                    if n % 5 == 0:  # some refused once: retried sends hold their lane
                        (feed if n % 2 else webhook).refuse[referral_id] = 1
        every = [i for a in agencies for i in issued[a]]
        lanes = [(a, c) for a in agencies for c in ("nats", "webhook")]
        async with asyncio.timeout(30):
            for turn in itertools.count():
                # Every lane tried by both replicas at once, the one to claim first alternating.
                first, second = replicas if turn % 2 else reversed(replicas)
                await asyncio.gather(
                    *(r._run_lane(*lane) for lane in lanes for r in (first, second))
                )
                if set(feed.got) == set(webhook.got) == set(every):
                    break
                await asyncio.sleep(0.06)  # the backoff of a refused send
        reported = await reports(pools[0])
    finally:
        for replica in replicas:
            await replica.stop()
        for p in pools:
            await p.close()

    assert all(r.stats.attempts > 0 for r in replicas)  # both took part
    assert sorted(feed.got) == sorted(webhook.got) == sorted(every)  # each send once
    for agency in agencies:  # each lane in its order of issue, whichever replica sent it
        mine = issued[agency]
        assert [i for i in feed.got if i in mine] == [i for i in webhook.got if i in mine] == mine
    assert sorted(r for _, _, r in reported) == sorted(every)  # each referral reported once
