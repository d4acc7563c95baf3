"""Districts as tenants at routing, in-process over real NATS and PostgreSQL: cases in Pasuruan
(3514) and Probolinggo (3513); a token bound to Pasuruan lists, counts, closes and publishes
for Pasuruan only. A Probolinggo case answers it as a case that does not exist; figures or an
SOP for Probolinggo are refused naming the district. Province and two-district tokens reach
both; a partner sees its agency's referrals and the SOPs that name it."""

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from routing.bootstrap import create_app
from routing.handlers import RoutingHandlers
from routing.settings import SHIPPED_SOPS, RoutingSettings
from rujuk_contracts import make_event
from rujuk_contracts.events import CaseReported, Role
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.service import ServiceRuntime
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import announce_token, bearer, eventually

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 2, 3, 0, tzinfo=UTC)  # when routing decided every case
PASURUAN, PROBOLINGGO = "3514", "3513"
CASES = {  # case id -> violence types; reported in March
    "3514-AAAAAAAA01": ["physical"],
    "3514-AAAAAAAA02": ["psychological"],
    "3513-BBBBBBBB01": ["physical", "neglect"],
    "3513-BBBBBBBB02": ["sexual"],
}
OUT_OF_REACH = "3513-BBBBBBBB01"  # for the Pasuruan token
NO_SUCH_CASE = "3513-0000000000"
PERIOD = {"from": "2026-03-01", "to": "2026-04-30"}
YAML = {"Content-Type": "application/yaml"}
REFUSED_FILE = "3599.yaml"  # an invented district whose SOP file is broken
# name -> (role, agency, districts); districts None: province level (or a partner)
TOKENS: dict[str, tuple[Role, str | None, list[str] | None]] = {
    "coordinator-3514": (Role.COORDINATOR, None, [PASURUAN]),
    "coordinator-both": (Role.COORDINATOR, None, [PASURUAN, PROBOLINGGO]),
    "coordinator-province": (Role.COORDINATOR, None, None),
    "operator-3513": (Role.OPERATOR, None, [PROBOLINGGO]),
    "auditor-3599": (Role.AUDITOR, None, ["3599"]),
    "rsud-bangil": (Role.PARTNER, "rsud-bangil", None),  # in Pasuruan's directory
    "uptppa-probolinggo": (Role.PARTNER, "uptppa-probolinggo", None),
    "lembaga-lain": (Role.PARTNER, "lembaga-lain", None),  # in no directory
}


@dataclass
class Routing:
    http: httpx.AsyncClient
    runtime: ServiceRuntime
    headers: dict[str, dict[str, str]]

    async def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.headers[token], params=params)

    async def referral_ids(self, token: str, **params: Any) -> list[str]:
        response = await self.get("/v1/referrals", token, limit=500, **params)
        assert response.status_code == 200, response.text
        return [r["referral_id"] for r in response.json()["referrals"]]

    async def stats(self, token: str, **params: Any) -> dict[str, Any]:
        response = await self.get("/v1/stats", token, **PERIOD, **params)
        assert response.status_code == 200, response.text
        figures: dict[str, Any] = response.json()
        return figures

    async def case_row(self, case_id: str) -> asyncpg.Record | None:
        async with self.runtime.pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT closed_at, closed_by FROM cases WHERE case_id = $1", case_id
            )


@pytest.fixture(scope="module")
async def routing(
    nats_url: str, server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Routing]:
    await remove_streams(nats_url)
    sop_dir = tmp_path_factory.mktemp("sops")
    for district in (PASURUAN, PROBOLINGGO):
        (sop_dir / f"{district}.yaml").write_text((SHIPPED_SOPS / f"{district}.yaml").read_text())
    (sop_dir / REFUSED_FILE).write_text("district_code: '3599'\nrules: [")
    async with provisioned_database(server_database_url) as database:
        settings = RoutingSettings(
            nats_url=nats_url, database_url=database.role_url("routing"), sop_dir=Path(sop_dir)
        )
        app = create_app(settings, clock=lambda: T0)
        handlers: RoutingHandlers = app.state.handlers
        runtime: ServiceRuntime = app.state.runtime
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://routing") as http,
        ):
            for number, (case_id, violence) in enumerate(CASES.items(), start=1):
                case = CaseReported(
                    case_id=case_id,
                    channel="hotline",
                    reported_at=datetime(2026, 3, number, 2, 0, tzinfo=UTC),
                    triage=TriageFacts(
                        violence_types=violence,
                        age_group="adult",
                        sex="female",
                        district_code=case_id[:4],
                    ),
                )
                async with runtime.pool.acquire() as conn, conn.transaction():
                    event = make_event(case, source="/rujuk/test")
                    await handlers.on_case_reported(conn, event, case)
            headers = {}
            for name, (role, agency, districts) in TOKENS.items():
                headers[name] = bearer(
                    (await announce_token(nats_url, role, agency, districts=districts))[1]
                )
            for token in headers.values():
                await eventually(lambda h=token: http.get("/v1/sops", headers=h), 200)
            yield Routing(http, runtime, headers)


