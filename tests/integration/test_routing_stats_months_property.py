"""A property of the monthly roll-ups on real PostgreSQL: whatever cases and referrals three
months hold (agencies, services, deadlines, answers, declines, hand-ons, closings), the
figures a period reads from its rolled-up months equal the figures read from its rows: the
coordinator's stats and the rakor's province-wide figures, percentiles and medians included.
Random histories are written straight into routing's tables."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from routing import store
from rujuk_runtime.db import create_pool
from tests.conftest import provisioned_database
from tests.integration.test_routing_stats_months import NOW, ZONE, province_wide

pytestmark = pytest.mark.integration

# Cases from 20 January to 25 April 2026 (WIB); the period asked is 25 January to 20 April,
# so February and March are rolled up and the rest is read from the rows.
FIRST = datetime(2026, 1, 20, 3, 0, tzinfo=UTC)
START, END = date(2026, 1, 25), date(2026, 4, 20)
AGENCIES = ("uptppa-contoh", "puspaga-contoh", "rsud-contoh")
SERVICES = ("case_management", "shelter", "health", "mediation")
STATES = ("requested", "delivered", "acknowledged", "accepted", "declined", "completed",
          "escalated", "cancelled")  # fmt: skip
CLOSE_REASONS = (None, "services_completed", "duplicate_report", "filed_in_error")


@dataclass(frozen=True)
class ReferralRow:
    agency_id: str
    service: str
    state: str
    within: int  # minutes to acknowledge: few distinct values, as an SOP's priorities give
    minutes: int  # after the case was routed
    answered_after: int | None
    declined: bool
    handed_on: bool


@dataclass(frozen=True)
class CaseRow:
    day: int  # after FIRST
    hour: int
    close_reason: str | None
    referrals: tuple[ReferralRow, ...]


referral_rows = st.builds(
    ReferralRow,
    agency_id=st.sampled_from(AGENCIES),
    service=st.sampled_from(SERVICES),
    state=st.sampled_from(STATES),
    within=st.sampled_from((30, 120, 2880)),
    # Some made in a later month than their case; some a little before it was reported
    # (intake's clock and routing's differ).
    minutes=st.one_of(st.integers(0, 60 * 24 * 40), st.integers(-90, 0)),
    answered_after=st.one_of(st.none(), st.integers(0, 3000)),
    declined=st.booleans(),
    handed_on=st.booleans(),
)
case_rows = st.builds(
    CaseRow,
    day=st.integers(0, 95),
    hour=st.integers(0, 23),
    close_reason=st.sampled_from(CLOSE_REASONS),
    referrals=st.lists(referral_rows, max_size=4).map(tuple),
)


@pytest.fixture(scope="module")
async def pool(server_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with provisioned_database(server_database_url) as database:
        held = await create_pool(database.role_url("routing"), "routing")
        try:
            yield held
        finally:
            await held.close()


async def hold_only(pool: asyncpg.Pool, cases: list[CaseRow]) -> None:
    """Replace routing's cases, referrals and roll-ups with these."""
    by_id = {f"3514-{n:010d}": case for n, case in enumerate(cases)}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM stats_months; DELETE FROM deadlines; DELETE FROM referrals; "
            "DELETE FROM cases"
        )
        await conn.executemany(
            "INSERT INTO cases (case_id, district_code, sop_id, sop_version, rules_fired, "
            "reported_at, routed_at, violence_types, close_reason) VALUES ($1, '3514', "
            "'sop-contoh', 1, '{}', $2, $2, '{physical}', $3)",
            [(i, routed(c), c.close_reason) for i, c in by_id.items()],
        )
        await conn.executemany(
            "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, state, "
            "acknowledgement_deadline, escalation_chain, rule_ids, sop_id, sop_version, "
            "acknowledge_within, root_referral_id, created_at, acknowledged_at, decline_reason, "
            "escalated_from, escalation_reason) VALUES ($1, $2, $3, $4, 'urgent', $5, $6, '{}', "
            "'{}', 'sop-contoh', 1, $7, $1, $8, $9, $10, $11, $12)",
            [row for case_id, case in by_id.items() for row in referral_values(case_id, case)],
        )


def routed(case: CaseRow) -> datetime:
    return FIRST + timedelta(days=case.day, hours=case.hour)


def referral_values(case_id: str, case: CaseRow) -> list[tuple[Any, ...]]:
    values = []
    for n, referral in enumerate(case.referrals):
        made = routed(case) + timedelta(minutes=referral.minutes)
        within = timedelta(minutes=referral.within)
        answered = None
        if referral.answered_after is not None:
            answered = made + timedelta(minutes=referral.answered_after)
        handed_on = referral.handed_on and n > 0
        values.append((
            f"{case_id}-{n:02d}", case_id, referral.agency_id, referral.service,
            referral.state, made + within, within, made, answered,
            "no_capacity" if referral.declined else None,
            f"{case_id}-00" if handed_on else None, "declined" if handed_on else None,
        ))  # fmt: skip
    return values


# A case reported in the period's first hour (WIB) whose referral routing's clock made before
# the period began.
AT_THE_START = CaseRow(4, 14, None, (ReferralRow(AGENCIES[0], "shelter", "requested", 30, -1,
                                                 None, False, False),))  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(case_rows, max_size=12))
@example(cases=[AT_THE_START])
async def test_figures_from_rolled_up_months_equal_the_rows_whatever_they_hold(
    pool: asyncpg.Pool, cases: list[CaseRow]
) -> None:
    await hold_only(pool, cases)
    asked: dict[str, Any] = province_wide(START, END)
    since, until = asked["start"], asked["end"]
    async with pool.acquire() as conn:
        monitored = await store.monitoring_rows(conn, **asked)
        stats = await store.period_stats(
            conn, start=since, end=until, timezone=ZONE, now=NOW, districts=None,
            rolled_up=False,
        )  # fmt: skip
        assert await store.monitoring_rows(conn, **asked, zone=ZONE) == monitored
        months = await conn.fetch("SELECT month FROM stats_months ORDER BY starts")
        assert [row["month"] for row in months] == ["2026-02", "2026-03"]
        assert stats == await store.period_stats(
            conn, start=since, end=until, timezone=ZONE, now=NOW, districts=None
        )
