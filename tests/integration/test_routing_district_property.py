"""A property of routing's reads on real PostgreSQL: whatever cases and referrals the database
holds, and whatever districts a coordinator's token serves, the referral list never returns
and the figures never count a row of a case outside those districts (nor leave out one
inside). Random cases are written straight into routing's tables; every token of every
district set is announced once."""

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.bootstrap import create_app
from routing.settings import RoutingSettings
from rujuk_contracts.events import Role
from rujuk_runtime.service import ServiceRuntime
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import announce_token, bearer, eventually

pytestmark = pytest.mark.integration

DISTRICTS = ("3513", "3514", "3599")  # 3599: an invented third district
# Every district set a token can serve, and province level (None).
DISTRICT_SETS: list[tuple[str, ...] | None] = [
    None,
    *(c for n in range(1, len(DISTRICTS) + 1) for c in combinations(DISTRICTS, n)),
]
# Agencies are shared across districts, so an agency id never tells a case's district.
AGENCIES = ("uptppa-contoh", "puspaga-contoh", "rsud-contoh")
STATES = ("requested", "delivered", "acknowledged", "accepted", "declined", "completed",
          "escalated", "cancelled", "delivery_failed")  # fmt: skip
SETTLED = {"completed", "declined", "cancelled", "escalated"}  # not open
VIOLENCE = ("physical", "psychological", "sexual", "neglect")
PERIOD = {"from": "2026-05-01", "to": "2026-05-31"}
MAY = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=120)


@dataclass(frozen=True)
class ReferralRow:
    agency_id: str
    state: str
    minutes: int  # after the case was routed
    answered_after: int | None  # minutes after the referral, or no answer
    handed_on: bool  # took over from the case's first referral


@dataclass(frozen=True)
class CaseRow:
    district: str
    day: int  # of May
    violence_types: tuple[str, ...]
    referrals: tuple[ReferralRow, ...]


referral_rows = st.builds(
    ReferralRow,
    agency_id=st.sampled_from(AGENCIES),
    state=st.sampled_from(STATES),
    minutes=st.integers(0, 600),
    answered_after=st.one_of(st.none(), st.integers(0, 300)),
    handed_on=st.booleans(),
)
case_rows = st.builds(
    CaseRow,
    district=st.sampled_from(DISTRICTS),
    day=st.integers(1, 28),
    violence_types=st.lists(st.sampled_from(VIOLENCE), min_size=1, unique=True).map(tuple),
    referrals=st.lists(referral_rows, max_size=3).map(tuple),
)


@dataclass
class Routing:
    http: httpx.AsyncClient
    runtime: ServiceRuntime
    headers: dict[tuple[str, ...] | None, dict[str, str]]


@pytest.fixture(scope="module")
async def routing(nats_url: str, server_database_url: str) -> AsyncIterator[Routing]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        settings = RoutingSettings(nats_url=nats_url, database_url=database.role_url("routing"))
        app = create_app(settings, clock=lambda: NOW)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://routing") as http,
        ):
            headers = {}
            for served in DISTRICT_SETS:
                districts = None if served is None else list(served)
                _, secret = await announce_token(nats_url, Role.COORDINATOR, districts=districts)
                headers[served] = bearer(secret)
            for token in headers.values():
                await eventually(lambda h=token: http.get("/v1/referrals", headers=h), 200)
            yield Routing(http, app.state.runtime, headers)


async def hold_only(runtime: ServiceRuntime, cases: list[CaseRow]) -> dict[str, CaseRow]:
    """Replace routing's cases and referrals with these; returns them by case id."""
    by_id = {f"{case.district}-{n:010d}": case for n, case in enumerate(cases)}
    async with runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM deadlines; DELETE FROM referrals; DELETE FROM cases")
        await conn.executemany(
            "INSERT INTO cases (case_id, district_code, sop_id, sop_version, rules_fired, "
            "reported_at, routed_at, violence_types) VALUES ($1, $2, 'sop-contoh', 1, '{}', "
            "$3, $3, $4)",
            [(i, c.district, routed(c), list(c.violence_types)) for i, c in by_id.items()],
        )
        await conn.executemany(
            "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, state, "
            "acknowledgement_deadline, escalation_chain, rule_ids, sop_id, sop_version, "
            "acknowledge_within, root_referral_id, created_at, acknowledged_at, escalated_from, "
            "escalation_reason) VALUES ($1, $2, $3, 'case_management', 'urgent', $4, $5, '{}', "
            "'{}', 'sop-contoh', 1, $6, $1, $7, $8, $9, $10)",
            [row for case_id, case in by_id.items() for row in referral_values(case_id, case)],
        )
    return by_id


