"""No report is dropped for want of an SOP (issue 18): intake and routing in-process on real
NATS and PostgreSQL. Routing announces the SOPs in force and intake learns them; a district
published later comes in force at intake; a case routing cannot route is kept, listed for the
coordinator of its district, counted in rujuk_cases_unrouted, and leaves the list when it is
routed by hand or closed; a partner token needs an agency an SOP in force names, or one an open
proposal asks to sign it off (which it then can, over routing's API)."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
import pytest
import yaml
from fastapi import FastAPI
from typer.testing import CliRunner

from intake import handlers, store
from intake.bootstrap import create_app as create_intake
from intake.cli import app as token_cli
from intake.cli import connect
from intake.settings import IntakeSettings
from intake.vault import new_master_key_spec
from routing.bootstrap import create_app as create_routing
from routing.deadlines import DeadlineWatcher
from routing.settings import SHIPPED_SOPS, RoutingSettings
from rujuk_contracts import make_event, parse_event
from rujuk_contracts.events import (
    AskedAgency,
    CaseClosed,
    CaseReported,
    EventPayload,
    Role,
    SopProposed,
    SopPublished,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.bus import event_headers
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import bearer, eventually
from tests.integration.sop_support import invented_sop_text, until_intake_knows

pytestmark = pytest.mark.integration

YAML = {"Content-Type": "application/yaml"}


@dataclass
class Services:
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient
    routing_app: FastAPI
    nats_url: str
    intake_database_url: str  # intake's own role, as `rujuk token create` connects
    tokens: dict[str, dict[str, str]]  # name -> Authorization header

    async def publish_sop(self, district: str) -> None:
        published = await self.routing.post(
            # The district's first SOP binds agencies no SOP bound before: published
            # directly, it needs an override (docs/routing.md, "Proposing an SOP").
            "/v1/sops?override=urgent_safety_fix",
            content=invented_sop_text(district),
            headers={**YAML, **self.tokens["coordinator"]},
        )
        assert published.status_code == 201, published.text

    async def unrouted(self, as_: str = "coordinator") -> list[dict[str, Any]]:
        listed = await eventually(
            lambda: self.routing.get("/v1/cases/unrouted", headers=self.tokens[as_]), 200
        )
        cases: list[dict[str, Any]] = listed.json()["cases"]
        return cases

    async def until_unrouted(self, case_id: str) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                found = [c for c in await self.unrouted() if c["case_id"] == case_id]
                if found:
                    return found[0]
                await asyncio.sleep(0.05)

    async def unrouted_gauge(self) -> str:
        watcher: DeadlineWatcher = self.routing_app.state.watcher
        await watcher.report_unrouted_cases()  # what its round does every few seconds
        metrics = (await self.routing.get("/metrics")).text
        return "\n".join(line for line in metrics.splitlines() if "rujuk_cases_unrouted{" in line)


@pytest.fixture(scope="module")
async def services(nats_url: str, server_database_url: str) -> AsyncIterator[Services]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        shared: dict[str, Any] = {"nats_url": nats_url, "token_cache_seconds": 0.5}
        intake_app = create_intake(
            IntakeSettings(
                **shared,
                database_url=database.role_url("intake"),
                master_keys=new_master_key_spec("k1"),
            )
        )
        routing_app = create_routing(
            RoutingSettings(**shared, database_url=database.role_url("routing"))
        )
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for name, app in (("intake", intake_app), ("routing", routing_app)):
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients[name] = await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
                    )
                )
            conn = await connect(database.role_url("intake"))
            try:  # as `rujuk token create` makes them; routing learns them from the bus
                tokens = {
                    name: bearer(
                        (await store.create_token(conn, role, districts=districts, label=name))[1]
                    )
                    for name, role, districts in (
                        ("operator", Role.OPERATOR, None),
                        ("coordinator", Role.COORDINATOR, None),
                        ("coordinator-3514", Role.COORDINATOR, ["3514"]),
                    )
                }
            finally:
                await conn.close()
            yield Services(
                clients["intake"],
                clients["routing"],
                routing_app,
                nats_url,
                database.role_url("intake"),
                tokens,
            )


def report(district: str) -> dict[str, Any]:
    return {
        "channel": "hotline",
        "district_code": district,
        "victim": {"name": "CONTOH Korban Rekaan", "age_years": 30, "sex": "female"},
        "reporter": {"relationship": "self"},
        "incident": {"violence_types": ["psychological"]},
    }


async def report_on_the_bus(nats_url: str, case_id: str) -> None:
    """A case.reported for a district without an SOP, as if intake had accepted it (before it
    refused such reports, or for any other reason): routing must not drop it."""
    reported = CaseReported(
        case_id=case_id,
        channel="hotline",
        reported_at=datetime.now(UTC),
        triage=TriageFacts(
            violence_types=["physical"],
            age_group="adult",
            sex="female",
            district_code=case_id[:4],
        ),
    )
    event = make_event(reported, source="/rujuk/intake")
    connection = await nats.connect(nats_url)
    try:
        await connection.jetstream().publish(
            reported.subject(), event.to_bytes(), headers=event_headers(event.id, None)
        )
    finally:
        await connection.close()


async def routing_health(services: Services) -> dict[str, int]:
    found: dict[str, int] = (await services.routing.get("/healthz")).json()["sops_in_force"]
    return found


async def test_intake_learns_every_sop_routing_has_in_force_at_start(services: Services) -> None:
    at_start = await routing_health(services)
    assert at_start == {"3513": 1, "3514": 1}
    await until_intake_knows(services.intake, at_start)
    accepted = await services.intake.post(
        "/v1/reports", json=report("3513"), headers=services.tokens["operator"]
    )
    assert accepted.status_code == 202, accepted.text


async def test_a_district_whose_sop_is_published_comes_in_force_at_intake(
    services: Services,
) -> None:
    operator = services.tokens["operator"]
    refused = await services.intake.post("/v1/reports", json=report("3596"), headers=operator)
    assert refused.status_code == 422, refused.text
    await eventually(
        lambda: services.routing.get("/v1/sops", headers=services.tokens["coordinator"]), 200
    )
    await services.publish_sop("3596")
    await until_intake_knows(services.intake, {"3596": 1})
    accepted = await services.intake.post("/v1/reports", json=report("3596"), headers=operator)
    assert accepted.status_code == 202, accepted.text
    case_id = accepted.json()["case_id"]

    async def routed() -> bool:
        status = await services.intake.get(f"/v1/cases/{case_id}", headers=operator)
        return bool(status.json()["status"] == "routed")

    await until(routed)


async def test_an_unroutable_case_is_kept_counted_and_leaves_when_routed_by_hand(
    services: Services,
) -> None:
    case_id = "3595-NR0TED0001"
    await report_on_the_bus(services.nats_url, case_id)
    kept = await services.until_unrouted(case_id)
    assert (kept["district_code"], kept["reason"], kept["attempts"]) == ("3595", "no_sop", 1)
    assert "no SOP in force for district 3595" in kept["detail"]
    assert 'rujuk_cases_unrouted{district="3595"} 1.0' in await services.unrouted_gauge()

    # A coordinator of another district neither sees it nor may route it.
    assert case_id not in [c["case_id"] for c in await services.unrouted("coordinator-3514")]
    elsewhere = await services.routing.post(
        f"/v1/cases/{case_id}/route", headers=services.tokens["coordinator-3514"]
    )
    assert elsewhere.status_code == 404, elsewhere.text
    assert elsewhere.json()["detail"] == f"kasus tidak ada / no case {case_id}"

    coordinator = services.tokens["coordinator"]
    still = await services.routing.post(f"/v1/cases/{case_id}/route", headers=coordinator)
    assert still.status_code == 409, still.text
    assert still.json()["reason"] == "no_sop"
    assert "no SOP in force for district 3595" in still.json()["detail"]
    assert (await services.until_unrouted(case_id))["attempts"] == 2

    await services.publish_sop("3595")
    routed = await services.routing.post(f"/v1/cases/{case_id}/route", headers=coordinator)
    assert routed.status_code == 200, routed.text
    body = routed.json()
    assert (body["already_routed"], body["sop_id"], body["sop_version"]) == (
        False,
        "sop-3595-contoh",
        1,
    )
    assert body["referral_ids"]
    referrals = await services.routing.get(
        "/v1/referrals", params={"case_id": case_id}, headers=coordinator
    )
    assert [r["referral_id"] for r in referrals.json()["referrals"]] == body["referral_ids"]
    assert case_id not in [c["case_id"] for c in await services.unrouted()]
    assert 'district="3595"' not in await services.unrouted_gauge()
    again = await services.routing.post(f"/v1/cases/{case_id}/route", headers=coordinator)
    assert again.status_code == 200, again.text
    assert again.json()["already_routed"] is True


async def test_closing_an_unroutable_case_clears_it_and_says_so_on_the_bus(
    services: Services,
) -> None:
    case_id = "3594-NR0TED0002"
    connection = await nats.connect(services.nats_url)
    closed_feed = await connection.jetstream().subscribe(CaseClosed.subject())
    try:
        await report_on_the_bus(services.nats_url, case_id)
        await services.until_unrouted(case_id)
        coordinator = services.tokens["coordinator"]
        url = f"/v1/cases/{case_id}/close"
        elsewhere = await services.routing.post(url, headers=services.tokens["coordinator-3514"])
        assert elsewhere.status_code == 404, elsewhere.text  # as for no case; nothing closed
        assert case_id in [c["case_id"] for c in await services.unrouted()]
        closed = await services.routing.post(url, json={"reason": "duplicate_report"},
                                             headers=coordinator)  # fmt: skip
        assert closed.status_code == 200, closed.text
        assert closed.json() == {"case_id": case_id, "closed": True, "already_closed": False}
        assert case_id not in [c["case_id"] for c in await services.unrouted()]
        assert 'district="3594"' not in await services.unrouted_gauge()
        twice = await services.routing.post(url, headers=coordinator)
        assert twice.json()["already_closed"] is True
        refused = await services.routing.post(f"/v1/cases/{case_id}/route", headers=coordinator)
        assert refused.status_code == 409, refused.text
        async with asyncio.timeout(20):
            while True:
                _, payload = parse_event((await closed_feed.next_msg(timeout=20)).data)
                if isinstance(payload, CaseClosed) and payload.case_id == case_id:
                    break
    finally:
        await connection.close()


async def test_a_partner_token_is_made_only_for_an_agency_an_sop_in_force_names(
    services: Services,
) -> None:
    await until_intake_knows(services.intake, {"3513": 1, "3514": 1})
    runner = CliRunner()

    def create(agency: str) -> Any:
        return runner.invoke(
            token_cli,
            ["create", "--role", "partner", "--agency", agency,
             "--database-url", services.intake_database_url],
        )  # fmt: skip

    refused = await asyncio.to_thread(create, "pkm-khayalan")
    assert refused.exit_code == 2
    assert "agency pkm-khayalan is not in the directory of any SOP in force" in refused.output
    assert "3513, 3514" in refused.output
    made = await asyncio.to_thread(create, "rsud-bangil")
    assert made.exit_code == 0, made.output
    assert "token_id:" in made.output


def pasuruan_with_a_newcomer() -> str:
    """Pasuruan's shipped SOP, version 2, whose directory adds the invented ``lk3-contoh`` and
    escalates one rule's referral to it: the proposal asks it to sign off (joins_directory)."""
    document = yaml.safe_load((SHIPPED_SOPS / "3514.yaml").read_text())
    document["version"] = 2
    document["directory"].append(
        {
            "id": "lk3-contoh",
            "name": "LK3 (invented)",
            "services": ["psychosocial"],
            "kecamatan": "all",
            "hours": "24/7",
            "channels": ["nats"],
        }
    )
    rule = next(r for r in document["rules"] if r["id"] == "suicidal-thoughts")
    rule["refer"][0]["escalate_to"] = ["lk3-contoh"]
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


