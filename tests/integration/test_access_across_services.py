"""One identity across services: a token made in intake (as `rujuk token create` makes it)
works at routing, audit and notify once its event is projected, and stops working there when
revoked; every protected route of every service answers 401 without a token and 403 to a
role that may not. Real NATS and PostgreSQL; the four services in-process."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from audit.bootstrap import create_app as create_audit
from audit.settings import AuditSettings
from intake import store
from intake.bootstrap import create_app as create_intake
from intake.settings import IntakeSettings
from intake.vault import new_master_key_spec
from notify.bootstrap import create_app as create_notify
from notify.settings import NotifySettings
from routing import oncall
from routing import store as routing_store
from routing.bootstrap import create_app as create_routing
from routing.paging import alert_id_for
from routing.settings import RoutingSettings
from rujuk.samples import SAMPLE_REPORTS
from rujuk_contracts.events import EscalationReason, Role
from rujuk_runtime.access import hash_secret
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import bearer, eventually

pytestmark = pytest.mark.integration

TTL = 0.5  # RUJUK_TOKEN_CACHE_SECONDS for this test: revocation shows within it
CASE = "3514-AB12CD34EF"
REFERRAL = f"{CASE}-01"
NOTE = "note-" + "0" * 32
ALERT = f"{REFERRAL}-oncall"
PROPOSAL = "prop-" + "0" * 32
NO_SUCH_SIMULATION = "sim-" + "0" * 32
# Who may call each protected route; every other role gets 403. The test fails if a service
# grows a /v1 route that is not listed here (whoami and the SOP list take any caller).
ALLOWED: dict[str, dict[tuple[str, str], set[Role]]] = {
    "intake": {
        ("POST", "/v1/reports"): {Role.OPERATOR, Role.CADRE},
        ("GET", "/v1/cases/{case_id}"): {Role.OPERATOR, Role.COORDINATOR, Role.CADRE},
        ("GET", "/v1/cases/{case_id}/details"): {Role.PARTNER},
        ("GET", "/v1/cases/{case_id}/disclosures"): {Role.AUDITOR, Role.COORDINATOR},
        ("POST", "/v1/cases/{case_id}/erase"): {Role.COORDINATOR},
        ("POST", "/v1/cases/{case_id}/notes"): {Role.PARTNER, Role.COORDINATOR},
        ("GET", "/v1/cases/{case_id}/notes/{note_id}"): {
            Role.PARTNER,
            Role.COORDINATOR,
            Role.AUDITOR,
        },
    },
    "routing": {
        ("POST", "/v1/sops"): {Role.COORDINATOR},
        ("POST", "/v1/cases/{case_id}/close"): {Role.COORDINATOR},
        ("GET", "/v1/cases/unrouted"): {Role.COORDINATOR},
        ("POST", "/v1/cases/{case_id}/route"): {Role.COORDINATOR},
        ("GET", "/v1/referrals"): {Role.COORDINATOR, Role.PARTNER},
        ("GET", "/v1/stats"): {Role.COORDINATOR},
        ("GET", "/v1/stats.csv"): {Role.COORDINATOR},
        ("GET", "/v1/monitoring"): {Role.COORDINATOR},
        ("GET", "/v1/monitoring.csv"): {Role.COORDINATOR},
        ("GET", "/v1/oncall/alerts"): {Role.COORDINATOR},
        ("POST", "/v1/oncall/alerts/{alert_id}/acknowledge"): {Role.COORDINATOR},
        ("POST", "/v1/sop-proposals"): {Role.COORDINATOR},
        ("POST", "/v1/sops/simulations"): {Role.COORDINATOR},
        ("GET", "/v1/sops/simulations/{simulation_id}"): {Role.COORDINATOR},
        ("GET", "/v1/sop-proposals"): {Role.COORDINATOR, Role.PARTNER},
        ("GET", "/v1/sop-proposals/{proposal_id}"): {Role.COORDINATOR, Role.PARTNER},
        ("GET", "/v1/sop-proposals/{proposal_id}/document"): {Role.COORDINATOR, Role.PARTNER},
        ("POST", "/v1/sop-proposals/{proposal_id}/answers"): {Role.PARTNER},
        ("POST", "/v1/sop-proposals/{proposal_id}/publish"): {Role.COORDINATOR},
        ("POST", "/v1/sop-proposals/{proposal_id}/withdraw"): {Role.COORDINATOR},
    },
    "audit": {
        ("GET", "/v1/cases/{case_id}/history"): {Role.AUDITOR, Role.COORDINATOR},
        ("GET", "/v1/cases/{case_id}/bundle"): {Role.AUDITOR, Role.COORDINATOR},
        ("GET", "/v1/cases/{case_id}/verify"): {Role.AUDITOR, Role.COORDINATOR},
        ("GET", "/v1/ledger/verify"): {Role.AUDITOR, Role.COORDINATOR},
        ("GET", "/v1/checkpoints/latest"): {Role.AUDITOR, Role.COORDINATOR},
        ("GET", "/v1/parked"): {Role.AUDITOR, Role.COORDINATOR},
        ("POST", "/v1/replays"): {Role.AUDITOR, Role.COORDINATOR},
    },
    "notify": {
        ("POST", "/v1/referrals/{referral_id}/replies"): {Role.PARTNER},
        ("GET", "/v1/referrals/{referral_id}/fhir"): {Role.PARTNER},
    },
}
OPEN_TO_ANY = {("GET", "/v1/whoami"), ("GET", "/v1/sops")}
# No token: the acknowledgement code in the body is the credential (docs/notify.md, "Paging").
CODE_IS_THE_CREDENTIAL = {"notify": {("POST", "/v1/oncall/replies")}}


@dataclass
class Services:
    clients: dict[str, httpx.AsyncClient]
    apps: dict[str, FastAPI]
    database_url: str
    tokens: dict[Role, tuple[str, str]]  # role -> (token_id, secret)

    def headers(self, role: Role) -> dict[str, str]:
        return bearer(self.tokens[role][1])

    async def intake_db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url, server_settings={"search_path": "intake"})


@pytest.fixture(scope="module")
async def services(nats_url: str, server_database_url: str) -> AsyncIterator[Services]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        database_url = database.admin_url
        shared: dict[str, Any] = {"nats_url": nats_url, "token_cache_seconds": TTL}
        apps = {  # each service as its own PostgreSQL role
            "intake": create_intake(
                IntakeSettings(
                    **shared,
                    database_url=database.role_url("intake"),
                    master_keys=new_master_key_spec("k1"),
                )
            ),
            "routing": create_routing(
                RoutingSettings(**shared, database_url=database.role_url("routing"))
            ),
            "audit": create_audit(AuditSettings(**shared, database_url=database.role_url("audit"))),
            "notify": create_notify(
                NotifySettings(
                    **shared,
                    database_url=database.role_url("notify"),
                    webhook_signing_key="test-signing-key",
                )
            ),
        }
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for name, app in apps.items():
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients[name] = await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
                    )
                )
            tokens = {}
            conn = await asyncpg.connect(
                database.role_url("intake"), server_settings={"search_path": "intake"}
            )
            try:  # as `rujuk token create` does: straight into intake's schema and outbox
                for role in Role:
                    agency = "rsud-bangil" if role is Role.PARTNER else None
                    cadre = role is Role.CADRE  # one district and its kecamatan
                    tokens[role] = await store.create_token(
                        conn,
                        role,
                        agency_id=agency,
                        label="Ibu Contoh (invented holder)",
                        districts=["3514"] if cadre else None,
                        areas=["Bangil"] if cadre else (),
                    )
            finally:
                await conn.close()
            yield Services(clients, apps, database_url, tokens)


async def test_a_token_made_in_intake_works_at_every_service_once_projected(
    services: Services,
) -> None:
    clients = services.clients
    coordinator = services.headers(Role.COORDINATOR)
    await eventually(lambda: clients["routing"].get("/v1/referrals", headers=coordinator), 200)
    auditor = services.headers(Role.AUDITOR)
    await eventually(lambda: clients["audit"].get("/v1/parked", headers=auditor), 200)
    partner = services.headers(Role.PARTNER)
    # Authenticated, the partner hears that no such referral was delivered to its agency.
    refused = await eventually(
        lambda: clients["notify"].post(
            f"/v1/referrals/{REFERRAL}/replies", json={"reply": "accept"}, headers=partner
        ),
        404,
    )
    assert "'rsud-bangil'" in refused.json()["detail"]
    whoami = await clients["intake"].get("/v1/whoami", headers=coordinator)
    assert whoami.json()["token_id"] == services.tokens[Role.COORDINATOR][0]


async def test_token_events_are_in_the_ledger_without_the_label_or_the_secret(
    services: Services,
) -> None:
    auditor = services.headers(Role.AUDITOR)
    await eventually(lambda: services.clients["audit"].get("/v1/parked", headers=auditor), 200)
    token_id, secret = services.tokens[Role.PARTNER]
    history = await eventually(
        lambda: services.clients["audit"].get(f"/v1/cases/{token_id}/history", headers=auditor),
        200,
    )
    [entry] = history.json()["entries"]
    assert entry["event_type"] == "id.rujuk.token.issued.v1"
    assert entry["summary"] == f"token {token_id} issued: partner of rsud-bangil"
    data = entry["event"]["data"]
    assert (data["role"], data["agency_id"]) == ("partner", "rsud-bangil")
    assert data["secret_sha256"] == hash_secret(secret).hex()
    assert "Contoh" not in history.text
    assert secret not in history.text


@pytest.mark.parametrize("service", sorted(ALLOWED))
async def test_every_protected_route_refuses_no_token_and_the_wrong_role(
    services: Services, service: str
) -> None:
    declared = {
        (method, route.path)
        for route in services.apps[service].routes
        if isinstance(route, APIRoute) and route.path.startswith("/v1/")
        for method in route.methods
    }
    by_code = CODE_IS_THE_CREDENTIAL.get(service, set())
    assert declared - OPEN_TO_ANY - by_code == set(ALLOWED[service]), "a /v1 route not in ALLOWED"
    client = services.clients[service]
    for method, path in by_code:  # without a code, refused whoever calls
        assert (await client.request(method, path, json={})).status_code == 422, path
    for (method, path), allowed in ALLOWED[service].items():
        url = path.format(
            case_id=CASE,
            referral_id=REFERRAL,
            note_id=NOTE,
            alert_id=ALERT,
            proposal_id=PROPOSAL,
            simulation_id=NO_SUCH_SIMULATION,
        )
        body = {"json": {}} if method == "POST" else {}
        anonymous = await client.request(method, url, **body)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        for role in sorted(set(Role) - allowed):
            forbidden = await eventually(  # 401 until the token is projected
                partial(client.request, method, url, headers=services.headers(role), **body),
                403,
            )
            assert "peran tidak diizinkan" in forbidden.json()["detail"], (method, path, role)


async def test_a_revoked_token_stops_working_at_every_service(services: Services) -> None:
    operator = services.headers(Role.OPERATOR)
    coordinator = services.headers(Role.COORDINATOR)
    routing, intake = services.clients["routing"], services.clients["intake"]
    await eventually(lambda: routing.get("/v1/referrals", headers=coordinator), 200)
    await eventually(lambda: intake.get("/v1/whoami", headers=coordinator), 200)
    conn = await services.intake_db()
    try:  # as `rujuk token revoke` does
        assert await store.revoke_token(conn, services.tokens[Role.COORDINATOR][0])
    finally:
        await conn.close()
    started = time.monotonic()
    await eventually(lambda: routing.get("/v1/referrals", headers=coordinator), 401)
    await eventually(lambda: intake.get("/v1/whoami", headers=coordinator), 401)
    await eventually(lambda: services.clients["audit"].get("/v1/parked", headers=coordinator), 401)
    # The relay's poll (0.5 s), the projection, and at most the cache time.
    assert time.monotonic() - started < 5
    assert (await intake.get("/v1/whoami", headers=operator)).status_code == 200


# --- districts as tenants ------------------------------------------------------------------

# How each /v1 route keeps a district-bound token to its districts (the test below checks
# each kind; it fails when a service grows a route that is not listed here):
# - "case": a case of another district answers exactly as a case that does not exist;
# - "listing" / "figures": rows and counts of served districts only;
# - "files": a report for a district not served is refused (422 naming district_code);
# - "sop": publishing, proposing or simulating another district's SOP is refused (403),
#   nothing stored;
# - "proposals" / "proposal" / "simulation": another district's proposal or simulation
#   answers exactly as one that does not exist (404);
# - "replay": another district's case replays as an unknown one; a time range, own only;
# - "ledger": integrity facts of the whole ledger, naming no case of another district;
# - "partner": partner-only, bound to its agency (and so to the SOPs that name it);
# - "alerts" / "alert": on-call alerts of served districts only; another district's alert
#   is acknowledged as one that does not exist (404), and stays unacknowledged.
SCOPE: dict[str, dict[tuple[str, str], str]] = {
    "intake": {
        ("POST", "/v1/reports"): "files",
        ("GET", "/v1/cases/{case_id}"): "case",
        ("GET", "/v1/cases/{case_id}/details"): "partner",
        ("GET", "/v1/cases/{case_id}/disclosures"): "case",
        ("POST", "/v1/cases/{case_id}/erase"): "case",
        ("POST", "/v1/cases/{case_id}/notes"): "case",
        ("GET", "/v1/cases/{case_id}/notes/{note_id}"): "case",
    },
    "routing": {
        ("POST", "/v1/sops"): "sop",
        ("POST", "/v1/cases/{case_id}/close"): "case",
        ("GET", "/v1/cases/unrouted"): "unrouted",
        ("POST", "/v1/cases/{case_id}/route"): "case",
        ("GET", "/v1/referrals"): "listing",
        ("GET", "/v1/stats"): "figures",
        ("GET", "/v1/stats.csv"): "figures",
        ("GET", "/v1/monitoring"): "figures",
        ("GET", "/v1/monitoring.csv"): "figures",
        ("GET", "/v1/oncall/alerts"): "alerts",
        ("POST", "/v1/oncall/alerts/{alert_id}/acknowledge"): "alert",
        ("POST", "/v1/sop-proposals"): "sop",
        ("POST", "/v1/sops/simulations"): "sop",
        ("GET", "/v1/sops/simulations/{simulation_id}"): "simulation",
        ("GET", "/v1/sop-proposals"): "proposals",
        ("GET", "/v1/sop-proposals/{proposal_id}"): "proposal",
        ("GET", "/v1/sop-proposals/{proposal_id}/document"): "proposal",
        ("POST", "/v1/sop-proposals/{proposal_id}/answers"): "partner",
        ("POST", "/v1/sop-proposals/{proposal_id}/publish"): "proposal",
        ("POST", "/v1/sop-proposals/{proposal_id}/withdraw"): "proposal",
    },
    "audit": {
        ("GET", "/v1/cases/{case_id}/history"): "case",
        ("GET", "/v1/cases/{case_id}/bundle"): "case",
        ("GET", "/v1/cases/{case_id}/verify"): "case",
        ("GET", "/v1/ledger/verify"): "ledger",
        ("GET", "/v1/checkpoints/latest"): "ledger",
        ("GET", "/v1/parked"): "ledger",
        ("POST", "/v1/replays"): "replay",
    },
    "notify": {
        ("POST", "/v1/referrals/{referral_id}/replies"): "partner",
        ("GET", "/v1/referrals/{referral_id}/fhir"): "partner",
    },
}
# A well-formed body per POST route with a case in its path (what a real caller sends).
CASE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("intake", "/v1/cases/{case_id}/erase"): {"reason": "survivor_request"},
    ("intake", "/v1/cases/{case_id}/notes"): {"kind": "close_note", "text": "catatan contoh"},
    ("routing", "/v1/cases/{case_id}/close"): {"reason": "services_completed"},
    ("routing", "/v1/cases/{case_id}/route"): {},
}
NO_SUCH_CASE = {"3513": "3513-ZZZZZZZZZZ", "3514": "3514-ZZZZZZZZZZ"}


@dataclass
class Districts:
    """One case in each district, and 3514-bound tokens of every district-bound role."""

    cases: dict[str, str]  # district -> case id
    alerts: dict[str, str]  # district -> the id of an open on-call alert on its case
    tokens: dict[Role, str]  # role -> secret, bound to 3514
    province: dict[Role, str]  # role -> secret, province level (every district)
    note_id: str  # a note on the 3513 case, written by a province coordinator


@pytest.fixture(scope="module")
async def districts(services: Services) -> Districts:
    conn = await services.intake_db()
    try:  # of its own: another test revokes the module's coordinator
        tokens, province = {}, {}
        # A cadre is never province level; its scope: tests/integration/test_intake_cadres.py.
        for role in (r for r in Role if r.district_bound and r is not Role.CADRE):
            tokens[role] = (await store.create_token(conn, role, districts=["3514"]))[1]
            province[role] = (await store.create_token(conn, role, districts=None))[1]
    finally:
        await conn.close()
    operator = bearer(province[Role.OPERATOR])  # files for both districts
    intake = services.clients["intake"]
    cases: dict[str, str] = {}
    for sample in SAMPLE_REPORTS:
        district = sample["district_code"]
        if district not in cases:
            filed = await eventually(
                partial(intake.post, "/v1/reports", json=sample, headers=operator), 202
            )
            cases[district] = filed.json()["case_id"]
    coordinator, auditor = bearer(province[Role.COORDINATOR]), bearer(province[Role.AUDITOR])
    # Projected everywhere once the last one made (an auditor's) is: events keep their order.
    last = bearer(province[Role.AUDITOR])
    await eventually(partial(services.clients["routing"].get, "/v1/sops", headers=last), 200)
    await eventually(partial(services.clients["audit"].get, "/v1/parked", headers=last), 200)
    for case_id in cases.values():  # routed, and in the ledger
        deadline = time.monotonic() + 15
        while not (
            await services.clients["routing"].get(
                "/v1/referrals", params={"case_id": case_id}, headers=coordinator
            )
        ).json()["referrals"]:
            assert time.monotonic() < deadline, f"{case_id} not routed"
            await asyncio.sleep(0.1)
        await eventually(
            partial(services.clients["audit"].get, f"/v1/cases/{case_id}/history", headers=auditor),
            200,
        )
    note = await intake.post(
        f"/v1/cases/{cases['3513']}/notes",
        json={"kind": "close_note", "text": "catatan contoh koordinator provinsi"},
        headers=coordinator,
    )
    assert note.status_code == 201, note.text
    alerts = {}
    conn = await asyncpg.connect(services.database_url, server_settings={"search_path": "routing"})
    try:  # a chain run out on each case, its alert opened as routing's watcher opens them
        for district, case_id in cases.items():
            async with conn.transaction():
                case = await routing_store.lock_case(conn, case_id, None)
            assert case is not None
            referral = case.referrals[0]
            assert await oncall.open_alert(
                conn, referral, EscalationReason.DEADLINE_MISSED, datetime.now(UTC)
            )
            alerts[district] = alert_id_for(referral.referral_id)
    finally:
        await conn.close()
    return Districts(cases, alerts, tokens, province, note.json()["note_id"])


def _same_answer(elsewhere: httpx.Response, missing: httpx.Response, ids: tuple[str, str]) -> None:
    """Another district's case and a case that does not exist look alike, ids aside."""
    assert elsewhere.status_code == missing.status_code
    assert elsewhere.text.replace(ids[0], "<case>") == missing.text.replace(ids[1], "<case>")


