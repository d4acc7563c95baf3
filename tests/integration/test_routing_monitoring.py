"""The rakor's monitoring figures (GET /v1/monitoring and its CSV) on PostgreSQL, against a
small history written by routing's own store and computed by hand below; the district fence;
the queries' plans use the district's indexes."""

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from routing import store
from routing.bootstrap import create_app
from routing.decide import Decision, ReferralDecision
from routing.lifecycle import EscalationStep, ReferralState
from routing.monitoring import NOT_A_COMPLAINT, SERVICE_FUNCTIONS
from routing.settings import RoutingSettings
from rujuk_contracts.events import CloseReason, Priority, Role, Service
from rujuk_runtime.db import create_pool
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import announce_token, bearer, eventually
from tests.integration.parts_support import check_parts_connections, roomy_and_single_pools
from tests.integration.test_query_plans import (
    Statements,
    index_only_scans,
    indexes_used,
    plan_of,
    scanned_in_full,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 2, 3, 0, tzinfo=UTC)  # when routing decided: 10:00 WIB on 2 April
NOW = T0 + timedelta(minutes=100)  # when the coordinator looks
APRIL = {"from": "2026-04-01", "to": "2026-04-30"}


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@dataclass(frozen=True)
class Referral:
    rid: str
    service: Service
    agency: str
    within: int  # minutes to acknowledge


# Pasuruan (3514), cases reported on 2 April unless said otherwise:
# A by hotline: case management at UPT PPA (acknowledged at +10), health at RSUD (acknowledged
#   at +90, after its 60 minutes), shelter at the rumah aman (declined at +30, no capacity,
#   handed on to a second rumah aman, which has not answered by +100: missed);
# B by outreach: case management at UPT PPA (+30), mediation at the mediator (no answer, handed
#   on at +60 for the missed deadline to UPT PPA, whose 60 minutes are still running);
# C by walk-in, closed as a duplicate report: case management at UPT PPA (+20);
# G routed before routing kept the channel: psychosocial at PUSPAGA (two days, running);
# D by outreach, still waiting to be routed;
# F in March (outside the period); E in Probolinggo (3513), by outreach.
CASES: dict[str, tuple[str | None, datetime, list[Referral]]] = {
    "3514-AAAAAAAAA1": (
        "hotline",
        T0,
        [
            Referral("A1", Service.CASE_MANAGEMENT, "uptppa", 120),
            Referral("A2", Service.HEALTH, "rsud", 60),
            Referral("A3", Service.SHELTER, "rumah-aman", 60),
        ],
    ),
    "3514-BBBBBBBBB1": (
        "outreach",
        T0,
        [
            Referral("B1", Service.CASE_MANAGEMENT, "uptppa", 120),
            Referral("B2", Service.MEDIATION, "mediator", 60),
        ],
    ),
    "3514-CCCCCCCCC1": ("walk_in", T0, [Referral("C1", Service.CASE_MANAGEMENT, "uptppa", 120)]),
    "3514-GGGGGGGGG1": (None, T0, [Referral("G1", Service.PSYCHOSOCIAL, "puspaga", 2880)]),
    "3514-FFFFFFFFF1": (
        "outreach",
        datetime(2026, 3, 15, 3, 0, tzinfo=UTC),
        [Referral("F1", Service.SHELTER, "rumah-aman", 60)],
    ),
    "3513-EEEEEEEEE1": (
        "outreach",
        T0,
        [Referral("E1", Service.CASE_MANAGEMENT, "uptppa-probolinggo", 120)],
    ),
}
UNROUTED = "3514-DDDDDDDDD1"


async def seed(conn: asyncpg.Connection) -> None:
    for case_id, (channel, routed_at, referrals) in CASES.items():
        decision = Decision(
            case_id=case_id,
            sop_id=f"sop-{case_id[:4]}",
            sop_version=1,
            rules_fired=("rule",),
            referrals=tuple(
                ReferralDecision(
                    referral_id=r.rid,
                    service=r.service,
                    agency_id=r.agency,
                    priority=Priority.URGENT,
                    acknowledgement_deadline=routed_at + timedelta(minutes=r.within),
                    escalation_chain=("coordinator",),
                    rule_ids=("rule",),
                    acknowledge_within=timedelta(minutes=r.within),
                )
                for r in referrals
            ),
        )
        await store.add_case(
            conn,
            decision,
            district_code=case_id[:4],
            reported_at=routed_at,
            routed_at=routed_at,
            channel=channel,
        )
    answered = ReferralState.ACKNOWLEDGED
    for rid, at in (("A1", 10), ("A2", 90), ("B1", 30), ("C1", 20), ("E1", 5)):
        await store.record_reply(conn, rid, answered, "acknowledged", minutes(at))
    await store.record_reply(
        conn, "A3", ReferralState.DECLINED, "declined", minutes(30), decline_reason="no_capacity"
    )
    await hand_on(conn, "A3", "A3-e1", "rumah-aman-dua", "declined", minutes(30))
    await hand_on(conn, "B2", "B2-e1", "uptppa", "deadline_missed", minutes(60))
    await store.close_case(
        conn,
        "3514-CCCCCCCCC1",
        closed_at=minutes(50),
        closed_by="coordinator:test",
        reason=CloseReason.DUPLICATE_REPORT,
    )
    await store.record_unrouted(
        conn,
        case_id=UNROUTED,
        district_code="3514",
        reason="no_sop",
        detail="belum ada SOP / no SOP",
        reported='{"channel": "outreach"}',
        reported_at=T0,
        at=T0,
    )
    # The deadline watcher has nothing left to do in this history.
    await conn.execute("UPDATE deadlines SET fired_at = $1, outcome = 'met'", NOW)


