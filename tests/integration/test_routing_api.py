"""Routing's HTTP API with its database: publish an SOP version, see it in force, close a case."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import nats
import pytest

from routing.bootstrap import create_app
from routing.handlers import RoutingHandlers
from routing.settings import SHIPPED_SOPS, RoutingSettings
from rujuk_contracts import make_event, parse_event
from rujuk_contracts.events import CaseClosed, CaseReported, CloseReason, Role
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.service import ServiceRuntime
from tests.integration.access_support import announce_token, bearer, eventually

pytestmark = pytest.mark.integration

SOP_3513 = (SHIPPED_SOPS / "3513.yaml").read_text()
CASE_ID = "3513-AB12CD34EF"
NOTE_ID = "note-" + "7a" * 16  # a close note at intake; routing passes its id on unchecked
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
async def http(clean_bus: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = RoutingSettings(nats_url=clean_bus, database_url=database_url)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://routing"
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        token_id, secret = await announce_token(clean_bus, Role.COORDINATOR)
        client.headers.update(bearer(secret))  # the coordinator's, on every request
        client.token_id = token_id  # type: ignore[attr-defined]
        await eventually(lambda: client.get("/v1/referrals"), 200)  # once it is projected
        yield client


async def test_publishing_an_sop_over_http(http: httpx.AsyncClient) -> None:
    broken = SOP_3513.replace("version: 1", "version: 2").replace(
        "priority: routine", "priority: whenever", 1
    )
    response = await http.post("/v1/sops", content=broken, headers=YAML)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "whenever" in text)
    assert error.startswith(f"SOP 3513 v2, rule village-accompaniment (line {line}): ")
    assert "got 'whenever'" in error

    version_2 = SOP_3513.replace("version: 1", "version: 2")
    response = await http.post("/v1/sops", content=version_2, headers=YAML)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["sop_id"], body["district_code"], body["version"], body["created"]) == (
        "sop-3513",
        "3513",
        2,
        True,
    )
    again = await http.post("/v1/sops", content=version_2, headers=YAML)
    assert (again.status_code, again.json()["created"]) == (200, False)
    stale = await http.post("/v1/sops", content=SOP_3513, headers=YAML)
    assert stale.status_code == 409
    assert stale.json()["detail"] == "SOP 3513 v2 is in force: publish a version above 2, not 1"

    in_force = (await http.get("/v1/sops")).json()["in_force"]
    assert (in_force["3513"]["version"], in_force["3513"]["origin"]) == (2, "published")
    assert (in_force["3514"]["version"], in_force["3514"]["origin"]) == (1, "file")


async def test_publishing_refuses_an_sop_whose_examples_fail(http: httpx.AsyncClient) -> None:
    # Version 2 shortens the post-rape window to 48 hours: a puskesmas' mandate no longer holds.
    text = (
        SOP_3513.replace("version: 1", "version: 2")
        .replace("max_hours_since_sexual_assault: 72", "max_hours_since_sexual_assault: 48")
        .replace("min_hours_since_sexual_assault: 72", "min_hours_since_sexual_assault: 48")
    )
    response = await http.post("/v1/sops", content=text, headers=YAML)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"] == "SOP refused"
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "agency: pkm-dringu," in row)
    assert (
        f"SOP 3513 v2, example post-rape-care-tongas (line {line}): health dirujuk ke "
        "rsud-waluyo-jati, bukan pkm-dringu / health goes to rsud-waluyo-jati, not pkm-dringu "
        "(aturan / rules: sexual-after-72h)"
    ) in body["errors"]
    failing = {error.split(" (line")[0] for error in body["errors"]}
    assert failing == {
        "SOP 3513 v2, example post-rape-care-tongas",
        "SOP 3513 v2, example post-rape-care-exactly-72-hours",
    }
    in_force = (await http.get("/v1/sops")).json()["in_force"]
    assert (in_force["3513"]["version"], in_force["3513"]["origin"]) == (1, "file")


async def test_closing_a_case_over_http(http: httpx.AsyncClient) -> None:
    assert (await http.post(f"/v1/cases/{CASE_ID}/close")).status_code == 404
    runtime: ServiceRuntime = http.app.state.runtime  # type: ignore[attr-defined]
    routing: RoutingHandlers = http.app.state.handlers  # type: ignore[attr-defined]
    case = CaseReported(
        case_id=CASE_ID,
        channel="walk_in",
        reported_at=datetime.now(UTC),
        triage=TriageFacts(
            violence_types=["neglect"], age_group="adult", sex="female", district_code="3513"
        ),
    )
    async with runtime.pool.acquire() as conn, conn.transaction():
        await routing.on_case_reported(conn, make_event(case, source="/rujuk/test"), case)
        await conn.execute("UPDATE referrals SET state = 'completed' WHERE referral_id LIKE '%-01'")
    typed = await http.post(f"/v1/cases/{CASE_ID}/close", json={"reason": "CONTOH Korban pindah"})
    assert typed.status_code == 422  # free text is not a reason: refused before anything
    assert typed.json()["detail"][0]["field"] == "reason"
    response = await http.post(f"/v1/cases/{CASE_ID}/close", json={"reason": "survivor_withdrew"})
    assert response.status_code == 409
    body = response.json()
    open_ids = [r["referral_id"] for r in body["open_referrals"]]
    assert open_ids
    assert f"{CASE_ID}-01" not in open_ids
    assert all(r["state"] == "requested" for r in body["open_referrals"])
    assert body["detail"].startswith(f"case {CASE_ID} has open referrals: {open_ids[0]} (")

    connection = await nats.connect(runtime.settings.nats_url)
    closed_events = await connection.jetstream().subscribe(
        CaseClosed.subject(), ordered_consumer=True
    )
    async with runtime.pool.acquire() as conn:
        await conn.execute("UPDATE referrals SET state = 'cancelled' WHERE state = 'requested'")
        response = await http.post(
            f"/v1/cases/{CASE_ID}/close", json={"reason": "transferred", "note_ref": NOTE_ID}
        )
        assert response.json() == {"case_id": CASE_ID, "closed": True, "already_closed": False}
        row = await conn.fetchrow("SELECT closed_by, close_reason FROM cases")
    closed_by = f"coordinator:{http.token_id}"  # type: ignore[attr-defined]
    assert tuple(row) == (closed_by, "transferred")
    _, closed = parse_event((await closed_events.next_msg(timeout=10)).data)
    await connection.close()
    assert isinstance(closed, CaseClosed)
    assert (closed.reason, closed.note_ref) == (CloseReason.TRANSFERRED, NOTE_ID)
    response = await http.post(f"/v1/cases/{CASE_ID}/close")
    assert response.json()["already_closed"] is True