async def _proposal_3513(client: httpx.AsyncClient, districts: Districts) -> str:
    """The open proposal of 3513 (v2, duties unchanged), proposed by a province coordinator."""
    sop = Path(__file__).parents[2] / "services/routing/src/routing/sops/3513.yaml"
    proposed = await client.post(
        "/v1/sop-proposals",
        content=sop.read_text().replace("version: 1", "version: 2", 1),
        headers={
            **bearer(districts.province[Role.COORDINATOR]),
            "Content-Type": "application/yaml",
        },
    )
    assert proposed.status_code in (200, 201), proposed.text
    proposal_id: str = proposed.json()["proposal_id"]
    return proposal_id


async def _simulation_3513(client: httpx.AsyncClient, districts: Districts) -> str:
    """A simulation of 3513's SOP over its past cases, started by a province coordinator."""
    sop = Path(__file__).parents[2] / "services/routing/src/routing/sops/3513.yaml"
    started = await client.post(
        "/v1/sops/simulations",
        content=sop.read_text().replace("version: 1", "version: 2", 1),
        headers={
            **bearer(districts.province[Role.COORDINATOR]),
            "Content-Type": "application/yaml",
        },
    )
    assert started.status_code == 202, started.text
    simulation_id: str = started.json()["simulation_id"]
    return simulation_id


