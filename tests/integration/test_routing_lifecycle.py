"""Partner replies, escalation, deadlines, SOP versions and closing, against a real PostgreSQL.

The clock is injected: deadlines fire when the test moves time, not after real waiting.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from routing.cases import CaseHasOpenReferrals, close_case
from routing.deadlines import DeadlineWatcher
from routing.events import event_id
from routing.handlers import RoutingHandlers
from routing.settings import SHIPPED_SOPS
from routing.sop import SopError, load_sop_folder
from routing.sops import SopConflict, SopsInForce
from rujuk_contracts import EventPayload, make_event, parse_event
from rujuk_contracts.events import (
    CaseClosed,
    CaseReported,
    CloseReason,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralEscalated,
    ReferralReplyRefused,
    ReferralRequested,
    SopInForce,
    SopOrigin,
    SopPublished,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.db import create_pool

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
CASE_ID = "3514-AB12CD34EF"
SOP_3514 = (SHIPPED_SOPS / "3514.yaml").read_text()
DONE = CloseReason.SERVICES_COMPLETED


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "routing")
    yield pool
    await pool.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def routing(clock: Clock) -> RoutingHandlers:
    return RoutingHandlers(SopsInForce(load_sop_folder(SHIPPED_SOPS)), clock=clock)


def adult_case(case_id: str = CASE_ID, **triage: object) -> CaseReported:
    """Psychological violence, no consent: a case manager and family counselling only."""
    facts = {
        "violence_types": ["psychological"],
        "age_group": "adult",
        "sex": "female",
        "district_code": "3514",
        "kecamatan": "Bangil",
        **triage,
    }
    return CaseReported(
        case_id=case_id,
        channel="hotline",
        reported_at=START,
        triage=TriageFacts.model_validate(facts),
    )


async def handle(routing: RoutingHandlers, pool: asyncpg.Pool, payload: EventPayload) -> str:
    """Handle one event as the consumer would; return its event id."""
    event = make_event(payload, source="/rujuk/partners/test")
    handler = {
        CaseReported: routing.on_case_reported,
    }.get(type(payload), routing.on_partner_reply)
    async with pool.acquire() as conn, conn.transaction():
        await handler(conn, event, payload)
    return event.id


async def staged(pool: asyncpg.Pool) -> list[EventPayload]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT body FROM outbox ORDER BY seq")
    return [parse_event(bytes(row["body"]))[1] for row in rows]


async def referral(pool: asyncpg.Pool, referral_id: str) -> dict[str, object]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
    assert row is not None, referral_id
    return dict(row)


def reply(kind: type, referral_id: str, agency_id: str, case_id: str = CASE_ID) -> EventPayload:
    extra = {"reason": "no_capacity"} if kind is ReferralDeclined else {}
    payload: EventPayload = kind(
        case_id=case_id, referral_id=referral_id, agency_id=agency_id, **extra
    )
    return payload


MANAGER, COUNSELLING = f"{CASE_ID}-01", f"{CASE_ID}-02"  # uptppa-pasuruan, puspaga-pasuruan


async def test_partner_replies_move_the_referral_along_the_table(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle(routing, pool, adult_case())
    assert (await referral(pool, MANAGER))["agency_id"] == "uptppa-pasuruan"
    for kind, state in (
        (ReferralAcknowledged, "acknowledged"),
        (ReferralAccepted, "accepted"),
        (ReferralCompleted, "completed"),
    ):
        await handle(routing, pool, reply(kind, MANAGER, "uptppa-pasuruan"))
        assert (await referral(pool, MANAGER))["state"] == state
    assert not [p for p in await staged(pool) if isinstance(p, ReferralReplyRefused)]


@pytest.mark.parametrize(
    ("referral_id", "agency_id", "reason"),
    [
        ("3514-ZZZZZZZZZZ-01", "uptppa-pasuruan", "unknown referral 3514-ZZZZZZZZZZ-01"),
        (MANAGER, "puspaga-pasuruan", f"referral {MANAGER} is not held by puspaga-pasuruan"),
    ],
)
async def test_a_reply_for_a_referral_the_agency_does_not_hold_is_refused(
    pool: asyncpg.Pool, routing: RoutingHandlers, referral_id: str, agency_id: str, reason: str
) -> None:
    await handle(routing, pool, adult_case())
    incoming = await handle(routing, pool, reply(ReferralAccepted, referral_id, agency_id))
    [refused] = [p for p in await staged(pool) if isinstance(p, ReferralReplyRefused)]
    assert (refused.referral_id, refused.agency_id, refused.reply, refused.reason) == (
        referral_id,
        agency_id,
        "accept",
        reason,
    )
    assert (await referral(pool, MANAGER))["state"] == "requested"
    async with pool.acquire() as conn:
        ids = [row["event_id"] for row in await conn.fetch("SELECT event_id FROM outbox")]
    assert event_id(f"{incoming}:refused") in ids


async def test_a_decline_escalates_to_the_next_agency_and_a_later_accept_is_refused(
    pool: asyncpg.Pool, routing: RoutingHandlers, clock: Clock
) -> None:
    await handle(routing, pool, adult_case())
    clock.now = START + timedelta(minutes=10)
    await handle(routing, pool, reply(ReferralDeclined, COUNSELLING, "puspaga-pasuruan"))

    events = await staged(pool)
    [escalated] = [p for p in events if isinstance(p, ReferralEscalated)]
    assert (escalated.referral_id, escalated.from_agency_id, escalated.to_agency_id) == (
        COUNSELLING,
        "puspaga-pasuruan",
        "uptppa-pasuruan",
    )
    assert (escalated.reason, escalated.step) == ("declined", 1)
    successor = [
        p for p in events if isinstance(p, ReferralRequested) and p.referral_id.endswith("-e1")
    ]
    assert [(p.referral_id, p.agency_id, p.escalation_chain) for p in successor] == [
        (f"{COUNSELLING}-e1", "uptppa-pasuruan", ["dp3ap2kb-pasuruan"])
    ]
    # The same time to acknowledge as the declined referral (2880 SOP minutes), from now.
    assert successor[0].acknowledgement_deadline == clock.now + timedelta(minutes=2880)
    assert (await referral(pool, COUNSELLING))["state"] == "escalated"

    await handle(routing, pool, reply(ReferralAccepted, COUNSELLING, "puspaga-pasuruan"))
    [refused] = [p for p in await staged(pool) if isinstance(p, ReferralReplyRefused)]
    assert refused.reason == f"referral {COUNSELLING} is escalated; it cannot become accepted"
    assert (await referral(pool, COUNSELLING))["state"] == "escalated"


async def test_a_decline_at_the_coordinator_ends_the_chain_and_accept_after_it_is_refused(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle(routing, pool, adult_case())
    await handle(routing, pool, reply(ReferralDeclined, COUNSELLING, "puspaga-pasuruan"))
    successor = f"{COUNSELLING}-e1"
    await handle(routing, pool, reply(ReferralDeclined, successor, "uptppa-pasuruan"))
    last = f"{COUNSELLING}-e2"
    assert (await referral(pool, last))["agency_id"] == "dp3ap2kb-pasuruan"
    await handle(routing, pool, reply(ReferralDeclined, last, "dp3ap2kb-pasuruan"))
    assert (await referral(pool, last))["state"] == "declined"
    await handle(routing, pool, reply(ReferralAccepted, last, "dp3ap2kb-pasuruan"))
    refusals = [p.reason for p in await staged(pool) if isinstance(p, ReferralReplyRefused)]
    assert refusals == [f"referral {last} is declined; it cannot become accepted"]
    assert len([p for p in await staged(pool) if isinstance(p, ReferralEscalated)]) == 2


async def test_a_missed_deadline_escalates_once_and_a_met_one_does_nothing(
    pool: asyncpg.Pool, routing: RoutingHandlers, clock: Clock
) -> None:
    await handle(routing, pool, adult_case())
    await handle(routing, pool, reply(ReferralAcknowledged, MANAGER, "uptppa-pasuruan"))
    watcher = DeadlineWatcher(lambda: pool, clock=clock)

    clock.now = START + timedelta(minutes=119)  # the manager's deadline is at 120 minutes
    assert await watcher.run_once() == 0
    clock.now = START + timedelta(minutes=120)
    assert await watcher.run_once() == 1  # the manager's: met
    clock.now = START + timedelta(minutes=2881)  # counselling: 2880 minutes
    assert await watcher.run_once() == 1
    assert await watcher.run_once() == 0

    escalations = [p for p in await staged(pool) if isinstance(p, ReferralEscalated)]
    assert [(e.referral_id, e.reason, e.to_agency_id) for e in escalations] == [
        (COUNSELLING, "deadline_missed", "uptppa-pasuruan")
    ]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM deadlines ORDER BY referral_id")
    assert [(r["referral_id"], r["outcome"]) for r in rows] == [
        (MANAGER, "met"),
        (COUNSELLING, "escalated"),
        (f"{COUNSELLING}-e1", None),
    ]
    assert rows[2]["due_at"] == clock.now + timedelta(minutes=2880)

    clock.now += timedelta(minutes=2880)
    assert await watcher.run_once() == 1  # to the coordinator
    clock.now += timedelta(minutes=2880)
    assert await watcher.run_once() == 1  # the coordinator missed it too: the chain ends
    await watcher.stop()  # gives its connection back
    async with pool.acquire() as conn:
        outcomes = await conn.fetch(
            "SELECT referral_id, outcome FROM deadlines WHERE referral_id LIKE $1 || '-e%' "
            "ORDER BY referral_id",
            COUNSELLING,
        )
    assert [tuple(row) for row in outcomes] == [
        (f"{COUNSELLING}-e1", "escalated"),
        (f"{COUNSELLING}-e2", "chain_exhausted"),
    ]


def sop_version_2(escalate_to: str = "dinsos-pasuruan") -> str:
    """3514 v2: family counselling escalates to social services first."""
    return SOP_3514.replace("version: 1", "version: 2").replace(
        "        escalate_to: [uptppa-pasuruan]\n", f"        escalate_to: [{escalate_to}]\n"
    )


async def test_a_published_version_applies_to_new_cases_and_referrals_in_flight_keep_theirs(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle(routing, pool, adult_case())
    async with pool.acquire() as conn, conn.transaction():
        published = await routing.sops.publish_sop(
            conn, sop_version_2(), "test", routing.clock, districts=None
        )
    assert (published.sop.version, published.created) == (2, True)

    await handle(routing, pool, adult_case("3514-BB12CD34EF"))
    new = await referral(pool, "3514-BB12CD34EF-02")
    assert (new["sop_version"], new["escalation_chain"]) == (
        2,
        ["dinsos-pasuruan", "dp3ap2kb-pasuruan"],
    )
    await handle(routing, pool, reply(ReferralDeclined, COUNSELLING, "puspaga-pasuruan"))
    old = await referral(pool, f"{COUNSELLING}-e1")
    assert (old["agency_id"], old["sop_version"]) == ("uptppa-pasuruan", 1)

    [announced] = [p for p in await staged(pool) if isinstance(p, SopPublished)]
    assert (announced.sop_id, announced.district_code, announced.sop_version) == (
        "sop-3514",
        "3514",
        2,
    )
    assert announced.sha256 == published.sha256
    [in_force] = [p for p in await staged(pool) if isinstance(p, SopInForce)]
    assert (in_force.sop_version, in_force.origin, in_force.sha256) == (
        2,
        SopOrigin.PUBLISHED,
        published.sha256,
    )
    assert set(in_force.agency_ids) == {agency.id for agency in published.sop.directory}


async def test_every_sop_in_force_is_announced_once_whatever_the_restarts(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        first = await routing.sops.announce_in_force(conn, routing.clock)
    assert first == ["SOP 3513 v1", "SOP 3514 v1"]
    restarted = SopsInForce(load_sop_folder(SHIPPED_SOPS))
    async with pool.acquire() as conn, conn.transaction():
        assert await restarted.announce_in_force(conn, routing.clock) == []
    announced = [p for p in await staged(pool) if isinstance(p, SopInForce)]
    assert [(p.district_code, p.origin) for p in announced] == [
        ("3513", SopOrigin.FILE),
        ("3514", SopOrigin.FILE),
    ]
    assert restarted.in_force_at_start == {"3513": 1, "3514": 1}


async def test_a_broken_or_stale_sop_is_refused_and_the_version_in_force_stays(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    broken = sop_version_2(escalate_to="nowhere-agency")
    async with pool.acquire() as conn:
        with pytest.raises(SopError) as caught:
            async with conn.transaction():
                await routing.sops.publish_sop(conn, broken, "test", routing.clock, districts=None)
        assert any(
            "agency 'nowhere-agency' is not in the directory" in str(i) for i in caught.value.issues
        )
        assert all(issue.line is not None for issue in caught.value.issues)
        with pytest.raises(SopConflict, match="SOP 3514 v1 is in force: publish a version above 1"):
            async with conn.transaction():
                await routing.sops.publish_sop(
                    conn,
                    SOP_3514.replace("Sakera", "Sakera (x)"),
                    "t",
                    routing.clock,
                    districts=None,
                )
        async with conn.transaction():
            await routing.sops.publish_sop(
                conn, sop_version_2(), "test", routing.clock, districts=None
            )
        async with conn.transaction():
            again = await routing.sops.publish_sop(
                conn, sop_version_2(), "test", routing.clock, districts=None
            )
        assert not again.created
        with pytest.raises(SopConflict, match="already published with other content"):
            async with conn.transaction():
                await routing.sops.publish_sop(
                    conn, sop_version_2("rsud-bangil"), "test", routing.clock, districts=None
                )
        assert await conn.fetchval("SELECT count(*) FROM sops") == 1
        assert (await routing.sops.sop_in_force(conn, "3514")).version == 2
    assert len([p for p in await staged(pool) if isinstance(p, SopPublished)]) == 1
    assert len([p for p in await staged(pool) if isinstance(p, SopInForce)]) == 1


async def test_a_case_closes_only_when_every_referral_is_settled(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle(routing, pool, adult_case())
    await handle(routing, pool, reply(ReferralDeclined, COUNSELLING, "puspaga-pasuruan"))
    async with pool.acquire() as conn:
        with pytest.raises(CaseHasOpenReferrals) as caught:
            async with conn.transaction():
                await close_case(
                    conn, CASE_ID, "coordinator", DONE, clock=routing.clock, districts=None
                )
    assert [r.referral_id for r in caught.value.open_referrals] == [MANAGER, f"{COUNSELLING}-e1"]
    assert "3514-AB12CD34EF-01 (uptppa-pasuruan, requested)" in str(caught.value)
    for referral_id in (MANAGER, f"{COUNSELLING}-e1"):
        for kind in (ReferralAcknowledged, ReferralAccepted, ReferralCompleted):
            await handle(routing, pool, reply(kind, referral_id, "uptppa-pasuruan"))
    async with pool.acquire() as conn, conn.transaction():
        assert await close_case(
            conn, CASE_ID, "coordinator", DONE, clock=routing.clock, districts=None
        )
    async with pool.acquire() as conn, conn.transaction():
        assert not await close_case(
            conn, CASE_ID, "coordinator", DONE, clock=routing.clock, districts=None
        )
    closed = [p for p in await staged(pool) if isinstance(p, CaseClosed)]
    assert [(c.case_id, c.closed_by, c.reason) for c in closed] == [(CASE_ID, "coordinator", DONE)]