async def hand_on(
    conn: asyncpg.Connection, rid: str, next_rid: str, agency: str, reason: str, at: datetime
) -> None:
    previous = await store.lock_referral(conn, rid)
    assert previous is not None
    step = EscalationStep(referral_id=next_rid, agency_id=agency, chain=(), step=1)
    deadline = at + previous.acknowledge_within
    assert await store.add_escalated_referral(conn, previous, step, deadline, reason, at)
    await store.mark_escalated(conn, rid, at)


@dataclass
class Routing:
    http: httpx.AsyncClient
    pasuruan: dict[str, str]
    probolinggo: dict[str, str]
    province: dict[str, str]
    database_url: str

    async def get(self, path: str, who: dict[str, str], **params: Any) -> httpx.Response:
        return await self.http.get(path, headers=who, params=params)


@pytest.fixture(scope="module")
async def routing(nats_url: str, server_database_url: str) -> AsyncIterator[Routing]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        pool = await create_pool(database.role_url("routing"), "routing")
        try:
            async with pool.acquire() as conn, conn.transaction():
                await seed(conn)
        finally:
            await pool.close()
        settings = RoutingSettings(nats_url=nats_url, database_url=database.role_url("routing"))
        app = create_app(settings, clock=lambda: NOW)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://routing") as http,
        ):
            tokens = [
                bearer((await announce_token(nats_url, Role.COORDINATOR, districts=d))[1])
                for d in (["3514"], ["3513"], None)
            ]
            for headers in tokens:
                await eventually(lambda h=headers: http.get("/v1/sops", headers=h), 200)
            yield Routing(http, *tokens, database_url=database.admin_url)


def no_reasons(**counts: int) -> dict[str, int]:
    return {"deadline_missed": 0, "declined": 0, "delivery_failed": 0} | counts


def no_declines(**counts: int) -> dict[str, int]:
    reasons = ("no_capacity", "out_of_mandate", "out_of_area", "survivor_declined", "other")
    return dict.fromkeys(reasons, 0) | counts


def agency(agency_id: str, **figures: Any) -> dict[str, Any]:
    met, missed = figures.get("within_deadline", 0), figures.get("deadline_missed", 0)
    return {
        "agency_id": agency_id,
        "referrals": 1,
        "acknowledged": 0,
        "acknowledgement_p50_minutes": None,
        "acknowledgement_p90_minutes": None,
        "deadline_p50_minutes": 60.0,
        "within_deadline": 0,
        "deadline_missed": 0,
        "pending": 0,
        "within_deadline_share": round(met / (met + missed), 4) if met + missed else None,
        "escalations": 0,
        "escalations_by_reason": no_reasons(),
        "declined": 0,
        "declined_by_reason": no_declines(),
    } | figures


