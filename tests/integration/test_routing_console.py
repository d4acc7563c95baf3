"""Routing's reads for the console, on PostgreSQL: the referral list (filters, order, pages, a
partner fenced to its agency) and monitoring & evaluation figures against a small scenario
whose figures are computed by hand below."""

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from routing import store
from routing.bootstrap import create_app
from routing.handlers import RoutingHandlers
from routing.settings import RoutingSettings
from routing.stats import period_bounds
from rujuk_contracts import make_event
from rujuk_contracts.events import (
    CaseReported,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    Role,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.service import ServiceRuntime
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import announce_token, bearer, eventually
from tests.integration.parts_support import check_parts_connections, roomy_and_single_pools

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 2, 3, 0, tzinfo=UTC)  # when routing decided: 10:00 WIB
MINUTE = timedelta(minutes=1)
# Three adult cases in Pasuruan; SOP 3514 sends each to UPT PPA (case management, urgent,
# 120 minutes to acknowledge) and PUSPAGA (psychosocial, routine, two days).
CASE_A, CASE_B, CASE_C = "3514-AAAAAAAAA1", "3514-BBBBBBBBB1", "3514-CCCCCCCCC1"
UPT, PUSPAGA = "uptppa-pasuruan", "puspaga-pasuruan"
CASES = {
    CASE_A: (["physical"], datetime(2026, 3, 10, 2, 0, tzinfo=UTC)),
    CASE_B: (["psychological"], datetime(2026, 3, 11, 2, 0, tzinfo=UTC)),
    # 18:30 UTC on 31 March is 01:30 WIB on 1 April: an April case in the district's zone.
    CASE_C: (["physical", "psychological"], datetime(2026, 3, 31, 18, 30, tzinfo=UTC)),
}


@dataclass
class Console:
    http: httpx.AsyncClient
    coordinator: dict[str, str]
    partner: dict[str, str]  # PUSPAGA's
    operator: dict[str, str]
    database_url: str  # routing's role

    async def get(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return await self.http.get(path, headers=headers, params=params)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
async def console(nats_url: str, server_database_url: str) -> AsyncIterator[Console]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        settings = RoutingSettings(nats_url=nats_url, database_url=database.role_url("routing"))
        clock = Clock()
        app = create_app(settings, clock=clock)
        routing: RoutingHandlers = app.state.handlers
        runtime: ServiceRuntime = app.state.runtime
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://routing") as http,
        ):
            await play_scenario(routing, runtime, clock)
            clock.now = T0 + 180 * MINUTE  # the coordinator looks three hours later
            tokens = [
                bearer((await announce_token(nats_url, role, agency))[1])
                for role, agency in (
                    (Role.COORDINATOR, None),
                    (Role.PARTNER, PUSPAGA),
                    (Role.OPERATOR, None),
                )
            ]
            for headers in tokens[:2]:
                await eventually(lambda h=headers: http.get("/v1/referrals", headers=h), 200)
            yield Console(http, *tokens, database_url=settings.database_url)


async def play_scenario(routing: RoutingHandlers, runtime: ServiceRuntime, clock: Clock) -> None:
    """What happened (times after T0, when every case was routed):
    - UPT PPA: A acknowledged at +10 (met); B accepted at +30 without acknowledging (met),
      completed at +180; C acknowledged at +150 (missed: the deadline was +120).
    - PUSPAGA: A declined at +60 (no capacity; met), so routing escalated it at +60;
      B and C unanswered (deadline +2 days: pending).
    """
    async with runtime.pool.acquire() as conn, conn.transaction():
        for case_id, (violence, reported_at) in CASES.items():
            case = CaseReported(
                case_id=case_id,
                channel="hotline",
                reported_at=reported_at,
                triage=TriageFacts(
                    violence_types=violence, age_group="adult", sex="female", district_code="3514"
                ),
            )
            await routing.on_case_reported(conn, make_event(case, source="/rujuk/test"), case)
    replies: list[tuple[int, EventPayload]] = [
        (10, ReferralAcknowledged(case_id=CASE_A, referral_id=upt(CASE_A), agency_id=UPT)),
        (30, ReferralAccepted(case_id=CASE_B, referral_id=upt(CASE_B), agency_id=UPT)),
        (
            60,
            ReferralDeclined(
                case_id=CASE_A,
                referral_id=puspaga(CASE_A),
                agency_id=PUSPAGA,
                reason="no_capacity",
            ),
        ),
        (150, ReferralAcknowledged(case_id=CASE_C, referral_id=upt(CASE_C), agency_id=UPT)),
        (180, ReferralCompleted(case_id=CASE_B, referral_id=upt(CASE_B), agency_id=UPT)),
    ]
    for minutes, reply in replies:
        clock.now = T0 + minutes * MINUTE
        event = make_event(reply, source=f"/rujuk/partners/{reply.agency_id}", time=clock.now)  # type: ignore[attr-defined]
        async with runtime.pool.acquire() as conn, conn.transaction():
            await routing.on_partner_reply(conn, event, reply)


