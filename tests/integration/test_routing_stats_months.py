"""Monthly roll-ups of the monitoring figures (routing migration 0013), on PostgreSQL: a
period's figures read from its rolled-up months equal the same figures read from the rows,
before and after writes to those months; a write throws its month's roll-up away; a month
whose deadlines are still to come is never rolled up; and the locks that keep a roll-up from
missing a write hold in both orders (a writer waits for a reader's roll-up and then throws it
away; a reader never waits for a writer and leaves its month to be read live)."""

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from asyncpg.transaction import Transaction

from routing import store
from routing.bootstrap import create_app
from routing.handlers import RoutingHandlers
from routing.monitoring import NOT_A_COMPLAINT, SERVICE_FUNCTIONS, ServiceFunction
from routing.settings import RoutingSettings
from routing.stats import period_bounds, whole_months
from rujuk_contracts import make_event
from rujuk_contracts.events import (
    CaseReported,
    CloseReason,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.db import Connection
from rujuk_runtime.service import ServiceRuntime
from tests.conftest import provisioned_database, remove_streams

pytestmark = pytest.mark.integration

ZONE = "Asia/Jakarta"
MINUTE = timedelta(minutes=1)
# SOP 3514 sends an adult case to UPT PPA (urgent, 120 minutes to acknowledge) and PUSPAGA
# (routine, two days); PUSPAGA's chain hands a declined referral on to UPT PPA.
UPT, PUSPAGA = "uptppa-pasuruan", "puspaga-pasuruan"
# Routed from mid-January to the end of April 2026; the coordinator looks on 1 June.
FIRST = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
LAST = datetime(2026, 4, 30, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
LOCK = "hashtext('routing.stats_months')"


class Clock:
    def __init__(self) -> None:
        self.now = FIRST

    def __call__(self) -> datetime:
        return self.now


@dataclass
class History:
    handlers: RoutingHandlers
    runtime: ServiceRuntime
    clock: Clock
    cases: list[str]

    async def report(self, case_id: str, reported_at: datetime, routed_at: datetime) -> None:
        self.clock.now = routed_at
        kinds = [["physical"], ["psychological"], ["physical", "sexual"]][len(self.cases) % 3]
        case = CaseReported(
            case_id=case_id,
            channel="hotline",
            reported_at=reported_at,
            triage=TriageFacts(
                violence_types=kinds, age_group="adult", sex="female", district_code="3514"
            ),
        )
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            await self.handlers.on_case_reported(conn, make_event(case, source="/test"), case)
        self.cases.append(case_id)

    async def reply(self, at: datetime, reply: EventPayload) -> None:
        self.clock.now = at
        agency = reply.agency_id  # type: ignore[attr-defined]
        event = make_event(reply, source=f"/rujuk/partners/{agency}", time=at)
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            await self.handlers.on_partner_reply(conn, event, reply)

    async def figures(self, conn: Connection, start: date, end: date, **kw: object) -> object:
        since, until = period_bounds(start, end, ZONE)
        return await store.period_stats(
            conn, start=since, end=until, timezone=ZONE, now=NOW, districts=None, **kw
        )


def upt(case_id: str) -> str:
    return f"{case_id}-01"


def puspaga(case_id: str) -> str:
    return f"{case_id}-02"


async def play(history: History) -> None:
    """Sixty cases, one every ~42 hours, the last at LAST; UPT PPA answers each within 10-300
    minutes (some late), then accepts and completes some; PUSPAGA declines one in seven
    (handed on to UPT PPA), acknowledges most, leaves some unanswered (the last among them)."""
    chance = random.Random(22)
    times = [FIRST]
    while times[-1] + 43 * 60 * MINUTE < LAST:
        times.append(times[-1] + 42 * 60 * MINUTE + chance.randint(0, 59) * MINUTE)
    times.append(LAST)
    for number, at in enumerate(times, start=1):
        case_id = f"3514-M{number:09d}"
        await history.report(case_id, at - 5 * MINUTE, at)
        upt_answer = at + chance.randint(10, 300) * MINUTE
        ack = ReferralAcknowledged(case_id=case_id, referral_id=upt(case_id), agency_id=UPT)
        await history.reply(upt_answer, ack)
        if number % 2:
            accept = ReferralAccepted(case_id=case_id, referral_id=upt(case_id), agency_id=UPT)
            await history.reply(upt_answer + 5 * MINUTE, accept)
            done = ReferralCompleted(case_id=case_id, referral_id=upt(case_id), agency_id=UPT)
            await history.reply(upt_answer + 600 * MINUTE, done)
        if number % 7 == 0:
            decline = ReferralDeclined(
                case_id=case_id, referral_id=puspaga(case_id), agency_id=PUSPAGA,
                reason="no_capacity",
            )  # fmt: skip
            await history.reply(at + 30 * MINUTE, decline)
        elif number % 3 and at != LAST:
            answer = ReferralAcknowledged(
                case_id=case_id, referral_id=puspaga(case_id), agency_id=PUSPAGA
            )
            await history.reply(at + chance.randint(60, 4000) * MINUTE, answer)


@pytest.fixture
async def history(nats_url: str, server_database_url: str) -> AsyncIterator[History]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        settings = RoutingSettings(nats_url=nats_url, database_url=database.role_url("routing"))
        clock = Clock()
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            played = History(app.state.handlers, app.state.runtime, clock, [])
            await play(played)
            # The deadline watcher hands overdue referrals on as the clock passes their
            # deadlines: let it finish, so that it writes nothing while a test compares figures.
            clock.now = NOW - 120 * MINUTE
            await until_nothing_is_due(played.runtime, clock.now)
            yield played


async def rolled_months(conn: Connection) -> list[str]:
    rows = await conn.fetch("SELECT month FROM stats_months ORDER BY starts")
    return [row["month"] for row in rows]


async def test_figures_from_rolled_up_months_equal_the_figures_from_the_rows(
    history: History,
) -> None:
    async with history.runtime.pool.acquire() as conn:
        from_rows = await history.figures(
            conn, date(2026, 1, 20), date(2026, 5, 20), rolled_up=False
        )
        assert await rolled_months(conn) == []
        rolled = await history.figures(conn, date(2026, 1, 20), date(2026, 5, 20))
        # February to April lie wholly in the period; January and May are its edges.
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
        assert rolled == from_rows
        assert from_rows.cases_total > 50  # type: ignore[attr-defined]
        when = await conn.fetchval("SELECT max(rolled_at) FROM stats_months")
        again = await history.figures(conn, date(2026, 1, 20), date(2026, 5, 20))
        assert again == from_rows
        assert await conn.fetchval("SELECT max(rolled_at) FROM stats_months") == when
        # A period of whole months reads them from the roll-ups alone, and another district's
        # figures are empty either way.
        whole = await history.figures(conn, date(2026, 2, 1), date(2026, 4, 30))
        assert whole == await history.figures(
            conn, date(2026, 2, 1), date(2026, 4, 30), rolled_up=False
        )
        since, until = period_bounds(date(2026, 2, 1), date(2026, 4, 30), ZONE)
        for districts in (["3513"], ["3514"]):
            kept = {"start": since, "end": until, "timezone": ZONE, "now": NOW}
            rolled_up = await store.period_stats(conn, **kept, districts=districts)
            read = await store.period_stats(conn, **kept, districts=districts, rolled_up=False)
            assert rolled_up == read
            assert (rolled_up.cases_total > 0) == (districts == ["3514"])


async def test_a_write_to_a_rolled_up_month_throws_it_away_and_the_figures_follow_it(
    history: History,
) -> None:
    start, end = date(2026, 1, 20), date(2026, 5, 20)
    async with history.runtime.pool.acquire() as conn:
        before = await history.figures(conn, start, end)
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
        acknowledged = await acknowledged_by_upt(conn, history, "2026-02")
    # Months later, UPT PPA accepts a February referral it acknowledged then.
    case_id = await case_of(history, acknowledged)
    await history.reply(
        NOW - 60 * MINUTE,
        ReferralAccepted(case_id=case_id, referral_id=acknowledged, agency_id=UPT),
    )
    async with history.runtime.pool.acquire() as conn:
        assert await rolled_months(conn) == ["2026-03", "2026-04"]
        after = await history.figures(conn, start, end)
        assert after == await history.figures(conn, start, end, rolled_up=False)
        assert open_in(after, "accepted") == open_in(before, "accepted") + 1
        assert open_in(after, "acknowledged") == open_in(before, "acknowledged") - 1
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
    # A case reported in March that routing only now takes: its case counts in March, its
    # referrals in the month it was routed.
    await history.report("3514-Z000000001", datetime(2026, 3, 20, 2, 0, tzinfo=UTC), NOW)
    async with history.runtime.pool.acquire() as conn:
        assert await rolled_months(conn) == ["2026-02", "2026-04"]
        late = await history.figures(conn, start, end)
        assert late == await history.figures(conn, start, end, rolled_up=False)
        assert late.cases_total == after.cases_total + 1  # type: ignore[attr-defined]
        # A delivery attempt changes no figure: it leaves the roll-ups alone.
        await conn.execute(
            "UPDATE referrals SET delivery_attempts = delivery_attempts + 1, updated_at = now() "
            "WHERE referral_id = $1",
            upt(history.cases[-2]),
        )
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]


async def test_a_month_whose_deadlines_are_still_to_come_is_read_from_the_rows(
    history: History,
) -> None:
    """The last case came on 30 April at 17:00 WIB; PUSPAGA has two days to acknowledge it.
    On 1 May April's figures still change as time passes (a deadline not yet missed): it is
    not rolled up, and its pending deadlines are counted as they stand."""
    since, until = period_bounds(date(2026, 4, 1), date(2026, 4, 30), ZONE)
    early = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    async with history.runtime.pool.acquire() as conn:
        last = await conn.fetchval(
            "SELECT max(acknowledgement_deadline) FROM referrals WHERE created_at >= $1 "
            "AND created_at < $2",
            since,
            until,
        )
        assert early < last < NOW
        kept = {"start": since, "end": until, "timezone": ZONE, "districts": None}
        on_may_first = await store.period_stats(conn, **kept, now=early)
        assert await rolled_months(conn) == []
        assert on_may_first == await store.period_stats(conn, **kept, now=early, rolled_up=False)
        in_june = await store.period_stats(conn, **kept, now=NOW)
        assert await rolled_months(conn) == ["2026-04"]
        assert in_june == await store.period_stats(conn, **kept, now=NOW, rolled_up=False)
        # Asked again as of 1 May, the April roll-up (settled later) is not used.
        assert await store.period_stats(conn, **kept, now=early) == on_may_first


async def test_a_writer_waits_for_a_roll_up_in_progress_then_throws_it_away(
    history: History,
) -> None:
    months = whole_months(*period_bounds(date(2026, 3, 1), date(2026, 3, 31), ZONE), ZONE)
    (since, until), = months  # fmt: skip
    async with history.runtime.pool.acquire() as reader, history.runtime.pool.acquire() as conn:
        target = await acknowledged_by_upt(conn, history, "2026-03")
        transaction = await holding_a_roll_ups_lock(reader, since, until)
        case_id = await case_of(history, target)
        reply = ReferralAccepted(case_id=case_id, referral_id=target, agency_id=UPT)
        writing = asyncio.create_task(history.reply(NOW, reply))
        await until_waiting_on_an_advisory_lock(conn)
        assert not writing.done()
        await reader.execute(
            "INSERT INTO stats_months (zone, starts, ends, month, settled_at, rolled_at) "
            "VALUES ($1, $2, $3, '2026-03', $2, now())",
            ZONE,
            since,
            until,
        )
        await transaction.commit()
        await asyncio.wait_for(writing, 10)
        assert await rolled_months(conn) == []  # the writer threw the roll-up away


async def test_a_reader_never_waits_for_a_writer_and_reads_its_month_from_the_rows(
    history: History,
) -> None:
    months = whole_months(*period_bounds(date(2026, 2, 1), date(2026, 4, 30), ZONE), ZONE)
    async with history.runtime.pool.acquire() as writer, history.runtime.pool.acquire() as conn:
        february = [c for c in history.cases if await routed_in(conn, c, "2026-02")]
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(
            "UPDATE referrals SET state = 'cancelled' WHERE referral_id = $1", upt(february[3])
        )
        # The writer holds February's UTC month, which March in WIB (from 28 February 17:00
        # UTC) spans too: only April is rolled up, at once.
        rolled = await asyncio.wait_for(
            store.roll_up_months(conn, months=months, zone=ZONE, now=NOW), 5
        )
        assert (rolled, await rolled_months(conn)) == (1, ["2026-04"])
        await transaction.commit()
        assert await store.roll_up_months(conn, months=months, zone=ZONE, now=NOW) == 2
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
        figures = await history.figures(conn, date(2026, 2, 1), date(2026, 4, 30))
        assert figures == await history.figures(
            conn, date(2026, 2, 1), date(2026, 4, 30), rolled_up=False
        )


async def test_the_rakors_cases_per_function_follow_a_later_referral_and_a_closing(
    history: History,
) -> None:
    """The rakor counts a month's cases by the services they were ever referred for, so a
    referral made months later (a village pick for shelter) for a case of a rolled-up month
    throws that month away, though the referral is another month's; so does closing one of
    its cases as no complaint, which takes it out of the count."""
    asked = province_wide(date(2026, 1, 20), date(2026, 5, 20))
    pool = history.runtime.pool
    async with pool.acquire() as conn:
        before = await store.monitoring_rows(conn, **asked, zone=ZONE)  # type: ignore[arg-type]
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
        assert await conn.fetchval("SELECT sum(cases) FROM stats_month_services") > 0
        february, march = [
            await conn.fetchval(
                "SELECT case_id FROM cases WHERE reported_at >= $1 AND reported_at < $2 "
                "ORDER BY case_id LIMIT 1",
                *period_bounds(day, day + timedelta(days=27), ZONE),
            )
            for day in (date(2026, 2, 1), date(2026, 3, 1))
        ]
        # Made on 29 May, after the period, for a case reported in February.
        await conn.execute(
            "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, "
            "acknowledgement_deadline, escalation_chain, rule_ids, consent_override, sop_id, "
            "sop_version, acknowledge_within, root_referral_id, created_at) "
            "SELECT case_id || '-09', case_id, agency_id, 'shelter', priority, "
            "$2::timestamptz + acknowledge_within, escalation_chain, rule_ids, "
            "consent_override, sop_id, sop_version, acknowledge_within, case_id || '-09', $2 "
            "FROM referrals WHERE case_id = $1 ORDER BY referral_id LIMIT 1",
            february,
            NOW - timedelta(days=3),
        )
        assert await rolled_months(conn) == ["2026-03", "2026-04"]
        await store.close_case(
            conn, march, closed_at=NOW, closed_by="coordinator-test",
            reason=CloseReason.DUPLICATE_REPORT,
        )  # fmt: skip
        assert await rolled_months(conn) == ["2026-04"]
        after = await store.monitoring_rows(conn, **asked, zone=ZONE)  # type: ignore[arg-type]
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
        assert after == await store.monitoring_rows(conn, **asked)  # type: ignore[arg-type]
        shelter = ServiceFunction.PENAMPUNGAN_SEMENTARA.value
        assert (before.function_cases.get(shelter, 0), after.function_cases[shelter]) == (0, 1)
        assert after.cases["routed"] == before.cases["routed"] - 1


async def holding_a_roll_ups_lock(
    reader: Connection, since: datetime, until: datetime
) -> Transaction:
    """A transaction holding what roll_up_months holds while it counts the month [since,
    until): the exclusive lock on its UTC months."""
    transaction = reader.transaction()
    await transaction.start()
    await reader.execute(
        f"SELECT pg_advisory_xact_lock({LOCK}, stats_lock_month($1::timestamptz)), "
        f"pg_advisory_xact_lock({LOCK}, stats_lock_month($2::timestamptz - interval '1 us'))",
        since,
        until,
    )
    return transaction


def province_wide(start: date, end: date) -> dict[str, object]:
    """What GET /v1/monitoring asks the store for every district, from ``start`` to ``end``."""
    since, until = period_bounds(start, end, ZONE)
    return {
        "start": since,
        "end": until,
        "now": NOW,
        "districts": None,
        "function_of_service": {s.value: f.value for s, f in SERVICE_FUNCTIONS.items()},
        "not_a_complaint": NOT_A_COMPLAINT,
    }


async def until_nothing_is_due(runtime: ServiceRuntime, now: datetime) -> None:
    deadline = time.monotonic() + 30
    query = "SELECT count(*) FROM deadlines WHERE fired_at IS NULL AND due_at <= $1"
    async with runtime.pool.acquire() as conn:
        while await conn.fetchval(query, now):
            assert time.monotonic() < deadline, "the deadline watcher did not catch up"
            await asyncio.sleep(0.05)


async def acknowledged_by_upt(conn: Connection, history: History, month: str) -> str:
    """A referral UPT PPA acknowledged and did not accept, of a case routed in ``month``."""
    cases = [case for case in history.cases if await routed_in(conn, case, month)]
    found = await conn.fetchval(
        "SELECT referral_id FROM referrals WHERE case_id = ANY($1) AND agency_id = $2 "
        "AND state = 'acknowledged' ORDER BY referral_id LIMIT 1",
        cases,
        UPT,
    )
    assert isinstance(found, str), f"no acknowledged referral in {month}"
    return found


async def case_of(history: History, referral_id: str) -> str:
    async with history.runtime.pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT case_id FROM referrals WHERE referral_id = $1", referral_id
        )
    assert isinstance(found, str)
    return found