def of_district(referral_ids: list[str], district: str) -> list[str]:
    return [r for r in referral_ids if r.startswith(f"{district}-")]


async def test_a_pasuruan_coordinator_lists_only_pasuruans_referrals(routing: Routing) -> None:
    everything = await routing.referral_ids("coordinator-province")
    pasuruan = of_district(everything, PASURUAN)
    assert pasuruan
    assert of_district(everything, PROBOLINGGO)
    assert await routing.referral_ids("coordinator-3514") == pasuruan
    assert await routing.referral_ids("coordinator-both") == everything


async def test_a_case_elsewhere_lists_as_an_unknown_case_does(routing: Routing) -> None:
    hidden = await routing.get("/v1/referrals", "coordinator-3514", case_id=OUT_OF_REACH)
    unknown = await routing.get("/v1/referrals", "coordinator-3514", case_id=NO_SUCH_CASE)
    assert hidden.status_code == unknown.status_code == 200
    assert hidden.json() == unknown.json()
    assert hidden.json()["referrals"] == []
    for name in ("coordinator-both", "coordinator-province"):
        seen = await routing.referral_ids(name, case_id=OUT_OF_REACH)
        assert seen, name
        assert all(r.startswith(OUT_OF_REACH) for r in seen), name


async def test_a_partner_sees_its_agencys_referrals_whatever_the_district(
    routing: Routing,
) -> None:
    agency = "uptppa-probolinggo"
    mine = await routing.referral_ids(agency)
    assert mine == await routing.referral_ids("coordinator-province", agency_id=agency)
    assert mine
    assert of_district(mine, PROBOLINGGO) == mine


async def test_a_pasuruan_coordinator_counts_only_pasuruan(routing: Routing) -> None:
    everything = await routing.referral_ids("coordinator-province")
    figures = await routing.stats("coordinator-3514")
    assert figures["period"]["districts"] == [PASURUAN]
    assert figures["cases_total"] == 2
    assert figures["cases_by_violence_type"] == [
        {"violence_type": "physical", "cases": 1},
        {"violence_type": "psychological", "cases": 1},
    ]
    deadlines = figures["deadlines"]
    made = deadlines["met"] + deadlines["missed"] + deadlines["pending"]
    assert made == len(of_district(everything, PASURUAN))
    assert sum(r["referrals"] for r in figures["open_referrals"]) == made
    assert not [r for r in figures["open_referrals"] if r["agency_id"].endswith("probolinggo")]


@pytest.mark.parametrize(
    ("token", "params", "districts", "cases"),
    [
        ("coordinator-province", {}, None, 4),
        ("coordinator-both", {}, [PROBOLINGGO, PASURUAN], 4),
        ("coordinator-both", {"district": PROBOLINGGO}, [PROBOLINGGO], 2),
        ("coordinator-province", {"district": [PASURUAN, PROBOLINGGO]}, [PROBOLINGGO, PASURUAN], 4),
        ("coordinator-province", {"district": PASURUAN}, [PASURUAN], 2),
        ("coordinator-3514", {"district": PASURUAN}, [PASURUAN], 2),
    ],
)
async def test_wider_tokens_count_both_districts_or_the_ones_asked_for(
    routing: Routing, token: str, params: dict[str, Any], districts: list[str] | None, cases: int
) -> None:
    figures = await routing.stats(token, **params)
    assert (figures["period"]["districts"], figures["cases_total"]) == (districts, cases)


