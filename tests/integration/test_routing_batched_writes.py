"""Routing writes a case in one statement and a delivery report in one, against a real
PostgreSQL: every row as decided, the events in order, nothing twice, and a version another
replica publishes applies from its commit."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from routing import store
from routing.app import Routing, routing_events
from routing.decide import Decision, decide
from routing.lifecycle import ReferralEvent, ReferralState, moves_on
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop_folder
from rujuk_contracts import CloudEvent, EventPayload, make_event, parse_event
from rujuk_contracts.events import CaseReported, CaseRouted, ReferralDelivered, ReferralRequested
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection, create_pool

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
CASE_ID = "3514-AB12CD34EF"
SOP_3514 = (SHIPPED_SOPS / "3514.yaml").read_text()
TABLES = ("cases", "referrals", "deadlines", "outbox", "sops")


class Counted:
    """A connection that keeps each statement sent through it (``executemany``: one per row,
    as PostgreSQL counts them)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, query: str, *args: object, **kwargs: Any) -> Any:
        self.statements.append(query)
        return await self._conn.execute(query, *args, **kwargs)

    async def executemany(self, query: str, args: list[Any], **kwargs: Any) -> Any:
        self.statements.extend([query] * len(args))
        return await self._conn.executemany(query, args, **kwargs)

    async def fetch(self, query: str, *args: object, **kwargs: Any) -> Any:
        self.statements.append(query)
        return await self._conn.fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: object, **kwargs: Any) -> Any:
        self.statements.append(query)
        return await self._conn.fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: object, **kwargs: Any) -> Any:
        self.statements.append(query)
        return await self._conn.fetchval(query, *args, **kwargs)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "routing")
    yield pool
    await pool.close()


def replica() -> Routing:
    return Routing(load_sop_folder(SHIPPED_SOPS), clock=lambda: NOW)


def child_case(case_id: str = CASE_ID) -> CaseReported:
    """Sexual and physical violence against a girl: health, police (mandatory reporting),
    shelter and more, several with escalation chains of more than one agency."""
    return CaseReported(
        case_id=case_id,
        channel="hotline",
        reported_at=NOW - timedelta(minutes=5),
        triage=TriageFacts.model_validate(
            {
                "violence_types": ["sexual", "physical"],
                "age_group": "child",
                "sex": "female",
                "district_code": "3514",
                "kecamatan": "Pandaan",
                "hours_since_sexual_assault": 6,
                "injury": True,
                "perpetrator_has_access": True,
            }
        ),
    )


async def route(routing: Routing, conn: Connection, payload: CaseReported) -> list[str]:
    """Handle the report as the consumer would; the statements it took."""
    counted = Counted(conn)
    event = make_event(payload, source="/rujuk/test")
    async with conn.transaction():
        await routing.on_case_reported(cast(Connection, counted), event, payload)
    return counted.statements


async def publish(pool: asyncpg.Pool, text: str) -> None:
    """Another replica publishes an SOP version."""
    async with pool.acquire() as conn, conn.transaction():
        await replica().publish_sop(conn, text, "coordinator")


