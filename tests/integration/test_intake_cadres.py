"""A cadre token at intake, in-process over real NATS and PostgreSQL (issue 25): it files
reports within its kecamatan or villages, recorded as outreach in its village, and reads the
status of the reports it filed and nothing else: another district, kecamatan or village is
refused naming the field; another cadre's case, or an operator's, reads as no case; case
details, notes, the disclosure log and erasure are refused by role."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from intake import store
from intake.auth import Role
from intake.bootstrap import create_app
from intake.settings import IntakeSettings
from intake.vault import Vault, new_master_key_spec
from tests.conftest import provisioned_database, remove_streams
from tests.integration.sop_support import announce, shipped_sop_events, until_intake_knows
from tests.integration.test_intake_api import report

pytestmark = pytest.mark.integration

DESA = "Desa Contoh Kader"  # invented
# name -> (role, districts, areas)
TOKENS: dict[str, tuple[Role, list[str] | None, list[str]]] = {
    "cadre": (Role.CADRE, ["3513"], [f"Kraksaan/{DESA}"]),
    "other cadre": (Role.CADRE, ["3513"], ["Kraksaan", "Maron"]),
    "operator": (Role.OPERATOR, None, []),
}


@dataclass
class Intake:
    client: httpx.AsyncClient
    database_url: str
    vault: Vault
    secrets: dict[str, str]
    token_ids: dict[str, str]

    def as_(self, name: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}", **headers}

    async def file(self, name: str, key: str | None = None, **overrides: Any) -> httpx.Response:
        body = report(**{"district_code": "3513", "kecamatan": None, "village": None, **overrides})
        headers = self.as_(name, **({"Idempotency-Key": key} if key else {}))
        return await self.client.post("/v1/reports", json=body, headers=headers)

    async def case_row(self, case_id: str) -> asyncpg.Record:
        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": "intake"})
        try:
            entry = await store.vault_entry(conn, case_id)
            row = await conn.fetchrow(
                "SELECT channel, filed_by, triage->>'kecamatan' AS kecamatan FROM cases "
                "WHERE case_id = $1",
                case_id,
            )
        finally:
            await conn.close()
        assert entry is not None
        assert entry.sealed is not None
        assert row is not None
        return {**dict(row), "vault": self.vault.open(case_id, entry.sealed)}


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
                for name, (role, districts, areas) in TOKENS.items():
                    ids[name], secrets[name] = await store.create_token(
                        conn, role, districts=districts, areas=areas, label=f"test {name}"
                    )
            finally:
                await conn.close()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                await announce(nats_url, *shipped_sop_events())  # as routing does at start
                await until_intake_knows(client, {"3513": 1, "3514": 1})
                yield Intake(client, database.admin_url, app.state.vault, secrets, ids)


async def test_a_cadres_report_is_outreach_in_its_own_village(intake: Intake) -> None:
    filed = await intake.file("cadre", channel="hotline")
    assert filed.status_code == 202, filed.text
    case_id = filed.json()["case_id"]
    row = await intake.case_row(case_id)
    assert row["channel"] == "outreach"
    assert row["kecamatan"] == "Kraksaan"
    assert row["vault"]["village"] == DESA
    assert row["filed_by"] == intake.token_ids["cadre"]
    whoami = await intake.client.get("/v1/whoami", headers=intake.as_("cadre"))
    assert whoami.json()["role"] == "cadre"
    assert whoami.json()["districts"] == ["3513"]
    assert whoami.json()["areas"] == [f"Kraksaan/{DESA}"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"district_code": "3514", "kecamatan": "Kraksaan"}, "district_code"),
        ({"kecamatan": "Paiton"}, "kecamatan"),
        ({"kecamatan": "Kraksaan", "village": "Desa Lain Contoh"}, "village"),
    ],
)
async def test_a_cadre_is_refused_outside_its_district_kecamatan_or_village(
    intake: Intake, overrides: dict[str, str], field: str
) -> None:
    refused = await intake.file("cadre", **overrides)
    assert refused.status_code == 422, refused.text
    assert field in refused.text


async def test_a_cadre_reads_the_status_of_its_own_reports_and_of_no_other(
    intake: Intake,
) -> None:
    mine = (await intake.file("cadre")).json()["case_id"]
    theirs = (await intake.file("other cadre", kecamatan="Maron")).json()["case_id"]
    operators = (await intake.file("operator", kecamatan="Maron")).json()["case_id"]
    read = await intake.client.get(f"/v1/cases/{mine}", headers=intake.as_("cadre"))
    assert read.status_code == 200
    assert read.json()["channel"] == "outreach"
    nothing = await intake.client.get("/v1/cases/3513-0000000000", headers=intake.as_("cadre"))
    for case_id in (theirs, operators):
        hidden = await intake.client.get(f"/v1/cases/{case_id}", headers=intake.as_("cadre"))
        assert hidden.status_code == nothing.status_code == 404
        assert hidden.text.replace(case_id, "ID") == nothing.text.replace("3513-0000000000", "ID")
    # The operator of the province still reads the cadre's case.
    seen = await intake.client.get(f"/v1/cases/{mine}", headers=intake.as_("operator"))
    assert seen.status_code == 200


async def test_a_cadre_cannot_read_a_reports_details_back(intake: Intake) -> None:
    mine = (await intake.file("cadre")).json()["case_id"]
    cadre = intake.as_("cadre")
    for method, path in (
        ("GET", f"/v1/cases/{mine}/details?purpose=first_contact"),
        ("GET", f"/v1/cases/{mine}/disclosures"),
        ("POST", f"/v1/cases/{mine}/erase"),
    ):
        answer = await intake.client.request(method, path, headers=cadre, json={})
        assert answer.status_code == 403, (path, answer.text)


async def test_a_resend_with_the_same_key_is_one_case_and_another_cadre_cannot_claim_it(
    intake: Intake,
) -> None:
    first = await intake.file("cadre", key="kader-kunci-contoh-1")
    again = await intake.file("cadre", key="kader-kunci-contoh-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["case_id"] == again.json()["case_id"]
    claimed = await intake.file(
        "other cadre", key="kader-kunci-contoh-1", kecamatan="Kraksaan", village=DESA
    )
    assert claimed.status_code == 409