async def test_figures_for_a_district_not_served_are_refused_naming_it(routing: Routing) -> None:
    for path in ("/v1/stats", "/v1/stats.csv"):
        for asked in (PROBOLINGGO, [PASURUAN, PROBOLINGGO]):
            refused = await routing.get(path, "coordinator-3514", **PERIOD, district=asked)
            assert refused.status_code == 403, path
            assert refused.json() == {
                "detail": "Anda tidak melayani kabupaten 3513 / you do not serve district 3513"
            }
        bad = await routing.get(path, "coordinator-3514", **PERIOD, district="35.1")
        assert bad.status_code == 422
        assert [p["field"] for p in bad.json()["detail"]] == ["query.district.0"]


async def test_the_csv_says_which_districts_it_counts(routing: Routing) -> None:
    response = await routing.get("/v1/stats.csv", "coordinator-3514", **PERIOD)
    assert response.status_code == 200
    rows = {
        (row["section"], row["metric"]): row["value"]
        for row in csv.DictReader(io.StringIO(response.text))
        if not row["key"]
    }
    assert (rows[("period", "districts")], rows[("cases", "cases")]) == (PASURUAN, "2")
    province = await routing.get("/v1/stats.csv", "coordinator-province", **PERIOD)
    assert "period,,,districts,all\r\n" in province.text


async def test_closing_a_case_elsewhere_answers_no_case_and_changes_nothing(
    routing: Routing,
) -> None:
    async def close(case_id: str, token: str) -> httpx.Response:
        return await routing.http.post(f"/v1/cases/{case_id}/close", headers=routing.headers[token])

    hidden = await close(OUT_OF_REACH, "coordinator-3514")
    unknown = await close(NO_SUCH_CASE, "coordinator-3514")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == {"detail": f"kasus tidak ada / no case {OUT_OF_REACH}"}
    assert hidden.text.replace(OUT_OF_REACH, "ID") == unknown.text.replace(NO_SUCH_CASE, "ID")
    row = await routing.case_row(OUT_OF_REACH)
    assert row is not None
    assert row["closed_at"] is None
    # It exists and has open referrals: a coordinator who serves Probolinggo is told so.
    for token in ("coordinator-both", "coordinator-province"):
        assert (await close(OUT_OF_REACH, token)).status_code == 409, token
    assert (await close("3514-AAAAAAAA01", "coordinator-3514")).status_code == 409


async def test_an_sop_for_a_district_not_served_is_refused_before_anything_is_stored(
    routing: Routing,
) -> None:
    version_2 = (SHIPPED_SOPS / "3513.yaml").read_text().replace("version: 1", "version: 2")
    refused = await routing.http.post(
        "/v1/sops", content=version_2, headers={**YAML, **routing.headers["coordinator-3514"]}
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Anda tidak melayani kabupaten 3513 / you do not serve district 3513"
    }
    async with routing.runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sops") == 0
    in_force = (await routing.get("/v1/sops", "coordinator-province")).json()["in_force"]
    assert (in_force[PROBOLINGGO]["version"], in_force[PROBOLINGGO]["origin"]) == (1, "file")

    published = await routing.http.post(
        "/v1/sops", content=version_2, headers={**YAML, **routing.headers["coordinator-both"]}
    )
    assert published.status_code == 201, published.text


@pytest.mark.parametrize(
    ("token", "districts", "refused"),
    [
        ("coordinator-3514", [PASURUAN], []),
        ("operator-3513", [PROBOLINGGO], []),
        ("coordinator-both", [PROBOLINGGO, PASURUAN], []),
        ("coordinator-province", [PROBOLINGGO, PASURUAN], [REFUSED_FILE]),
        ("auditor-3599", [], [REFUSED_FILE]),
        ("rsud-bangil", [PASURUAN], []),
        ("uptppa-probolinggo", [PROBOLINGGO], []),
        ("lembaga-lain", [], []),
    ],
)
async def test_each_token_sees_the_sops_of_its_districts_or_of_its_agency(
    routing: Routing, token: str, districts: list[str], refused: list[str]
) -> None:
    response = await routing.get("/v1/sops", token)
    assert response.status_code == 200
    body = response.json()
    assert list(body["in_force"]) == districts
    assert list(body["refused_files"]) == refused