EXPECTED_AGENCIES = [
    # acknowledged after 60 minutes with a 60-minute deadline, shown as missed
    agency("mediator", deadline_missed=1, escalations=1,
           escalations_by_reason=no_reasons(deadline_missed=1)),
    agency("puspaga", pending=1, deadline_p50_minutes=2880.0),
    agency("rsud", acknowledged=1, acknowledgement_p50_minutes=90.0,
           acknowledgement_p90_minutes=90.0, deadline_missed=1),
    # declining in time is answering in time; the decline hands the referral on
    agency("rumah-aman", acknowledged=1, acknowledgement_p50_minutes=30.0,
           acknowledgement_p90_minutes=30.0, within_deadline=1, escalations=1,
           escalations_by_reason=no_reasons(declined=1), declined=1,
           declined_by_reason=no_declines(no_capacity=1)),
    agency("rumah-aman-dua", deadline_missed=1),  # taken over at +30, due at +90
    # 10, 30 and 20 minutes (C's referral counts: UPT PPA was asked); B2's hand-on running
    agency("uptppa", referrals=4, acknowledged=3, acknowledgement_p50_minutes=20.0,
           acknowledgement_p90_minutes=28.0, deadline_p50_minutes=120.0, within_deadline=3,
           pending=1),
]  # fmt: skip
EXPECTED_ALL = agency(
    "*",
    referrals=9,
    acknowledged=5,
    acknowledgement_p50_minutes=30.0,  # 10, 20, 30, 30, 90
    acknowledgement_p90_minutes=66.0,
    deadline_p50_minutes=60.0,
    within_deadline=4,
    deadline_missed=3,
    pending=2,
    escalations=2,
    escalations_by_reason=no_reasons(deadline_missed=1, declined=1),
    declined=1,
    declined_by_reason=no_declines(no_capacity=1),
)
EXPECTED_FUNCTIONS = {
    "pengaduan": 4,  # A, B, G and D (waiting); not C, a duplicate
    "penjangkauan": 2,  # B and D
    "pengelolaan_kasus": 2,  # A and B
    "penampungan_sementara": 1,  # A (F is in March)
    "mediasi": 1,  # B
    "pendampingan": 2,  # A (health) and G (psychosocial)
}


async def test_the_figures_of_a_district_match_the_hand_computed_ones(routing: Routing) -> None:
    response = await routing.get("/v1/monitoring", routing.pasuruan, **APRIL)
    assert response.status_code == 200, response.text
    figures = response.json()
    assert figures["period"] == {
        "from": "2026-04-01",
        "to": "2026-04-30",
        "timezone": "Asia/Jakarta",
        "districts": ["3514"],
    }
    assert datetime.fromisoformat(figures["generated_at"]) == NOW
    assert figures["agencies"] == EXPECTED_AGENCIES
    assert figures["all_agencies"] == EXPECTED_ALL
    assert {f["function"]: f["cases"] for f in figures["service_functions"]} == EXPECTED_FUNCTIONS
    assert [f["function"] for f in figures["service_functions"]] == list(EXPECTED_FUNCTIONS)
    assert (figures["cases_reported"], figures["cases_unrouted"]) == (4, 1)
    assert figures["cases_channel_unknown"] == 1  # G


async def test_a_province_coordinator_narrows_to_one_district_or_counts_all(
    routing: Routing,
) -> None:
    narrowed = await routing.get("/v1/monitoring", routing.province, district="3514", **APRIL)
    assert narrowed.json()["agencies"] == EXPECTED_AGENCIES
    everything = (await routing.get("/v1/monitoring", routing.province, **APRIL)).json()
    assert everything["period"]["districts"] is None
    assert "uptppa-probolinggo" in [a["agency_id"] for a in everything["agencies"]]
    functions = {f["function"]: f["cases"] for f in everything["service_functions"]}
    assert functions["pengaduan"] == 5
    assert functions["penjangkauan"] == 3


async def test_a_district_not_served_is_refused_with_403(routing: Routing) -> None:
    for path in ("/v1/monitoring", "/v1/monitoring.csv"):
        refused = await routing.get(path, routing.probolinggo, district="3514", **APRIL)
        assert refused.status_code == 403, refused.text
        assert "3514" in refused.json()["detail"]
    own = (await routing.get("/v1/monitoring", routing.probolinggo, **APRIL)).json()
    assert [a["agency_id"] for a in own["agencies"]] == ["uptppa-probolinggo"]
    assert own["all_agencies"]["acknowledgement_p50_minutes"] == 5.0


async def test_march_holds_only_marchs_case(routing: Routing) -> None:
    march = await routing.get(
        "/v1/monitoring", routing.pasuruan, **{"from": "2026-03-01", "to": "2026-03-31"}
    )
    figures = march.json()
    assert [a["agency_id"] for a in figures["agencies"]] == ["rumah-aman"]
    functions = {f["function"]: f["cases"] for f in figures["service_functions"]}
    assert functions == {
        "pengaduan": 1,
        "penjangkauan": 1,
        "pengelolaan_kasus": 0,
        "penampungan_sementara": 1,
        "mediasi": 0,
        "pendampingan": 0,
    }


