"""One identity across services: a token made in intake (as `rujuk token create` makes it)
works at routing, audit and notify once its event is projected, and stops working there when
revoked; every protected route of every service answers 401 without a token and 403 to a
role that may not. Real NATS and PostgreSQL; the four services in-process."""

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
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
from routing.bootstrap import create_app as create_routing
from routing.settings import RoutingSettings
from rujuk_contracts.events import Role
from rujuk_runtime.access import hash_secret
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import bearer, eventually

pytestmark = pytest.mark.integration

TTL = 0.5  # RUJUK_TOKEN_CACHE_SECONDS for this test: revocation shows within it
CASE = "3514-AB12CD34EF"
REFERRAL = f"{CASE}-01"
NOTE = "note-" + "0" * 32
# Who may call each protected route; every other role gets 403. The test fails if a service
# grows a /v1 route that is not listed here (whoami and the SOP list take any caller).
ALLOWED: dict[str, dict[tuple[str, str], set[Role]]] = {
    "intake": {
        ("POST", "/v1/reports"): {Role.OPERATOR},
        ("GET", "/v1/cases/{case_id}"): {Role.OPERATOR, Role.COORDINATOR},
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
    },
    "audit": {
        ("GET", "/v1/cases/{case_id}/history"): {Role.AUDITOR, Role.COORDINATOR},
        ("GET", "/v1/cases/{case_id}/bundle"): {Role.AUDITOR, Role.COORDINATOR},
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
                    tokens[role] = await store.create_token(
                        conn, role, agency_id=agency, label="Ibu Contoh (invented holder)"
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
    assert declared - OPEN_TO_ANY == set(ALLOWED[service]), "a /v1 route is not in ALLOWED"
    client = services.clients[service]
    for (method, path), allowed in ALLOWED[service].items():
        url = path.format(case_id=CASE, referral_id=REFERRAL, note_id=NOTE)
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