def routed(case: CaseRow) -> datetime:
    return MAY + timedelta(days=case.day)


def referral_values(case_id: str, case: CaseRow) -> list[tuple[Any, ...]]:
    values = []
    for n, referral in enumerate(case.referrals):
        made = routed(case) + timedelta(minutes=referral.minutes)
        answered = None
        if referral.answered_after is not None:
            answered = made + timedelta(minutes=referral.answered_after)
        handed_on = referral.handed_on and n > 0
        values.append((
            f"{case_id}-{n:02d}", case_id, referral.agency_id, referral.state, made + DEADLINE,
            DEADLINE, made, answered, f"{case_id}-00" if handed_on else None,
            "declined" if handed_on else None,
        ))  # fmt: skip
    return values


def expected_figures(cases: dict[str, CaseRow], counted: set[str]) -> dict[str, Any]:
    kept = [c for c in cases.values() if c.district in counted]
    referrals = [(n, r) for c in kept for n, r in enumerate(c.referrals)]
    return {
        "cases_total": len(kept),
        "by_type": Counter(v for c in kept for v in c.violence_types),
        "referrals": len(referrals),
        "answered": sum(r.answered_after is not None for _, r in referrals),
        "open": sum(r.state not in SETTLED for _, r in referrals),
        "handed_on": sum(r.handed_on and n > 0 for n, r in referrals),
    }


def figures_of(stats: dict[str, Any]) -> dict[str, Any]:
    deadlines = stats["deadlines"]
    return {
        "cases_total": stats["cases_total"],
        "by_type": Counter(
            {r["violence_type"]: r["cases"] for r in stats["cases_by_violence_type"]}
        ),
        "referrals": deadlines["met"] + deadlines["missed"] + deadlines["pending"],
        "answered": sum(r["acknowledged"] for r in stats["acknowledgement_by_agency"]),
        "open": sum(r["referrals"] for r in stats["open_referrals"]),
        "handed_on": stats["escalations_total"],
    }


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cases=st.lists(case_rows, max_size=8),
    served=st.sampled_from(DISTRICT_SETS),
    asked=st.lists(st.sampled_from(DISTRICTS), unique=True, max_size=2),
)
async def test_no_listing_or_figure_ever_reaches_outside_the_tokens_districts(
    routing: Routing, cases: list[CaseRow], served: tuple[str, ...] | None, asked: list[str]
) -> None:
    held = await hold_only(routing.runtime, cases)
    reach = set(DISTRICTS if served is None else served)
    headers = routing.headers[served]

    listed = await routing.http.get("/v1/referrals", headers=headers, params={"limit": 500})
    assert listed.status_code == 200, listed.text
    expected_ids = {
        f"{case_id}-{n:02d}"
        for case_id, case in held.items()
        if case.district in reach
        for n in range(len(case.referrals))
    }
    assert {r["referral_id"] for r in listed.json()["referrals"]} == expected_ids

    response = await routing.http.get(
        "/v1/stats", headers=headers, params={**PERIOD, "district": asked}
    )
    not_served = [d for d in asked if d not in reach]
    if not_served:
        assert response.status_code == 403
        assert response.json()["detail"].endswith(f"you do not serve district {not_served[0]}")
        return
    assert response.status_code == 200, response.text
    stats = response.json()
    counted = set(asked) if asked else reach
    expected_districts = sorted(asked) if asked else (None if served is None else list(served))
    assert stats["period"]["districts"] == expected_districts
    assert figures_of(stats) == expected_figures(held, counted)