@pytest.mark.parametrize("service", sorted(SCOPE))
async def test_a_district_token_learns_nothing_of_another_district(
    services: Services, districts: Districts, service: str
) -> None:
    """Every /v1 route, with a 3514-bound token of each role it allows, against 3513 data."""
    assert set(SCOPE[service]) == set(ALLOWED[service]), "a /v1 route has no scope kind"
    client = services.clients[service]
    theirs, ours = districts.cases["3513"], districts.cases["3514"]
    for (method, path), kind in SCOPE[service].items():
        roles = sorted(r for r in ALLOWED[service][(method, path)] if r.district_bound)
        # A cadre's own scope (its district, kecamatan and reports): test_intake_cadres.py.
        for role in (r for r in roles if r is not Role.CADRE):
            headers = bearer(districts.tokens[role])
            where = (service, method, path, role)
            if kind == "case":
                body = {"json": CASE_BODIES.get((service, path), {})} if method == "POST" else {}
                note = districts.note_id
                elsewhere = await client.request(
                    method, path.format(case_id=theirs, note_id=note), headers=headers, **body
                )
                missing = await client.request(
                    method,
                    path.format(case_id=NO_SUCH_CASE["3513"], note_id=note),
                    headers=headers,
                    **body,
                )
                _same_answer(elsewhere, missing, (theirs, NO_SUCH_CASE["3513"]))
                assert elsewhere.status_code in (403, 404), where
            elif kind == "files":
                sample = next(s for s in SAMPLE_REPORTS if s["district_code"] == "3513")
                refused = await client.post(path, json=sample, headers=headers)
                assert refused.status_code == 422, where
                assert "district_code" in refused.text, where
            elif kind == "listing":
                page = (await client.get(path, params={"limit": 500}, headers=headers)).json()
                cases = {r["case_id"] for r in page["referrals"]}
                assert ours in cases, where
                assert all(c.startswith("3514-") for c in cases), where
                asked = await client.get(path, params={"case_id": theirs}, headers=headers)
                assert asked.json()["referrals"] == [], where
            elif kind == "figures":
                period = {"from": "2000-01-01", "to": "2100-12-31"}
                mine = await client.get(path, params=period, headers=headers)
                province = await client.get(
                    path, params=period, headers=bearer(districts.province[Role.COORDINATOR])
                )
                assert mine.status_code == province.status_code == 200, where
                if path.endswith(".csv"):
                    assert mine.text != province.text, where
                else:
                    counted = "cases_reported" if "monitoring" in path else "cases_total"
                    assert mine.json()[counted] == 1, where
                    assert province.json()[counted] == 2, where
            elif kind == "sop":
                sop = Path(__file__).parents[2] / "services/routing/src/routing/sops/3513.yaml"
                refused = await client.post(
                    path,
                    content=sop.read_bytes(),
                    headers={**headers, "Content-Type": "application/yaml"},
                )
                assert refused.status_code == 403, where
                assert "3513" in refused.json()["detail"], where
            elif kind == "proposals":
                listed = (await client.get(path, headers=headers)).json()["proposals"]
                assert {p["district_code"] for p in listed} <= {"3514"}, where
                asked = await client.get(path, params={"district": "3513"}, headers=headers)
                assert asked.status_code == 403, where
            elif kind == "proposal":
                theirs_id = await _proposal_3513(client, districts)
                answers = [
                    await client.request(
                        method,
                        path.format(proposal_id=pid),
                        headers=headers,
                        **({"json": {}} if method == "POST" else {}),
                    )
                    for pid in (theirs_id, PROPOSAL)
                ]
                _same_answer(*answers, (theirs_id, PROPOSAL))
                assert answers[0].status_code == 404, where
            elif kind == "simulation":
                theirs_id = await _simulation_3513(client, districts)
                answers = [
                    await client.get(path.format(simulation_id=sid), headers=headers)
                    for sid in (theirs_id, NO_SUCH_SIMULATION)
                ]
                _same_answer(*answers, (theirs_id, NO_SUCH_SIMULATION))
                assert answers[0].status_code == 404, where
            elif kind == "replay":
                answers = [
                    await client.post(path, json={"case_id": case_id}, headers=headers)
                    for case_id in (theirs, NO_SUCH_CASE["3513"])
                ]  # each replay has its own request id and subjects: the rest must match
                assert [a.status_code for a in answers] == [202, 202], where
                assert [a.json()["count"] for a in answers] == [0, 0], where
            elif kind == "alerts":
                listed = (await client.get(path, params={"open": "false"}, headers=headers)).json()
                assert {a["case_id"] for a in listed["alerts"]} == {ours}, where
            elif kind == "alert":
                elsewhere = await client.post(
                    path.format(alert_id=districts.alerts["3513"]), headers=headers
                )
                missing = await client.post(
                    path.format(alert_id=f"{NO_SUCH_CASE['3513']}-01-oncall"), headers=headers
                )
                _same_answer(
                    elsewhere,
                    missing,
                    (districts.alerts["3513"], f"{NO_SUCH_CASE['3513']}-01-oncall"),
                )
                assert elsewhere.status_code == 404, where
                everywhere = bearer(districts.province[Role.COORDINATOR])
                listed = (await client.get("/v1/oncall/alerts", headers=everywhere)).json()
                assert {a["case_id"] for a in listed["alerts"]} == {ours, theirs}, where
            elif kind == "unrouted":
                page = await client.get(path, headers=headers)
                assert page.status_code == 200, where
                assert all(c["case_id"].startswith("3514-") for c in page.json()["cases"]), where
            elif kind == "ledger":
                answer = await client.get(path, headers=headers)
                assert answer.status_code in (200, 404), where
                assert theirs not in answer.text, where
            else:
                assert kind == "partner", where
                assert not roles, f"{where}: a partner-only route lets {roles} in"