async def test_the_csv_holds_the_same_figures(routing: Routing) -> None:
    response = await routing.get("/v1/monitoring.csv", routing.pasuruan, **APRIL)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        "rujuk-monitoring-3514-2026-04-01-2026-04-30.csv" in response.headers["content-disposition"]
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["section", "key", "subkey", "metric", "value"]
    value = {(r[0], r[1], r[2], r[3]): r[4] for r in rows[1:]}
    assert value[("period", "", "", "districts")] == "3514"
    assert value[("agency", "uptppa", "", "acknowledgement_p90_minutes")] == "28.0"
    assert value[("agency", "*", "", "within_deadline_share")] == str(round(4 / 7, 4))
    assert value[("agency_declines", "rumah-aman", "no_capacity", "declined")] == "1"
    assert value[("agency_escalations", "mediator", "deadline_missed", "escalations")] == "1"
    assert value[("service_function", "mediasi", "", "cases")] == "1"
    assert value[("agency", "puspaga", "", "acknowledgement_p50_minutes")] == ""


async def test_a_bad_period_and_other_roles_are_refused(routing: Routing) -> None:
    backwards = await routing.get(
        "/v1/monitoring", routing.pasuruan, **{"from": "2026-04-30", "to": "2026-04-01"}
    )
    assert backwards.status_code == 422
    last_day = await routing.get(
        "/v1/monitoring", routing.pasuruan, **{"from": "2026-04-01", "to": "9999-12-31"}
    )
    assert last_day.status_code == 422
    assert (await routing.get("/v1/monitoring", {}, **APRIL)).status_code == 401


async def test_a_districts_figures_read_its_indexes_alone(routing: Routing) -> None:
    """Each statement reaches the district's rows through an index keyed by district (the case
    id's prefix for referrals), the per-agency ones without the table (index-only): a year of
    one district costs that district's rows, whatever the province holds (bench/monitoring.py
    measures it at 100,000 cases)."""
    statements = Statements()
    await store.monitoring_rows(
        statements,  # type: ignore[arg-type]
        start=NOW - timedelta(days=365),
        end=NOW,
        now=NOW,
        districts=["3514"],
        function_of_service={s.value: f.value for s, f in SERVICE_FUNCTIONS.items()},
        not_a_complaint=NOT_A_COMPLAINT,
    )
    sent = [(sql, args) for sql, args in statements.sent if not sql.startswith("SET LOCAL")]
    agencies, escalations, by_function, unrouted, declines, cases = sent
    pool = await create_pool(routing.database_url, "routing")
    try:
        async with pool.acquire() as conn, conn.transaction():
            for setting in ("enable_seqscan", "enable_bitmapscan"):
                await conn.execute(f"SET LOCAL {setting} = off")
            for sql, args in (agencies, declines):
                plan = await plan_of(conn, sql, *args)
                assert index_only_scans(plan) == {"referrals_by_district_created"}, sql
            plan = await plan_of(conn, *escalations[:1], *escalations[1])
            assert index_only_scans(plan) == {"referrals_by_district_created"}
            assert indexes_used(plan) == {"referrals_by_district_created", "referrals_pkey"}
            plan = await plan_of(conn, *by_function[:1], *by_function[1])
            assert scanned_in_full(plan) == set()
            plan = await plan_of(conn, *unrouted[:1], *unrouted[1])
            assert indexes_used(plan) == {"unrouted_cases_open"}
        async with pool.acquire() as conn:
            # With a few rows the planner may prefer the index on reported_at alone: without
            # it, the cases of a district are counted from its own index, not the table.
            rolled_back = conn.transaction()
            await rolled_back.start()
            try:
                await conn.execute("DROP INDEX cases_by_reported")
                for setting in ("enable_seqscan", "enable_bitmapscan"):
                    await conn.execute(f"SET LOCAL {setting} = off")
                plan = await plan_of(conn, *cases[:1], *cases[1])
                assert index_only_scans(plan) == {"cases_by_district_reported"}
            finally:
                await rolled_back.rollback()
    finally:
        await pool.close()


async def test_the_figures_are_the_same_asked_at_once_or_one_after_another(
    routing: Routing,
) -> None:
    """/v1/monitoring asks its parts at once on connections sharing one snapshot; with no
    connection to spare (a pool of one) they run one after another; on one connection too.
    The figures are the same each way, and the pool is whole afterwards."""
    asked: dict[str, Any] = {
        "start": T0 - timedelta(days=60),
        "end": NOW,
        "now": NOW,
        "function_of_service": {s.value: f.value for s, f in SERVICE_FUNCTIONS.items()},
        "not_a_complaint": NOT_A_COMPLAINT,
    }
    async with roomy_and_single_pools(routing.database_url) as (roomy, single):
        for districts in (None, ["3514"]):
            async with roomy.acquire() as conn:
                one = await store.monitoring_rows(conn, **asked, districts=districts)
            shared = await store.monitoring_rows_shared(roomy, **asked, districts=districts)
            starved = await store.monitoring_rows_shared(single, **asked, districts=districts)
            assert one == shared == starved
            assert one.agencies
            assert one.escalations
            assert one.cases["routed"] > 0
        await check_parts_connections(roomy, single)