async def snapshot(conn: Connection) -> dict[str, list[dict[str, object]]]:
    return {
        table: [dict(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]  # noqa: S608
        for table in TABLES
    }


def as_decided(routing: Routing, payload: CaseReported) -> Decision:
    sop = routing.sop_for(payload.triage.district)
    return decide(sop, payload.case_id, payload.triage, NOW, minute=routing.minute)


async def test_every_referral_and_deadline_is_stored_as_decided_and_the_events_go_in_order(
    pool: asyncpg.Pool,
) -> None:
    routing, payload = replica(), child_case()
    decision = as_decided(routing, payload)
    assert len(decision.referrals) >= 4
    assert any(r.consent_override for r in decision.referrals)
    assert any(r.consent_override is None for r in decision.referrals)
    assert any(len(r.escalation_chain) >= 2 for r in decision.referrals)

    async with pool.acquire() as conn:
        await route(routing, conn, payload)
        case = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", CASE_ID)
        referrals = {
            row["referral_id"]: dict(row) for row in await conn.fetch("SELECT * FROM referrals")
        }
        deadlines = {
            row["referral_id"]: dict(row) for row in await conn.fetch("SELECT * FROM deadlines")
        }
        outbox = await conn.fetch("SELECT * FROM outbox ORDER BY seq")

    assert case is not None
    assert {k: case[k] for k in ("district_code", "sop_id", "sop_version", "rules_fired")} == {
        "district_code": "3514",
        "sop_id": decision.sop_id,
        "sop_version": decision.sop_version,
        "rules_fired": list(decision.rules_fired),
    }
    assert (case["reported_at"], case["routed_at"]) == (payload.reported_at, NOW)
    assert case["violence_types"] == ["sexual", "physical"]

    assert list(referrals) == [r.referral_id for r in decision.referrals]
    for decided in decision.referrals:
        stored = referrals[decided.referral_id]
        assert {k: v for k, v in stored.items() if k != "updated_at"} == {
            "referral_id": decided.referral_id,
            "case_id": CASE_ID,
            "agency_id": decided.agency_id,
            "service": decided.service.value,
            "priority": decided.priority.value,
            "state": "requested",
            "acknowledgement_deadline": decided.acknowledgement_deadline,
            "escalation_chain": list(decided.escalation_chain),
            "escalation_step": 0,
            "rule_ids": list(decided.rule_ids),
            "consent_override": decided.consent_override,
            "delivery_attempts": 0,
            "last_delivery_failure": None,
            "created_at": NOW,
            "sop_id": decision.sop_id,
            "sop_version": decision.sop_version,
            "acknowledge_within": decided.acknowledge_within,
            "escalated_from": None,
            "root_referral_id": decided.referral_id,
            "acknowledged_at": None,
            "accepted_at": None,
            "declined_at": None,
            "decline_reason": None,
            "completed_at": None,
            "escalated_at": None,
            "escalation_reason": None,
        }
        assert deadlines[decided.referral_id] == {
            "referral_id": decided.referral_id,
            "due_at": decided.acknowledgement_deadline,
            "fired_at": None,
            "outcome": None,
        }
    assert len(deadlines) == len(decision.referrals)

    expected = routing_events(decision, NOW, None)
    assert [(row["event_id"], row["event_type"]) for row in outbox] == [
        (e.id, e.type) for e in expected
    ]
    assert [row["event_type"] for row in outbox] == [
        CaseRouted.event_type(),
        *[ReferralRequested.event_type()] * len(decision.referrals),
    ]
    staged = [parse_event(bytes(row["body"])) for row in outbox]
    assert [payload for _, payload in staged] == [parse_event(e.to_bytes())[1] for e in expected]
    assert {event.time for event, _ in staged} == {NOW}


@pytest.mark.parametrize("published_between", [False, True])
async def test_the_same_report_twice_changes_nothing_the_second_time(
    pool: asyncpg.Pool, published_between: bool
) -> None:
    routing = replica()
    async with pool.acquire() as conn:
        await route(routing, conn, child_case())
    if published_between:  # the second try finds another version in force, then the case
        await publish(pool, SOP_3514.replace("version: 1", "version: 2"))
    async with pool.acquire() as conn:
        before = await snapshot(conn)
        with pytest.raises(Rejected, match=f"case {CASE_ID} was routed before"):
            await route(routing, conn, child_case())
        assert await snapshot(conn) == before


async def test_a_version_another_replica_publishes_applies_here_from_its_commit(
    pool: asyncpg.Pool,
) -> None:
    here = replica()
    async with pool.acquire() as conn:
        assert len(await route(here, conn, child_case("3514-AA00000001"))) == 3  # looks it up
        assert len(await route(here, conn, child_case("3514-AA00000002"))) == 2  # knows it
    await publish(pool, SOP_3514.replace("version: 1", "version: 2"))
    async with pool.acquire() as conn:
        await route(here, conn, child_case("3514-AA00000003"))
        assert len(await route(here, conn, child_case("3514-AA00000004"))) == 2
        versions = await conn.fetch("SELECT case_id, sop_version FROM cases ORDER BY case_id")
        referral_versions = await conn.fetch(
            "SELECT DISTINCT case_id, sop_version FROM referrals ORDER BY case_id"
        )
    assert [tuple(row) for row in versions] == [
        ("3514-AA00000001", 1),
        ("3514-AA00000002", 1),
        ("3514-AA00000003", 2),
        ("3514-AA00000004", 2),
    ]
    assert [tuple(row) for row in referral_versions] == [tuple(row) for row in versions]


async def test_a_district_without_a_file_is_routed_from_the_commit_of_its_first_version(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (tmp_path / "3513.yaml").write_text((SHIPPED_SOPS / "3513.yaml").read_text())
    here = Routing(load_sop_folder(tmp_path), clock=lambda: NOW)
    async with pool.acquire() as conn:
        with pytest.raises(Rejected, match="no SOP for district 3514"):
            await route(here, conn, child_case("3514-AA00000001"))
    await publish(pool, SOP_3514.replace("version: 1", "version: 2"))
    async with pool.acquire() as conn:
        await route(here, conn, child_case("3514-AA00000002"))
        cases = await conn.fetch("SELECT case_id, sop_version FROM cases")
    assert [tuple(row) for row in cases] == [("3514-AA00000002", 2)]


async def test_a_delivery_report_is_one_statement_that_returns_the_referral_as_it_was(
    pool: asyncpg.Pool,
) -> None:
    routing = replica()
    report = ReferralDelivered(
        case_id=CASE_ID,
        referral_id=f"{CASE_ID}-01",
        agency_id=as_decided(routing, child_case()).referrals[0].agency_id,
        channels=["nats"],
        attempts=3,
    )
    async with pool.acquire() as conn:
        await route(routing, conn, child_case())
        as_it_was = await store.lock_referral(conn, report.referral_id)
        async with conn.transaction():  # what the log's "previous" and an escalation start from
            moved = await store.move_on_delivery_report(
                conn,
                report.referral_id,
                case_id=CASE_ID,
                agency_id=report.agency_id,
                moves=moves_on(ReferralEvent.DELIVERED),
                attempts=3,
            )
        assert moved == (as_it_was, ReferralState.DELIVERED)

        counted = Counted(conn)
        async with conn.transaction():
            await routing.on_referral_delivered(cast(Connection, counted), envelope(report), report)
        assert len(counted.statements) == 1
        row = await conn.fetchrow(
            "SELECT state, delivery_attempts FROM referrals WHERE referral_id = $1",
            report.referral_id,
        )
    assert row is not None
    assert tuple(row) == ("delivered", 3)


def envelope(payload: EventPayload) -> CloudEvent:
    return make_event(payload, source="/rujuk/test")