async def test_an_agency_a_proposal_asks_to_join_gets_a_token_and_signs_the_proposal_off(
    services: Services,
) -> None:
    await until_intake_knows(services.intake, {"3514": 1})
    runner = CliRunner()

    def create() -> Any:
        return runner.invoke(
            token_cli,
            ["create", "--role", "partner", "--agency", "lk3-contoh", "--district", "3514",
             "--database-url", services.intake_database_url],
        )  # fmt: skip

    before = await asyncio.to_thread(create)
    assert before.exit_code == 2, before.output
    assert "lembaga lk3-contoh tidak ada di direktori SOP yang berlaku" in before.output
    assert "nor asked to sign off an open SOP proposal (open proposals: districts -)" in (
        before.output
    )
    coordinator = services.tokens["coordinator"]
    proposed = await eventually(  # until routing knows the coordinator's token
        lambda: services.routing.post(
            "/v1/sop-proposals",
            content=pasuruan_with_a_newcomer(),
            headers={**YAML, **coordinator},
        ),
        201,
    )
    proposal_id = proposed.json()["proposal_id"]
    asked = {a["agency_id"]: a["duty_changes"] for a in proposed.json()["asked"]}
    assert "joins_directory" in asked["lk3-contoh"]

    async with asyncio.timeout(20):  # until intake has projected the sop.proposed
        while (made := await asyncio.to_thread(create)).exit_code != 0:
            assert "lk3-contoh tidak ada di direktori" in made.output, made.output
            await asyncio.sleep(0.1)
    partner = bearer(made.stdout.strip().splitlines()[-1])
    listed = await eventually(
        lambda: services.routing.get("/v1/sop-proposals", headers=partner), 200
    )
    assert [p["proposal_id"] for p in listed.json()["proposals"]] == [proposal_id]
    answered = await services.routing.post(
        f"/v1/sop-proposals/{proposal_id}/answers", json={"decision": "agree"}, headers=partner
    )
    assert answered.status_code == 200, answered.text
    [mine] = [a for a in answered.json()["asked"] if a["agency_id"] == "lk3-contoh"]
    assert mine["answer"]["decision"] == "agree"

    withdrawn = await services.routing.post(
        f"/v1/sop-proposals/{proposal_id}/withdraw", headers=coordinator
    )
    assert withdrawn.status_code == 200, withdrawn.text

    async def asked_at_intake() -> dict[str, list[str]]:
        conn = await connect(services.intake_database_url)
        try:
            return await store.agencies_asked(conn)
        finally:
            await conn.close()

    await until(lambda: _without(asked_at_intake(), "3514"))
    after = await asyncio.to_thread(create)
    assert after.exit_code == 2, after.output
    assert "agency lk3-contoh is not in the directory of any SOP in force" in after.output


