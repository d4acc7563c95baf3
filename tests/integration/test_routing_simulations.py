"""Impact simulation jobs through routing's HTTP API on a real PostgreSQL: a candidate SOP over
a tiny seeded district whose answer is known, progress to the total, refusals, and a job
whose routing died."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from routing.bootstrap import create_app
from routing.settings import SHIPPED_SOPS, RoutingSettings
from routing.simulations import ORPHANED, SimulationRunner
from rujuk_contracts import make_event
from rujuk_contracts.events import CaseReported, Role
from rujuk_contracts.triage import Consent, TriageFacts
from tests.integration.access_support import announce_token, bearer, eventually

pytestmark = pytest.mark.integration

PASURUAN = (SHIPPED_SOPS / "3514.yaml").read_text()
YAML = {"Content-Type": "application/yaml"}
SUICIDAL_HEALTH = (
    "      - service: health\n        agency: rsud-bangil\n        priority: urgent\n"
    "        acknowledge_within_minutes: 60\n"
)
CANDIDATE = PASURUAN.replace("version: 1", "version: 2", 1).replace(
    SUICIDAL_HEALTH, SUICIDAL_HEALTH.replace("urgent", "emergency").replace(": 60", ": 30")
)


@dataclass
class Routing:
    http: httpx.AsyncClient
    tokens: dict[str, str]
    database_url: str
    runner: SimulationRunner
    app: Any

    async def post(self, token: str, body: str, **params: Any) -> httpx.Response:
        return await self.http.post(
            "/v1/sops/simulations", content=body, params=params,
            headers={**YAML, **bearer(self.tokens[token])},
        )  # fmt: skip

    async def get(self, token: str, simulation_id: str) -> httpx.Response:
        return await self.http.get(
            f"/v1/sops/simulations/{simulation_id}", headers=bearer(self.tokens[token])
        )

    async def until_finished(self, simulation_id: str) -> dict[str, Any]:
        for _ in range(200):
            body = (await self.get("pasuruan", simulation_id)).json()
            if body["state"] in ("done", "failed"):
                return dict(body)
            await asyncio.sleep(0.05)
        raise AssertionError(f"simulation {simulation_id} still {body['state']}")


def facts(suicidal: bool, district: str = "3514") -> str:
    return TriageFacts(
        violence_types=["psychological"],
        age_group="adult",
        sex="female",
        suicidal_thoughts=suicidal,
        consent=Consent(share_with_health=True),
        district_code=district,
        kecamatan="Bangil",
    ).model_dump_json()


async def seed(database_url: str, now: datetime) -> None:
    """Four Pasuruan cases in the last 90 days (one routed before cases kept their facts), one
    older, one of Probolinggo. All invented."""
    rows = [
        ("3514-AAAAAAAAA1", "3514", now - timedelta(days=10), facts(True)),
        ("3514-AAAAAAAAA2", "3514", now - timedelta(days=3), facts(True)),
        ("3514-AAAAAAAAA3", "3514", now - timedelta(days=3), facts(False)),
        ("3514-AAAAAAAAA4", "3514", now - timedelta(days=5), None),
        ("3514-AAAAAAAAA5", "3514", now - timedelta(days=200), facts(True)),
        ("3513-AAAAAAAAA6", "3513", now - timedelta(days=2), facts(True, "3513")),
    ]
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "routing"})
    try:
        await conn.executemany(
            "INSERT INTO cases (case_id, district_code, sop_id, sop_version, rules_fired, "
            "reported_at, routed_at, triage) VALUES ($1, $2, 'sop', 1, '{}', $3, $3, $4::jsonb)",
            rows,
        )
    finally:
        await conn.close()


@pytest.fixture
async def routing(clean_bus: str, database_url: str) -> AsyncIterator[Routing]:
    await seed(database_url, datetime.now(UTC))
    settings = RoutingSettings(
        nats_url=clean_bus, database_url=database_url, simulation_chunk_cases=2
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http,
    ):
        tokens = {
            "pasuruan": (await announce_token(clean_bus, Role.COORDINATOR, districts=["3514"]))[1],
            "probolinggo": (await announce_token(clean_bus, Role.COORDINATOR, districts=["3513"]))[
                1
            ],
        }
        for secret in tokens.values():
            await eventually(lambda s=secret: http.get("/v1/sops", headers=bearer(s)), 200)
        yield Routing(http, tokens, database_url, app.state.simulations, app)


async def test_a_candidate_is_simulated_over_the_districts_past_cases(routing: Routing) -> None:
    started = await routing.post("pasuruan", CANDIDATE)
    assert started.status_code == 202, started.text
    simulation_id = started.json()["simulation_id"]
    assert started.headers["Location"] == started.json()["url"]
    assert started.json()["url"] == f"/v1/sops/simulations/{simulation_id}"

    body = await routing.until_finished(simulation_id)
    assert body["state"] == "done", body["failure"]
    assert (body["cases_done"], body["cases_total"]) == (4, 4)  # two chunks of two
    assert (body["base"]["version"], body["base"]["origin"], body["candidate"]["version"]) == (
        1,
        "file",
        2,
    )
    assert body["diff"]["summary"]["rules_changed"] == ["suicidal-thoughts"]
    result = body["result"]
    assert (result["cases_total"], result["cases_simulated"], result["cases_changed"]) == (4, 3, 2)
    assert result["cases_not_simulable"] == {"no_triage_facts": 1}
    assert sorted(c["case_id"] for c in result["changed_cases"]) == [
        "3514-AAAAAAAAA1",
        "3514-AAAAAAAAA2",
    ]
    assert result["deadline_changes"] == [
        {"agency_id": "rsud-bangil", "service": "health", "minutes_before": 60,
         "minutes_after": 30, "cases": 2}
    ]  # fmt: skip
    totals = {row["agency_id"]: (row["before"], row["after"]) for row in result["agency_totals"]}
    assert totals["rsud-bangil"] == (2, 2)
    assert totals["puspaga-pasuruan"] == (3, 3)

    older = await routing.post("pasuruan", CANDIDATE, days=365)
    body = await routing.until_finished(older.json()["simulation_id"])
    assert (body["cases_total"], body["result"]["cases_changed"]) == (5, 3)


async def test_a_routed_case_keeps_its_triage_facts_for_later_simulations(
    routing: Routing,
) -> None:
    app = routing.app
    triage = TriageFacts.model_validate_json(facts(True))
    reported = CaseReported(
        case_id="3514-BBBBBBBBB1", channel="hotline", reported_at=datetime.now(UTC), triage=triage
    )
    async with app.state.runtime.pool.acquire() as conn, conn.transaction():
        await app.state.handlers.on_case_reported(
            conn, make_event(reported, source="/rujuk/test"), reported
        )
        stored = await conn.fetchval(
            "SELECT triage::text FROM cases WHERE case_id = $1", reported.case_id
        )
    assert TriageFacts.model_validate_json(stored) == triage


async def test_a_district_not_served_is_refused_and_its_simulations_are_not_shown(
    routing: Routing,
) -> None:
    refused = await routing.post("probolinggo", CANDIDATE)
    assert refused.status_code == 403
    assert "3514" in refused.json()["detail"]
    started = await routing.post("pasuruan", CANDIDATE)
    hidden = await routing.get("probolinggo", started.json()["simulation_id"])
    assert hidden.status_code == 404


async def test_a_refused_document_and_a_bad_period_get_a_4xx_naming_the_problem(
    routing: Routing,
) -> None:
    broken = CANDIDATE.replace("priority: emergency", "priority: whenever", 1)
    response = await routing.post("pasuruan", broken)
    assert response.status_code == 422
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "whenever" in text)
    assert any(f"(line {line})" in error for error in response.json()["errors"])

    for params, field in (
        ({"from": "2026-01-01"}, "query.to"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "query.to"),
        ({"days": 30, "from": "2026-01-01", "to": "2026-01-31"}, "query.days"),
        ({"from": "1900-01-01", "to": "2026-01-31"}, "query.from"),
    ):
        response = await routing.post("pasuruan", CANDIDATE, **params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["field"] == field
    response = await routing.http.post(
        "/v1/sops/simulations", content=json.dumps({"sop": 1}),
        headers={"Content-Type": "application/json", **bearer(routing.tokens["pasuruan"])},
    )  # fmt: skip
    assert response.status_code == 415
    unknown = await routing.get("pasuruan", "sim-" + "0" * 32)
    assert unknown.status_code == 404


async def test_a_job_whose_routing_died_is_marked_failed_not_restarted(routing: Routing) -> None:
    """A runner's lock on its job goes with its connection; a poll on any replica, and every
    runner that starts, then finds the job running without its lock and marks it failed."""
    await routing.runner.stop()  # this replica runs nothing now: the jobs stay queued
    ids = [(await routing.post("pasuruan", CANDIDATE)).json()["simulation_id"] for _ in range(2)]
    dying = await asyncpg.connect(routing.database_url, server_settings={"search_path": "routing"})
    for simulation_id in ids:  # what a runner does when it claims a job
        await dying.execute(
            "SELECT pg_advisory_lock(hashtext('routing.sop_simulations:' || $1))", simulation_id
        )
        await dying.execute(
            "UPDATE sop_simulations SET state = 'running' WHERE simulation_id = $1", simulation_id
        )
    assert (await routing.get("pasuruan", ids[0])).json()["state"] == "running"
    assert await routing.runner.fail_orphans() == []  # its routing is alive

    await dying.close()  # that routing dies
    polled = (await routing.get("pasuruan", ids[0])).json()
    assert (polled["state"], polled["failure"]) == ("failed", ORPHANED)
    assert await routing.runner.fail_orphans() == [ids[1]]  # at a runner's start
    assert (await routing.get("pasuruan", ids[1])).json()["state"] == "failed"