async def routed_in(conn: Connection, case_id: str, month: str) -> bool:
    routed = await conn.fetchval("SELECT routed_at FROM cases WHERE case_id = $1", case_id)
    return bool(routed.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m") == month)


async def until_waiting_on_an_advisory_lock(conn: Connection, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while not await conn.fetchval(query):
        assert time.monotonic() < deadline, "no session came to wait on an advisory lock"
        await asyncio.sleep(0.02)


def open_in(figures: object, state: str) -> int:
    rows = figures.open_referrals  # type: ignore[attr-defined]
    return sum(int(row["referrals"]) for row in rows if row["state"] == state)


async def test_a_case_moved_to_another_district_throws_away_the_months_of_its_referrals(
    history: History,
) -> None:
    """A case's referrals count in its district (the roll-up joins cases), in the month each
    referral was made, which need not be the month the case was reported: a case reported
    on 31 January (WIB) and routed on 1 February has its referrals in February. Moving the
    case to another district changes February's figures of both districts."""
    case_id = "3514-Z000000002"
    reported = datetime(2026, 1, 31, 16, 50, tzinfo=UTC)  # 23:50 WIB
    await history.report(case_id, reported, datetime(2026, 2, 1, 3, 0, tzinfo=UTC))
    history.clock.now = NOW - 120 * MINUTE
    await until_nothing_is_due(history.runtime, history.clock.now)
    since, until = period_bounds(date(2026, 2, 1), date(2026, 2, 28), ZONE)
    kept = {"start": since, "end": until, "timezone": ZONE, "now": NOW}
    async with history.runtime.pool.acquire() as conn:
        await store.period_stats(conn, **kept, districts=None)
        assert await rolled_months(conn) == ["2026-02"]
        await conn.execute("UPDATE cases SET district_code = '3513' WHERE case_id = $1", case_id)
        for districts in (["3513"], ["3514"]):
            rolled_up = await store.period_stats(conn, **kept, districts=districts)
            read = await store.period_stats(conn, **kept, districts=districts, rolled_up=False)
            assert rolled_up == read, districts
        moved = await store.period_stats(conn, **kept, districts=["3513"], rolled_up=False)
        assert sum(moved.deadlines.values()) > 0


async def test_a_long_period_rolls_up_two_years_of_months_a_request_the_newest_first(
    history: History,
) -> None:
    """41 whole months (January 2023 to May 2026, most of them empty): the first request rolls
    up the newest 24 and reads the rest from the rows, the next one the other 17; the figures
    are the rows' each time."""
    start, end = date(2023, 1, 1), date(2026, 5, 31)
    async with history.runtime.pool.acquire() as conn:
        from_rows = await history.figures(conn, start, end, rolled_up=False)
        assert await history.figures(conn, start, end) == from_rows
        first = await rolled_months(conn)
        assert len(first) == store.ROLL_UP_AT_ONCE
        assert (first[0], first[-1]) == ("2024-06", "2026-05")
        assert await history.figures(conn, start, end) == from_rows
        assert len(await rolled_months(conn)) == 41


async def test_the_rakors_province_figures_from_rolled_up_months_equal_the_rows(
    history: History,
) -> None:
    """GET /v1/monitoring for every district reads its per-agency figures and escalations of
    whole settled months from their roll-ups: the same as from the rows, before and after a
    write to a rolled-up month, one connection or several."""
    asked = province_wide(date(2026, 1, 20), date(2026, 5, 20))
    pool = history.runtime.pool
    async with pool.acquire() as conn:
        from_rows = await store.monitoring_rows(conn, **asked)  # type: ignore[arg-type]
        rolled = await store.monitoring_rows(conn, **asked, zone=ZONE)  # type: ignore[arg-type]
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]
        assert await conn.fetchval("SELECT count(*) FROM stats_month_agencies") > 0
        assert await conn.fetchval("SELECT sum(escalations) FROM stats_month_escalations") > 0
        assert rolled == from_rows
        assert from_rows.agencies[-1]["agency_id"] is None  # all agencies together, last
        assert from_rows.escalations
        acknowledged = await acknowledged_by_upt(conn, history, "2026-03")
    shared = await store.monitoring_rows_shared(pool, **asked, zone=ZONE)  # type: ignore[arg-type]
    assert shared == from_rows
    await history.reply(
        NOW - 60 * MINUTE,
        ReferralAccepted(
            case_id=await case_of(history, acknowledged), referral_id=acknowledged, agency_id=UPT
        ),
    )
    async with pool.acquire() as conn:
        assert await rolled_months(conn) == ["2026-02", "2026-04"]
        after = await store.monitoring_rows(conn, **asked, zone=ZONE)  # type: ignore[arg-type]
        assert after == await store.monitoring_rows(conn, **asked)  # type: ignore[arg-type]
        assert await rolled_months(conn) == ["2026-02", "2026-03", "2026-04"]


async def test_a_case_routed_by_a_clock_behind_intakes_counts_for_its_services_either_way(
    history: History,
) -> None:
    """Intake stamps reported_at by its own clock, routing its referrals' created_at by its
    own: with routing's a second behind, a case reported at 00:00 WIB on 1 February has its
    referrals made at 23:59 on 31 January. The rakor counts the case in February by the
    services it was referred for, read from the rows or from February's roll-up alike."""
    case_id = "3514-Z000000003"
    reported = datetime(2026, 1, 31, 17, 0, 0, 500000, tzinfo=UTC)  # 1 February 00:00 WIB
    await history.report(case_id, reported, reported - timedelta(seconds=1))
    asked = province_wide(date(2026, 2, 1), date(2026, 4, 30))
    async with history.runtime.pool.acquire() as conn:
        made = await conn.fetchval(
            "SELECT max(created_at) FROM referrals WHERE case_id = $1", case_id
        )
        assert made < asked["start"] <= reported  # type: ignore[operator]
        from_rows = await store.monitoring_rows(conn, **asked)  # type: ignore[arg-type]
        rolled = await store.monitoring_rows(conn, **asked, zone=ZONE)  # type: ignore[arg-type]
        assert "2026-02" in await rolled_months(conn)
        assert rolled == from_rows
        before = await store.monitoring_rows(
            conn,
            **{**asked, "start": asked["start"] - MINUTE},  # type: ignore[arg-type, operator]
        )
        # The case is February's whichever way the period is cut: one minute earlier, it
        # counts for its services as on the dot.
        assert from_rows.function_cases == before.function_cases


async def test_a_later_referral_waits_for_a_roll_up_of_its_cases_month_then_throws_it_away(
    history: History,
) -> None:
    """A referral made in May for a case reported in February changes February's cases per
    service function: its insert takes the lock on the case's month too, so it waits for a
    roll-up of February in progress and then throws it away (migration 0016)."""
    months = whole_months(*period_bounds(date(2026, 2, 1), date(2026, 2, 28), ZONE), ZONE)
    (since, until), = months  # fmt: skip
    pool = history.runtime.pool
    async with pool.acquire() as reader, pool.acquire() as writer, pool.acquire() as conn:
        february = await conn.fetchval(
            "SELECT case_id FROM cases WHERE reported_at >= $1 AND reported_at < $2 "
            "ORDER BY case_id LIMIT 1",
            since,
            until,
        )
        transaction = await holding_a_roll_ups_lock(reader, since, until)
        writing = asyncio.create_task(
            writer.execute(
                "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, "
                "acknowledgement_deadline, escalation_chain, rule_ids, consent_override, "
                "sop_id, sop_version, acknowledge_within, root_referral_id, created_at) "
                "SELECT case_id || '-09', case_id, agency_id, 'shelter', priority, "
                "$2::timestamptz + acknowledge_within, escalation_chain, rule_ids, "
                "consent_override, sop_id, sop_version, acknowledge_within, case_id || '-09', "
                "$2 FROM referrals WHERE case_id = $1 ORDER BY referral_id LIMIT 1",
                february,
                NOW - timedelta(days=3),
            )
        )
        await until_waiting_on_an_advisory_lock(conn)
        assert not writing.done()
        await reader.execute(
            "INSERT INTO stats_months (zone, starts, ends, month, settled_at, rolled_at) "
            "VALUES ($1, $2, $3, '2026-02', $2, now())",
            ZONE,
            since,
            until,
        )
        await transaction.commit()
        await asyncio.wait_for(writing, 10)
        assert await rolled_months(conn) == []