# PUSPAGA's escalation chain hands a declined referral to UPT PPA.
HANDED_ON = f"{CASE_A}-02-e1"


def upt(case_id: str) -> str:
    return f"{case_id}-01"


def puspaga(case_id: str) -> str:
    return f"{case_id}-02"


async def test_referrals_come_open_first_most_urgent_first_then_newest(console: Console) -> None:
    response = await console.get("/v1/referrals", console.coordinator)
    assert response.status_code == 200, response.text
    page = response.json()
    referrals = page["referrals"]
    assert [r["referral_id"] for r in referrals] == [
        upt(CASE_A),  # open, urgent (A and C at the same time: by id)
        upt(CASE_C),
        HANDED_ON,  # open, routine, the newest (made at +60)
        puspaga(CASE_B),
        puspaga(CASE_C),
        upt(CASE_B),  # completed
        puspaga(CASE_A),  # declined, then handed on
    ]
    assert (page["limit"], page["offset"], page["next_offset"]) == (100, 0, None)
    by_id = {r["referral_id"]: r for r in referrals}
    escalated = by_id[HANDED_ON]
    assert [r["open"] for r in referrals] == [True] * 5 + [False] * 2
    assert [r["referral_id"] for r in referrals if r["deadline_missed"]] == [upt(CASE_C)]

    accepted = by_id[upt(CASE_B)]
    assert accepted["state"] == "completed"
    assert accepted["priority"] == "urgent"
    assert accepted["service"] == "case_management"
    assert at(accepted["requested_at"]) == T0
    assert at(accepted["acknowledgement_deadline"]) == T0 + 120 * MINUTE
    assert at(accepted["acknowledged_at"]) == T0 + 30 * MINUTE  # accepting answers too
    assert at(accepted["accepted_at"]) == T0 + 30 * MINUTE
    assert at(accepted["completed_at"]) == T0 + 180 * MINUTE

    declined = by_id[puspaga(CASE_A)]
    assert (declined["state"], declined["decline_reason"]) == ("escalated", "no_capacity")
    assert at(declined["declined_at"]) == at(declined["escalated_at"]) == T0 + 60 * MINUTE
    assert declined["acknowledged_at"] == declined["declined_at"]
    assert (escalated["escalation_step"], escalated["escalated_from"]) == (1, puspaga(CASE_A))
    assert (escalated["agency_id"], escalated["escalation_reason"]) == (UPT, "declined")
    assert at(escalated["requested_at"]) == T0 + 60 * MINUTE
    assert escalated["case_id"] == CASE_A
    assert by_id[upt(CASE_A)]["accepted_at"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"agency_id": UPT}, {upt(CASE_A), upt(CASE_B), upt(CASE_C), HANDED_ON}),
        ({"state": ["completed", "escalated"]}, {upt(CASE_B), puspaga(CASE_A)}),
        ({"open": "false"}, {upt(CASE_B), puspaga(CASE_A)}),
        ({"open": "true", "agency_id": PUSPAGA}, {puspaga(CASE_B), puspaga(CASE_C)}),
        ({"case_id": CASE_B}, {upt(CASE_B), puspaga(CASE_B)}),
        ({"case_id": CASE_B, "state": "requested"}, {puspaga(CASE_B)}),
    ],
)
async def test_the_coordinator_filters_referrals(
    console: Console, params: dict[str, Any], expected: set[str]
) -> None:
    response = await console.get("/v1/referrals", console.coordinator, **params)
    assert response.status_code == 200, response.text
    assert {r["referral_id"] for r in response.json()["referrals"]} == expected


