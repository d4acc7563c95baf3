"""Districts as tenants at intake, in-process over real NATS and PostgreSQL: a token bound to
Pasuruan (3514) reads, audits and erases Pasuruan's cases only; a Probolinggo (3513) case
answers it exactly as a case that does not exist, and erasing one writes nothing. Province
and two-district tokens reach both."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from intake import store
from intake.auth import Role
from intake.bootstrap import create_app
from intake.settings import IntakeSettings
from intake.vault import new_master_key_spec
from rujuk_contracts.events import CaseErased
from tests.conftest import provisioned_database, remove_streams
from tests.integration.sop_support import announce, shipped_sop_events, until_intake_knows
from tests.integration.test_intake_api import events_of, report

pytestmark = pytest.mark.integration

PASURUAN, PROBOLINGGO = "3514", "3513"
NO_SUCH_CASE = "3513-0000000000"  # the same district as the case out of reach, never filed
ERASURE = {"reason": "survivor_request"}
# name -> (role, districts); None is province level
TOKENS: dict[str, tuple[Role, list[str] | None]] = {
    "filer": (Role.OPERATOR, None),
    "operator-3514": (Role.OPERATOR, [PASURUAN]),
    "coordinator-3514": (Role.COORDINATOR, [PASURUAN]),
    "auditor-3514": (Role.AUDITOR, [PASURUAN]),
    "operator-both": (Role.OPERATOR, [PASURUAN, PROBOLINGGO]),
    "coordinator-both": (Role.COORDINATOR, [PASURUAN, PROBOLINGGO]),
    "auditor-province": (Role.AUDITOR, None),
    "coordinator-province": (Role.COORDINATOR, None),
}


@dataclass
class Intake:
    client: httpx.AsyncClient
    database_url: str
    nats_url: str
    secrets: dict[str, str]
    token_ids: dict[str, str]

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}"}

    async def file(self, district: str) -> str:
        body = report(
            district_code=district, kecamatan="Bangil" if district == PASURUAN else "Maron"
        )
        response = await self.client.post("/v1/reports", json=body, headers=self.as_("filer"))
        assert response.status_code == 202, response.text
        case_id: str = response.json()["case_id"]
        assert case_id.startswith(f"{district}-")
        return case_id

    async def vault_row(self, case_id: str) -> asyncpg.Record:
        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": "intake"})
        try:
            row = await conn.fetchrow(
                "SELECT v.wrapped_key, v.erased_at AS vault_erased_at, c.erased_at, "
                "c.request_hash FROM vault v JOIN cases c USING (case_id) WHERE case_id = $1",
                case_id,
            )
        finally:
            await conn.close()
        assert row is not None
        return row


@pytest.fixture(scope="module")
async def intake(nats_url: str, server_database_url: str) -> AsyncIterator[Intake]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        settings = IntakeSettings(
            nats_url=nats_url,
            database_url=database.role_url("intake"),
            master_keys=new_master_key_spec("k1"),
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            conn = await asyncpg.connect(
                database.role_url("intake"), server_settings={"search_path": "intake"}
            )
            secrets, ids = {}, {}
            try:
                for name, (role, districts) in TOKENS.items():
                    ids[name], secrets[name] = await store.create_token(
                        conn, role, districts=districts, label=f"test {name}"
                    )
            finally:
                await conn.close()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                await announce(nats_url, *shipped_sop_events())  # as routing does at start
                await until_intake_knows(client, {"3513": 1, "3514": 1})
                yield Intake(client, database.admin_url, nats_url, secrets, ids)


Call = Callable[[str], Awaitable[httpx.Response]]


async def assert_reads_as_no_case(call: Call, case_id: str) -> None:
    """The answer for ``case_id`` is the one for a case never filed: status, type and body
    (but for the id it names)."""
    hidden, missing = await call(case_id), await call(NO_SUCH_CASE)
    assert hidden.status_code == missing.status_code == 404, hidden.text
    assert hidden.headers["content-type"] == missing.headers["content-type"]
    assert hidden.json() == {"detail": f"kasus tidak ada / no case {case_id}"}
    assert hidden.text.replace(case_id, "ID") == missing.text.replace(NO_SUCH_CASE, "ID")


def read_case(intake: Intake, name: str) -> Call:
    return lambda case_id: intake.client.get(f"/v1/cases/{case_id}", headers=intake.as_(name))


def read_disclosures(intake: Intake, name: str) -> Call:
    return lambda case_id: intake.client.get(
        f"/v1/cases/{case_id}/disclosures", headers=intake.as_(name)
    )


def erase(intake: Intake, name: str) -> Call:
    return lambda case_id: intake.client.post(
        f"/v1/cases/{case_id}/erase", json=ERASURE, headers=intake.as_(name)
    )


async def test_a_pasuruan_token_reads_a_probolinggo_case_as_one_that_does_not_exist(
    intake: Intake,
) -> None:
    pasuruan, probolinggo = await intake.file(PASURUAN), await intake.file(PROBOLINGGO)
    for name in ("operator-3514", "coordinator-3514"):
        own = await read_case(intake, name)(pasuruan)
        assert own.status_code == 200, name
        assert own.json()["district_code"] == PASURUAN
        await assert_reads_as_no_case(read_case(intake, name), probolinggo)
    for name in ("auditor-3514", "coordinator-3514"):
        assert (await read_disclosures(intake, name)(pasuruan)).status_code == 200, name
        await assert_reads_as_no_case(read_disclosures(intake, name), probolinggo)


async def test_province_and_two_district_tokens_read_both_districts(intake: Intake) -> None:
    cases = [await intake.file(PASURUAN), await intake.file(PROBOLINGGO)]
    for name in ("operator-both", "coordinator-both", "coordinator-province"):
        for case_id in cases:
            response = await read_case(intake, name)(case_id)
            assert response.status_code == 200, (name, response.text)
            assert response.json()["district_code"] == case_id[:4]
    for name in ("coordinator-both", "auditor-province"):
        for case_id in cases:
            assert (await read_disclosures(intake, name)(case_id)).status_code == 200, name


async def test_erasing_a_case_elsewhere_answers_no_case_and_writes_nothing(
    intake: Intake,
) -> None:
    probolinggo = await intake.file(PROBOLINGGO)
    before = await intake.vault_row(probolinggo)
    await assert_reads_as_no_case(erase(intake, "coordinator-3514"), probolinggo)
    after = await intake.vault_row(probolinggo)
    assert dict(after) == dict(before)
    assert after["wrapped_key"] is not None
    assert after["erased_at"] is None

    # The case was untouched: a coordinator of Probolinggo erases it now, for the first time,
    # and the one case.erased on the bus is that coordinator's.
    erased = await erase(intake, "coordinator-both")(probolinggo)
    assert erased.status_code == 200, erased.text
    assert erased.json()["already_erased"] is False
    events = await events_of(intake.nats_url, CaseErased.subject(), probolinggo, 1)
    assert [p.erased_by for _, p in events] == [
        f"coordinator:{intake.token_ids['coordinator-both']}"
    ]


async def test_a_pasuruan_coordinator_erases_a_pasuruan_case(intake: Intake) -> None:
    pasuruan = await intake.file(PASURUAN)
    erased = await erase(intake, "coordinator-3514")(pasuruan)
    assert erased.status_code == 200, erased.text
    assert (await intake.vault_row(pasuruan))["wrapped_key"] is None
    status: dict[str, Any] = (await read_case(intake, "operator-3514")(pasuruan)).json()
    assert status["erased_at"] is not None
