"""Districts as tenants in the console, on the real stack over plain HTTP (no browser needed):
a console signed in with a 3514 operator's, coordinator's or auditor's token shows a 3513 case
exactly as it shows a case that does not exist, and its listings and figures hold no 3513 row;
the header names the token's districts, the report form offers only those, and a coordinator
of several districts (or the province) narrows the figures to one.

The cases are filed with the stack's province operator token; the district tokens are made
with intake's store, as `rujuk token create --district` makes them."""

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from intake import store
from intake.auth import Role
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack

pytestmark = pytest.mark.integration

IN_3514 = SAMPLE_REPORTS[1]  # physical and psychological violence
IN_3513 = SAMPLE_REPORTS[3]  # neglect: no 3514 case filed on this stack has it
NEGLECT = "Penelantaran"  # how the coordinator's charts and tables name it
NO_SUCH_CASE = "3513-0000000000"  # well formed, never filed
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class World:
    """Two cases, one per district, and the tokens that look at them."""

    case_3514: str
    case_3513: str
    agencies_only_3513: frozenset[str]  # partners of the 3513 case and not of the 3514 one
    agencies_only_3514: frozenset[str]
    tokens: dict[str, str]  # who -> secret


async def until(what: str, check: Callable[[], Any]) -> Any:
    """``check()``'s first truthy answer, polled until WAIT_SECONDS have passed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.2)
    pytest.fail(f"never: {what}")


async def new_token(stack: Stack, role: Role, districts: list[str]) -> str:
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "intake"})
    try:
        _, secret = await store.create_token(conn, role, districts=districts, label="scope test")
    finally:
        await conn.close()
    return secret


async def until_known(stack: Stack, secret: str) -> None:
    """Routing and audit learn of a token over the bus: they stop answering 401 (a role that
    may not read the route gets 403, which is fine here)."""
    asked = [
        f"{stack.services['routing'].url}/v1/referrals?limit=1",
        f"{stack.services['audit'].url}/v1/parked",
    ]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as client:

        async def known() -> bool:
            answers = [(await client.get(url)).status_code for url in asked]
            return 401 not in answers

        await until("routing and audit know the token", known)


async def file_and_route(stack: Stack, report: dict[str, Any]) -> tuple[str, set[str]]:
    """The case id of a report filed with the province operator token, once routed and in the
    ledger, and the agencies it was referred to."""
    intake, audit = stack.services["intake"].url, stack.services["audit"].url
    auditor = {"Authorization": f"Bearer {stack.secrets()['auditor_token']}"}
    async with httpx.AsyncClient(headers=stack.operator_headers()) as client:
        filed = await client.post(f"{intake}/v1/reports", json=report)
        assert filed.status_code == 202, filed.text
        case_id = str(filed.json()["case_id"])

        async def referred() -> set[str]:
            status = (await client.get(f"{intake}/v1/cases/{case_id}")).json()
            return {str(r["agency_id"]) for r in status.get("referrals", [])}

        agencies: set[str] = await until(f"{case_id} referred", referred)

        async def in_ledger() -> bool:
            answer = await client.get(f"{audit}/v1/cases/{case_id}/history", headers=auditor)
            return answer.status_code == 200

        await until(f"{case_id} in the ledger", in_ledger)
    return case_id, agencies


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    (case_3514, to_3514), (case_3513, to_3513) = [
        await file_and_route(stack, report) for report in (IN_3514, IN_3513)
    ]
    keys = stack.secrets()
    tokens = {
        "operator 3514": await new_token(stack, Role.OPERATOR, ["3514"]),
        "coordinator 3514": await new_token(stack, Role.COORDINATOR, ["3514"]),
        "auditor 3514": await new_token(stack, Role.AUDITOR, ["3514"]),
        "coordinator 3513+3514": await new_token(stack, Role.COORDINATOR, ["3513", "3514"]),
        "operator province": keys["operator_token"],
        "coordinator province": keys["coordinator_token"],
        "auditor province": keys["auditor_token"],
    }
    for secret in tokens.values():
        await until_known(stack, secret)
    return World(
        case_3514,
        case_3513,
        frozenset(to_3513 - to_3514),
        frozenset(to_3514 - to_3513),
        tokens,
    )


@contextlib.asynccontextmanager
async def console_as(stack: Stack, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    """A console session signed in with the token; the client keeps its cookie."""
    url = stack.services["console"].url
    async with httpx.AsyncClient(base_url=url, headers={"Origin": url}, timeout=30) as client:
        signed_in = await client.post("/signin", data={"token": secret})
        assert signed_in.status_code == 303, signed_in.text
        yield client


def scope_shown(page: httpx.Response) -> str:
    found = re.search(r'<span class="scope">([^<]*)</span>', page.text)
    assert found, "no scope in the header"
    return found.group(1)


def options(page: httpx.Response, select_id: str) -> list[tuple[str, bool]]:
    select = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', page.text, re.S)
    assert select, f"no select #{select_id}"
    found = re.findall(r'<option value="([^"]*)"( selected)?>', select.group(1))
    return [(value, bool(selected)) for value, selected in found]


CASE_PAGES = ("/cases/{}", "/cases/{}/status")
AUDIT_PAGES = ("/audit/cases/{}", "/audit/cases/{}/bundle")


# --- what the console does itself -----------------------------------------------------------


async def test_the_console_names_each_tokens_districts_and_offers_only_those(
    stack: Stack, world: World
) -> None:
    async with console_as(stack, world.tokens["coordinator 3514"]) as console:
        page = await console.get("/coordinator")
        assert page.status_code == 200
        assert scope_shown(page) == "Kab. Pasuruan (3514)"
        assert 'id="district"' not in page.text  # one district: nothing to choose
        refused = await console.get("/coordinator?district=3513")
        assert refused.status_code == 403
        assert "tidak melayani kabupaten 3513" in refused.text
    async with console_as(stack, world.tokens["coordinator 3513+3514"]) as console:
        page = await console.get("/coordinator")
        assert scope_shown(page) == "Kab. Probolinggo (3513), Kab. Pasuruan (3514)"
        assert options(page, "district") == [("", True), ("3513", False), ("3514", False)]
    async with console_as(stack, world.tokens["coordinator province"]) as console:
        page = await console.get("/coordinator")
        assert scope_shown(page) == "Provinsi (semua kabupaten)"
        offered = [value for value, _ in options(page, "district")]
        assert {"", "3513", "3514"} <= set(offered)  # every district with an SOP in force
    async with console_as(stack, world.tokens["operator 3514"]) as console:
        form = await console.get("/reports/new")
        assert scope_shown(form) == "Kab. Pasuruan (3514)"
        assert options(form, "f-district-code") == [("3514", True)]
    async with console_as(stack, world.tokens["operator province"]) as console:
        form = await console.get("/reports/new")
        offered = [value for value, _ in options(form, "f-district-code")]
        assert offered[0] == ""  # "choose": no district is picked for the operator
        assert {"3513", "3514"} <= set(offered[1:])
    async with console_as(stack, world.tokens["auditor 3514"]) as console:
        assert scope_shown(await console.get("/audit")) == "Kab. Pasuruan (3514)"


# --- what the services decide, shown by the console ------------------------------------------


async def looks_like_no_case(console: httpx.AsyncClient, who: str, path: str, world: World) -> None:
    """The page of the 3513 case is the page of a case never filed: same status, same text."""
    outside = await console.get(path.format(world.case_3513))
    unknown = await console.get(path.format(NO_SUCH_CASE))
    assert unknown.status_code == 404, f"{who}: {path} of no case"
    assert (
        outside.status_code,
        outside.text.replace(world.case_3513, "CASE"),
    ) == (
        unknown.status_code,
        unknown.text.replace(NO_SUCH_CASE, "CASE"),
    ), f"{who}: {path} tells a 3513 case from no case"


async def test_a_case_outside_the_tokens_districts_looks_like_no_case_on_the_case_pages(
    stack: Stack, world: World
) -> None:
    for who in ("operator 3514", "coordinator 3514"):
        async with console_as(stack, world.tokens[who]) as console:
            for path in CASE_PAGES:
                own = await console.get(path.format(world.case_3514))
                assert own.status_code == 200, f"{who}: {path} of its own district's case"
                await looks_like_no_case(console, who, path, world)
    async with console_as(stack, world.tokens["operator province"]) as console:
        for path in CASE_PAGES:  # the 3513 case is there for those who serve its district
            assert (await console.get(path.format(world.case_3513))).status_code == 200


async def test_a_case_outside_the_tokens_districts_looks_like_no_case_on_the_audit_pages(
    stack: Stack, world: World
) -> None:
    # A bundle holds its case's entries and proofs only: a district's own case exports.
    for who in ("auditor 3514", "coordinator 3514"):
        async with console_as(stack, world.tokens[who]) as console:
            for path in AUDIT_PAGES:
                own = await console.get(path.format(world.case_3514))
                assert own.status_code == 200, f"{who}: {path} of its own case"
                await looks_like_no_case(console, who, path, world)
    async with console_as(stack, world.tokens["auditor province"]) as console:
        for path in AUDIT_PAGES:
            assert (await console.get(path.format(world.case_3513))).status_code == 200


async def test_a_3514_coordinators_listings_and_figures_hold_no_3513_row(
    stack: Stack, world: World
) -> None:
    assert world.agencies_only_3513, "the 3513 case went to no agency of its own"
    async with console_as(stack, world.tokens["coordinator province"]) as console:
        page = await console.get("/coordinator")
        assert NEGLECT in page.text  # the 3513 case is counted where it may be
        assert any(agency in page.text for agency in world.agencies_only_3513)
    async with console_as(stack, world.tokens["coordinator 3514"]) as console:
        page = await console.get("/coordinator")
        fragment = await console.get("/coordinator/open")
        csv = await console.get("/coordinator/stats.csv")
        for shown in (page, fragment, csv):
            assert shown.status_code == 200
            assert "3513-" not in shown.text
            assert not [a for a in world.agencies_only_3513 if a in shown.text]
        assert NEGLECT not in page.text
        assert "neglect" not in csv.text
        assert any(agency in page.text for agency in world.agencies_only_3514)


async def test_a_province_coordinator_narrows_figures_and_open_referrals_to_one_district(
    stack: Stack, world: World
) -> None:
    async with console_as(stack, world.tokens["coordinator province"]) as console:
        only_3514 = await console.get("/coordinator?district=3514")
        assert only_3514.status_code == 200
        assert options(only_3514, "district")[1:] == [("3513", False), ("3514", True)]
        assert not [a for a in world.agencies_only_3513 if a in only_3514.text]
        csv_3514 = await console.get("/coordinator/stats.csv?district=3514")
        assert not [a for a in world.agencies_only_3513 if a in csv_3514.text]
        assert "neglect" not in csv_3514.text  # routing's figures, narrowed
        assert NEGLECT not in only_3514.text
        only_3513 = await console.get("/coordinator?district=3513")
        assert NEGLECT in only_3513.text
        assert not [a for a in world.agencies_only_3514 if a in only_3513.text]


async def test_a_3514_operator_filing_for_3513_sees_intakes_refusal_beside_the_district(
    stack: Stack, world: World
) -> None:
    typed = {  # SAMPLE_REPORTS[3] as the form sends it, in 3513
        "channel": "sapa_129",
        "district_code": "3513",
        "kecamatan": "Kraksaan",
        "victim.name": "CONTOH Korban Empat",
        "victim.age_years": "9",
        "victim.sex": "male",
        "reporter.relationship": "teacher",
        "incident.violence_types": ["neglect", "physical"],
        "risk.injury": "on",
    }
    async with console_as(stack, world.tokens["operator 3514"]) as console:
        form = await console.get("/reports/new")
        key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text)
        assert key
        refused = await console.post("/reports", data={**typed, "idempotency_key": key.group(1)})
        assert refused.status_code == 422, refused.headers.get("location", refused.text[:300])
        select = refused.text.index('<select id="f-district-code"')
        assert 'aria-invalid="true"' in refused.text[select : select + 200]
        problem = re.search(r'<span class="problem" id="p-district-code-1">', refused.text)
        assert problem, "intake's refusal is not beside the district choice"
        assert 0 < problem.start() - select < 1000
        assert options(refused, "f-district-code") == [("3514", True)]