async def _without(asked: Awaitable[dict[str, list[str]]], district: str) -> bool:
    return district not in await asked


async def test_a_proposal_asks_nobody_once_published_even_when_intake_sees_that_first(
    services: Services,
) -> None:
    """Intake's projection of open proposals, on its own database: a publication naming the
    proposal closes it, whichever of the two events is projected first (a replay)."""

    def proposed(proposal_id: str) -> SopProposed:
        return SopProposed(
            proposal_id=proposal_id,
            sop_id="sop-3596-contoh",
            district_code="3596",
            sop_version=2,
            sha256="0" * 64,
            base_version=1,
            proposed_by="coordinator:tok-contoh",
            asked=[AskedAgency(agency_id="lk3-contoh", duty_changes=["joins_directory"])],
        )

    def published(proposal_id: str) -> SopPublished:
        return SopPublished(
            sop_id="sop-3596-contoh",
            district_code="3596",
            sop_version=2,
            sha256="0" * 64,
            published_by="coordinator:tok-contoh",
            proposal_id=proposal_id,
        )

    async def project(*payloads: EventPayload) -> dict[str, list[str]]:
        conn = await connect(services.intake_database_url)
        try:
            for payload in payloads:
                event = make_event(payload, source="/rujuk/routing")
                await handlers.project_sop_proposal(conn, event, payload)
            return await store.agencies_asked(conn)
        finally:
            await conn.close()

    first, second = f"prop-{uuid.uuid4().hex}", f"prop-{uuid.uuid4().hex}"
    assert (await project(proposed(first))).get("3596") == ["lk3-contoh"]
    assert "3596" not in await project(published(first))
    assert "3596" not in await project(published(second), proposed(second))


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)