async def test_a_partner_sees_only_its_own_agencys_referrals(console: Console) -> None:
    mine = await console.get("/v1/referrals", console.partner)
    assert {r["agency_id"] for r in mine.json()["referrals"]} == {PUSPAGA}
    assert len(mine.json()["referrals"]) == 3
    named = await console.get("/v1/referrals", console.partner, agency_id=PUSPAGA)
    assert named.json() == mine.json()
    other = await console.get("/v1/referrals", console.partner, agency_id=UPT)
    assert other.status_code == 403
    assert "own agency" in other.json()["detail"]
    operator = await console.get("/v1/referrals", console.operator)
    assert operator.status_code == 403


async def test_referrals_come_in_pages(console: Console) -> None:
    everything = (await console.get("/v1/referrals", console.coordinator)).json()["referrals"]
    first = (await console.get("/v1/referrals", console.coordinator, limit=3)).json()
    assert first["next_offset"] == 3
    rest = await console.get("/v1/referrals", console.coordinator, limit=5, offset=3)
    assert rest.json()["next_offset"] is None
    assert first["referrals"] + rest.json()["referrals"] == everything


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 501}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"state": "lost"}, "query.state.0"),
        ({"open": "perhaps"}, "query.open"),
        ({"agency_id": "RSUD Bangil"}, "query.agency_id"),
        ({"case_id": "not-a-case"}, "query.case_id"),
    ],
)
async def test_bad_referral_queries_get_a_422_naming_the_parameter(
    console: Console, params: dict[str, Any], field: str
) -> None:
    response = await console.get("/v1/referrals", console.coordinator, **params)
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["detail"]] == [field]
    assert all(str(v) not in response.text for v in params.values() if len(str(v)) > 4)


EXPECTED_APRIL = {
    "period": {
        "from": "2026-03-01",
        "to": "2026-04-30",
        "timezone": "Asia/Jakarta",
        "districts": None,  # a province-level token: every district
    },
    "cases_total": 3,
    "cases_by_violence_type": [
        {"violence_type": "physical", "cases": 2},
        {"violence_type": "psychological", "cases": 2},
    ],
    "cases_by_month": [{"month": "2026-03", "cases": 2}, {"month": "2026-04", "cases": 1}],
    "acknowledgement_by_agency": [
        {"agency_id": PUSPAGA, "acknowledged": 1, "median_minutes": 60.0, "worst_minutes": 60.0},
        # 10, 30 and 150 minutes: median 30, worst 150
        {"agency_id": UPT, "acknowledged": 3, "median_minutes": 30.0, "worst_minutes": 150.0},
    ],
    # met: A and B at UPT, A at PUSPAGA; missed: C at UPT; pending: B and C at PUSPAGA and
    # the referral that took over A's.
    "deadlines": {"met": 3, "missed": 1, "pending": 3, "met_share": 0.75},
    # made in the period and open now: B and C at PUSPAGA, A and C at UPT, the handed-on one
    "open_referrals": [
        {"agency_id": PUSPAGA, "state": "requested", "referrals": 2},
        {"agency_id": UPT, "state": "acknowledged", "referrals": 2},
        {"agency_id": UPT, "state": "requested", "referrals": 1},
    ],
    "escalations_total": 1,
    "escalations_by_reason": [{"reason": "declined", "escalations": 1}],
}


async def test_stats_for_a_period_match_the_hand_computed_figures(console: Console) -> None:
    response = await console.get(
        "/v1/stats", console.coordinator, **{"from": "2026-03-01", "to": "2026-04-30"}
    )
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats == EXPECTED_APRIL


async def test_the_figures_are_the_same_asked_at_once_or_one_after_another(
    console: Console,
) -> None:
    """/v1/stats asks its three parts at once on connections sharing one snapshot; with no
    connection to spare (a pool of one) they run one after another; on one connection too.
    The figures are the same each way, and the pool is whole afterwards."""
    start, end = period_bounds(date(2026, 3, 1), date(2026, 4, 30), "Asia/Jakarta")
    period: dict[str, Any] = {
        "start": start,
        "end": end,
        "timezone": "Asia/Jakarta",
        "now": T0 + 180 * MINUTE,
        "districts": None,
    }
    async with roomy_and_single_pools(console.database_url) as (roomy, single):
        async with roomy.acquire() as conn:
            one = await store.period_stats(conn, **period)
        shared = await store.period_stats_shared(roomy, **period)
        starved = await store.period_stats_shared(single, **period)
        assert one == shared == starved
        assert one.cases_total == 3
        assert one.deadlines == {"met": 3, "missed": 1, "pending": 3}
        await check_parts_connections(roomy, single)


