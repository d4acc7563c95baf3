"""A closed case's vault record expires when its district's SOP says so, in-process over real
NATS and PostgreSQL with a compressed clock (one retention day lasts 0.2 s): intake
crypto-shreds it as an erasure by hand does, and the ledger (audit, running beside it) records
`case.erased` with reason `retention_expired` and the SOP that ended the record. An open case,
and a case closed in a district whose SOP states no retention, keep theirs."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import nats
import pytest

from audit.bootstrap import create_app as create_audit
from audit.cli import case_history
from audit.settings import AuditSettings
from intake import store
from intake.auth import Role
from intake.bootstrap import create_app as create_intake
from intake.settings import IntakeSettings
from intake.vault import new_master_key_spec
from routing.events import case_closed
from routing.settings import SHIPPED_SOPS
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import CaseClosed, CaseErased, CloseReason
from rujuk_runtime.bus import event_headers
from tests.conftest import provisioned_database, remove_streams
from tests.integration.sop_support import (
    announce,
    published_event,
    shipped_sop_events,
    until_intake_knows,
)
from tests.integration.test_audit_consumer import eventually
from tests.integration.test_intake_api import report

pytestmark = pytest.mark.integration

DAY_SECONDS = 0.2
RETENTION_DAYS = 2


def pasuruan_sop_with_retention() -> str:
    """Pasuruan's shipped SOP (sample data) as version 7, keeping a closed case two days."""
    text = (SHIPPED_SOPS / "3514.yaml").read_text()
    for old, new in (
        ("version: 1", "version: 7"),
        ("vault_days_after_close: 1825", f"vault_days_after_close: {RETENTION_DAYS}"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    return text


@dataclass
class Running:
    intake: httpx.AsyncClient
    admin_url: str
    nats_url: str
    operator: dict[str, str]

    async def file(self, district: str) -> str:
        body = report(district_code=district, kecamatan="Bangil" if district == "3514" else "Maron")
        response = await self.intake.post("/v1/reports", json=body, headers=self.operator)
        assert response.status_code == 202, response.text
        case_id: str = response.json()["case_id"]
        return case_id

    async def close(self, case_id: str) -> None:
        """As routing closes a case: its `case.closed` on the bus."""
        event = case_closed(
            case_id, "coordinator:tok-1", CloseReason.SERVICES_COMPLETED, None, datetime.now(UTC),
            None,
        )  # fmt: skip
        await announce_event(self.nats_url, event)

    async def vault(self, case_id: str) -> asyncpg.Record:
        conn = await asyncpg.connect(self.admin_url, server_settings={"search_path": "intake"})
        try:
            row = await conn.fetchrow(
                "SELECT v.wrapped_key, c.erased_at, c.status, c.closed_at "
                "FROM vault v JOIN cases c USING (case_id) WHERE case_id = $1",
                case_id,
            )
        finally:
            await conn.close()
        assert row is not None
        return row


async def announce_event(nats_url: str, event: CloudEvent) -> None:
    connection = await nats.connect(nats_url)
    try:
        await connection.jetstream().publish(
            CaseClosed.subject(), event.to_bytes(), headers=event_headers(event.id, None)
        )
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def running(nats_url: str, server_database_url: str) -> AsyncIterator[Running]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        intake = create_intake(
            IntakeSettings(
                nats_url=nats_url,
                database_url=database.role_url("intake"),
                master_keys=new_master_key_spec("k1"),
                day_seconds=DAY_SECONDS,
                retention_check_seconds=0.05,
            )
        )
        audit = create_audit(
            AuditSettings(nats_url=nats_url, database_url=database.role_url("audit"))
        )
        async with intake.router.lifespan_context(intake), audit.router.lifespan_context(audit):
            conn = await asyncpg.connect(
                database.role_url("intake"), server_settings={"search_path": "intake"}
            )
            try:
                _, operator = await store.create_token(conn, Role.OPERATOR, label="retention test")
            finally:
                await conn.close()
            transport = httpx.ASGITransport(app=intake)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                probolinggo = [e for e in shipped_sop_events() if "3513" in e.subject]
                await announce(
                    nats_url, *probolinggo, published_event(pasuruan_sop_with_retention())
                )
                await until_intake_knows(client, {"3513": 1, "3514": 7})
                yield Running(
                    client, database.admin_url, nats_url, {"Authorization": f"Bearer {operator}"}
                )


async def test_a_closed_case_is_shredded_once_its_sops_retention_runs_out(
    running: Running,
) -> None:
    still_open = await running.file("3514")
    closed_where_no_retention = await running.file("3513")
    expiring = await running.file("3514")
    # Closed first: any sweep that erases `expiring` had it due as well, if it were.
    await running.close(closed_where_no_retention)
    await running.close(expiring)

    async def erased() -> bool:
        return (await running.vault(expiring))["wrapped_key"] is None

    await eventually(erased, seconds=15)
    row = await running.vault(expiring)
    assert row["status"] == "closed"
    assert row["closed_at"] is not None
    # Not before its time: the retention counts from the close.
    assert (row["erased_at"] - row["closed_at"]).total_seconds() >= RETENTION_DAYS * DAY_SECONDS

    for kept in (still_open, closed_where_no_retention):
        untouched = await running.vault(kept)
        assert untouched["wrapped_key"] is not None, kept
        assert untouched["erased_at"] is None, kept
    assert (await running.vault(closed_where_no_retention))["status"] == "closed"

    status = await running.intake.get(f"/v1/cases/{expiring}", headers=running.operator)
    assert status.json()["erased_at"] is not None

    async def in_the_ledger() -> bool:
        entries = await case_history(running.admin_url, expiring)
        return any(entry.event_type == CaseErased.event_type() for entry in entries)

    await eventually(in_the_ledger, seconds=15)
    entries = await case_history(running.admin_url, expiring)
    erasures = [json.loads(e.event) for e in entries if e.event_type == CaseErased.event_type()]
    assert len(erasures) == 1
    assert erasures[0]["data"]["reason"] == "retention_expired"
    assert erasures[0]["data"]["erased_by"] == "retention:sop-3514:v7"