async def test_a_period_into_the_last_representable_year_is_counted_or_refused(
    console: Console,
) -> None:
    """A period may end in December 9999 (its months after now are read from the rows); one
    ending on 9999-12-31, whose end (the next midnight) is past the calendar, is refused as
    /v1/monitoring refuses it: a 422 naming 'to', never a 500."""
    late = await console.get(
        "/v1/stats", console.coordinator, **{"from": "2026-03-01", "to": "9999-12-15"}
    )
    assert late.status_code == 200, late.text
    assert late.json()["cases_total"] == 3
    last_day = await console.get(
        "/v1/stats", console.coordinator, **{"from": "2026-03-01", "to": "9999-12-31"}
    )
    assert last_day.status_code == 422, last_day.text
    assert last_day.json()["detail"][0]["field"] == "query.to"
    for path in ("/v1/stats", "/v1/monitoring"):
        first_day = await console.get(
            path, console.coordinator, **{"from": "0001-01-01", "to": "2026-04-30"}
        )
        assert first_day.status_code == 422, first_day.text
        assert first_day.json()["detail"][0]["field"] == "query.from"


async def test_stats_count_days_and_months_in_the_districts_time_zone(console: Console) -> None:
    march = await console.get(
        "/v1/stats", console.coordinator, **{"from": "2026-03-01", "to": "2026-03-31"}
    )
    figures = march.json()
    assert figures["cases_total"] == 2  # C came at 01:30 WIB on 1 April
    assert figures["cases_by_month"] == [{"month": "2026-03", "cases": 2}]
    assert figures["deadlines"] == {"met": 0, "missed": 0, "pending": 0, "met_share": None}
    assert figures["acknowledgement_by_agency"] == figures["open_referrals"] == []


async def test_the_csv_holds_the_same_figures_as_the_json(console: Console) -> None:
    period = {"from": "2026-03-01", "to": "2026-04-30"}
    stats = (await console.get("/v1/stats", console.coordinator, **period)).json()
    response = await console.get("/v1/stats.csv", console.coordinator, **period)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["section", "key", "subkey", "metric", "value"]

    def value(section: str, metric: str, key: str = "", subkey: str = "") -> str:
        [row] = [
            r
            for r in rows
            if (r["section"], r["key"], r["subkey"], r["metric"]) == (section, key, subkey, metric)
        ]
        return row["value"]

    assert value("period", "from") == stats["period"]["from"]
    assert value("period", "districts") == "all"
    assert int(value("cases", "cases")) == stats["cases_total"]
    for item in stats["cases_by_violence_type"]:
        assert int(value("cases_by_violence_type", "cases", item["violence_type"])) == item["cases"]
    for item in stats["cases_by_month"]:
        assert int(value("cases_by_month", "cases", item["month"])) == item["cases"]
    for item in stats["acknowledgement_by_agency"]:
        for metric in ("acknowledged", "median_minutes", "worst_minutes"):
            got = float(value("acknowledgement_by_agency", metric, item["agency_id"]))
            assert got == item[metric]
    for metric in ("met", "missed", "pending", "met_share"):
        assert float(value("deadlines", metric)) == stats["deadlines"][metric]
    for item in stats["open_referrals"]:
        got = value("open_referrals", "referrals", item["agency_id"], item["state"])
        assert int(got) == item["referrals"]
    assert int(value("escalations", "escalations")) == stats["escalations_total"]
    for item in stats["escalations_by_reason"]:
        assert int(value("escalations_by_reason", "escalations", item["reason"])) == 1
    assert len(rows) == 4 + 1 + 2 + 2 + 6 + 4 + 3 + 1 + 1  # those, and nothing else


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-04-30", "to": "2026-03-01"}, "query.to"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, "query.from"),
        ({"to": "2026-03-01"}, "query.from"),
        ({"from": "2026-03-01"}, "query.to"),
    ],
)
async def test_a_bad_period_gets_a_422_naming_the_parameter(
    console: Console, params: dict[str, str], field: str
) -> None:
    for path in ("/v1/stats", "/v1/stats.csv"):
        response = await console.get(path, console.coordinator, **params)
        assert response.status_code == 422, path
        assert [p["field"] for p in response.json()["detail"]] == [field]


async def test_only_the_coordinator_reads_the_figures(console: Console) -> None:
    period = {"from": "2026-03-01", "to": "2026-04-30"}
    for path in ("/v1/stats", "/v1/stats.csv"):
        assert (await console.get(path, console.partner, **period)).status_code == 403
        assert (await console.get(path, {}, **period)).status_code == 401


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)
