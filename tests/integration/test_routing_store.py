"""Routing's handlers against a real PostgreSQL: rows written, events staged, refusals harmless."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from routing import picks, store
from routing.cases import close_case, route_by_hand
from routing.decide import ONE_MINUTE as MINUTE
from routing.events import event_id
from routing.handlers import RoutingHandlers
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop_folder
from routing.sops import SopsInForce
from rujuk_contracts import CloudEvent, EventPayload, make_event, parse_event
from rujuk_contracts.events import (
    CaseReported,
    CaseRouted,
    CaseVillageAgencyAsked,
    CloseReason,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralRequested,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection, create_pool

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
CASE_ID = "3514-AB12CD34EF"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "routing")
    yield pool
    await pool.close()


@pytest.fixture
def routing() -> RoutingHandlers:
    return RoutingHandlers(SopsInForce(load_sop_folder(SHIPPED_SOPS)), clock=lambda: NOW)


def reported(case_id: str = CASE_ID, district: str = "3514", **triage: object) -> CaseReported:
    facts = {
        "violence_types": ["sexual"],
        "age_group": "child",
        "sex": "female",
        "district_code": district,
        "kecamatan": "Pandaan",
        "hours_since_sexual_assault": 6,
        **triage,
    }
    return CaseReported(
        case_id=case_id,
        channel="hotline",
        reported_at=NOW - timedelta(minutes=5),
        triage=TriageFacts.model_validate(facts),
    )


def envelope(payload: EventPayload) -> CloudEvent:
    return make_event(payload, source="/rujuk/test")


async def handle_case(pool: asyncpg.Pool, routing: RoutingHandlers, payload: CaseReported) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await routing.on_case_reported(conn, envelope(payload), payload)


async def test_a_case_stages_all_its_events_in_one_statement(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    """A round trip per event was 5 to 8 per case; their order is checked below."""
    statements: list[str] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda logged: statements.append(logged.query))
        async with conn.transaction():
            await routing.on_case_reported(conn, envelope(reported()), reported())
    assert sum("INSERT INTO outbox" in statement for statement in statements) == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") > 2


async def test_case_reported_stores_the_case_its_referrals_and_stages_the_events(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())

    async with pool.acquire() as conn:
        case = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", CASE_ID)
        referrals = await conn.fetch(
            "SELECT * FROM referrals WHERE case_id = $1 ORDER BY referral_id", CASE_ID
        )
        outbox = await conn.fetch("SELECT * FROM outbox ORDER BY seq")

    assert case is not None
    assert (case["sop_id"], case["sop_version"], case["district_code"]) == ("sop-3514", 1, "3514")
    assert "child-sexual" in case["rules_fired"]
    assert json.loads(case["withheld"]) == []
    assert case["routed_at"] == NOW

    first = referrals[0]
    assert first["referral_id"] == f"{CASE_ID}-01"
    assert (first["service"], first["agency_id"], first["priority"]) == (
        "health",
        "pkm-pandaan",
        "emergency",
    )
    assert first["acknowledgement_deadline"] == NOW + timedelta(minutes=30)
    assert first["escalation_chain"] == ["rsud-bangil", "dp3ap2kb-pasuruan"]
    assert {row["state"] for row in referrals} == {"requested"}
    police = next(row for row in referrals if row["service"] == "police")
    assert police["consent_override"] == "UU 35/2014 Perlindungan Anak, Pasal 72; UU 12/2022 TPKS"

    assert len(outbox) == 1 + len(referrals)
    assert [row["subject"] for row in outbox] == [
        "rujuk.evt.case.routed",
        *["rujuk.evt.referral.requested"] * len(referrals),
    ]
    assert [row["event_id"] for row in outbox] == [
        event_id(f"{CASE_ID}:routed"),
        *[event_id(f"{row['referral_id']}:requested") for row in referrals],
    ]
    routed_event, routed = parse_event(bytes(outbox[0]["body"]))
    assert isinstance(routed, CaseRouted)
    assert routed_event.source == "/rujuk/routing"
    assert [r.referral_id for r in routed.referrals] == [row["referral_id"] for row in referrals]
    _, requested = parse_event(bytes(outbox[1]["body"]))
    assert isinstance(requested, ReferralRequested)
    assert requested.referral_id == f"{CASE_ID}-01"
    assert requested.rule_ids == ["sexual-within-72h"]


async def test_adult_case_without_police_consent_stores_the_withheld_referral(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(
        pool, routing, reported(age_group="adult", consent={"share_with_health": True})
    )
    async with pool.acquire() as conn:
        services = await conn.fetch("SELECT service FROM referrals WHERE case_id = $1", CASE_ID)
        withheld = json.loads(
            await conn.fetchval("SELECT withheld FROM cases WHERE case_id = $1", CASE_ID)
        )
    assert "police" not in {row["service"] for row in services}
    assert {"service": "police", "agency_id": "polres-pasuruan-ppa"}.items() <= withheld[0].items()


async def test_a_case_routed_twice_is_refused_and_changes_nothing(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM outbox")
    with pytest.raises(Rejected, match=f"case {CASE_ID} was routed before"):
        await handle_case(pool, routing, reported(kecamatan="Gempol"))
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == before
        assert (
            await conn.fetchval("SELECT count(*) FROM referrals WHERE agency_id = 'pkm-gempol'")
            == 0
        )


async def test_a_case_of_a_district_without_sop_is_kept_unrouted_with_its_reason(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    case = reported("3599-AB12CD34EF", district="3599")
    await handle_case(pool, routing, case)
    await handle_case(pool, routing, case)  # reported again: one more attempt, one row
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cases") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        kept = await conn.fetchrow("SELECT * FROM unrouted_cases")
    assert (kept["case_id"], kept["district_code"], kept["reason"]) == (
        "3599-AB12CD34EF",
        "3599",
        "no_sop",
    )
    assert "no SOP in force for district 3599" in kept["detail"]
    assert (kept["since"], kept["attempts"], kept["resolved_at"]) == (NOW, 2, None)
    assert CaseReported.model_validate_json(kept["reported"]) == case


async def test_a_case_whose_decision_fails_is_kept_unrouted_not_retried(
    pool: asyncpg.Pool, routing: RoutingHandlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError("a fault in routing")

    monkeypatch.setattr("routing.cases.decide", broken)
    await handle_case(pool, routing, reported())
    async with pool.acquire() as conn:
        kept = await conn.fetchrow("SELECT reason, detail FROM unrouted_cases")
        assert await conn.fetchval("SELECT count(*) FROM cases") == 0
    assert kept["reason"] == "decision_failed"
    assert "KeyError" in kept["detail"]


async def test_a_case_whose_village_question_cannot_be_built_is_kept_unrouted_not_parked(
    pool: asyncpg.Pool, routing: RoutingHandlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building ``case.village_agency_asked`` fails (a ValidationError): a failed decision like
    any other, before anything is written; it raised after the case was stored, so the report
    was retried and parked and never listed as unrouted."""

    def unbuildable(*_: object, **__: object) -> CloudEvent:
        CaseVillageAgencyAsked.model_validate({"case_id": "3513-AB12CD34EF"})
        raise AssertionError("validated")

    monkeypatch.setattr("routing.picks.village_agency_asked", unbuildable)
    adult = {"violence_types": ["physical"], "age_group": "adult", "kecamatan": "Kraksaan"}
    case = reported("3513-AB12CD34EF", "3513", hours_since_sexual_assault=None, **adult)
    await handle_case(pool, routing, case)
    async with pool.acquire() as conn:
        kept = await conn.fetchrow("SELECT case_id, reason, detail FROM unrouted_cases")
        for table in ("cases", "referrals", "village_picks", "outbox"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
    assert (kept["case_id"], kept["reason"]) == ("3513-AB12CD34EF", "decision_failed")
    assert "ValidationError" in kept["detail"]


async def test_routing_by_hand_a_case_routed_meanwhile_routes_nothing_twice(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    case = reported()
    await handle_case(pool, RoutingHandlers(SopsInForce(), clock=lambda: NOW), case)
    await handle_case(pool, routing, case)  # reported again (another event id), now routed
    async with pool.acquire() as conn, conn.transaction():
        unrouted = await store.lock_unrouted(conn, CASE_ID)
        assert unrouted is not None
        result = await route_by_hand(
            conn, routing.sops, unrouted, "coordinator:tok-1", clock=routing.clock, minute=MINUTE
        )
    assert result.already_routed
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT resolution FROM unrouted_cases WHERE case_id = $1", CASE_ID)
            == "routed"
        )
        assert await conn.fetchval("SELECT count(*) FROM cases") == 1


async def test_a_pick_resolved_while_its_case_is_being_closed_makes_no_referral(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    """The close holds the case row; the pick's timer must see the close, not the case as it
    was before it: else a closed case gets a new open referral, sent to the agency."""
    case_id = "3513-AB12CD34EF"
    adult = {"violence_types": ["physical"], "age_group": "adult", "kecamatan": "Kraksaan"}
    await handle_case(
        pool, routing, reported(case_id, "3513", hours_since_sexual_assault=None, **adult)
    )
    async with pool.acquire() as conn:  # every referral made at once is settled
        await conn.execute("UPDATE referrals SET state = 'completed' WHERE case_id = $1", case_id)
        question_id = await conn.fetchval(
            "SELECT question_id FROM village_picks WHERE case_id = $1", case_id
        )
    closing = await pool.acquire()
    transaction = closing.transaction()
    await transaction.start()
    try:
        closed = await close_case(
            closing, case_id, "coordinator:tok-1", CloseReason.SERVICES_COMPLETED,
            clock=routing.clock, districts=None,
        )  # fmt: skip
        assert closed

        async def timer() -> str:
            async with pool.acquire() as conn, conn.transaction():
                pick = await store.lock_pick(conn, question_id)
                assert pick is not None
                return await picks.resolve(conn, pick, None, "timeout", NOW)

        resolving = asyncio.create_task(timer())
        await asyncio.sleep(0.5)  # the timer reads the case while the close is not committed
        await transaction.commit()
    except BaseException:
        await transaction.rollback()
        raise
    finally:
        await pool.release(closing)
    assert await resolving == "case_closed"
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM referrals WHERE case_id = $1 AND picked_by IS NOT NULL", case_id
        ) == 0  # fmt: skip


async def test_a_routed_case_reported_again_when_its_sop_is_gone_is_not_called_unrouted(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    without_sops = RoutingHandlers(SopsInForce(), clock=lambda: NOW)
    with pytest.raises(Rejected, match=f"case {CASE_ID} was routed before"):
        await handle_case(pool, without_sops, reported())
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM unrouted_cases") == 0


async def report(pool: asyncpg.Pool, routing: RoutingHandlers, payload: EventPayload) -> str:
    async with pool.acquire() as conn, conn.transaction():
        if isinstance(payload, ReferralDelivered):
            await routing.on_referrals_delivered(conn, [(envelope(payload), payload)])
        else:
            await routing.on_referral_delivery_failed(conn, envelope(payload), payload)
        state: str = await conn.fetchval(
            "SELECT state FROM referrals WHERE referral_id = $1", f"{CASE_ID}-01"
        )
        return state


def delivered(attempts: int = 1, agency_id: str = "pkm-pandaan") -> ReferralDelivered:
    return ReferralDelivered(
        case_id=CASE_ID,
        referral_id=f"{CASE_ID}-01",
        agency_id=agency_id,
        channels=["nats"],
        attempts=attempts,
    )


def failed(attempts: int = 5) -> ReferralDeliveryFailed:
    return ReferralDeliveryFailed(
        case_id=CASE_ID,
        referral_id=f"{CASE_ID}-01",
        agency_id="pkm-pandaan",
        reason="webhook answered 503",
        attempts=attempts,
    )


async def test_delivery_reports_move_the_referral_state(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    assert await report(pool, routing, delivered(attempts=2)) == "delivered"
    assert await report(pool, routing, delivered(attempts=1)) == "delivered"
    async with pool.acquire() as conn:
        attempts = await conn.fetchval(
            "SELECT delivery_attempts FROM referrals WHERE referral_id = $1", f"{CASE_ID}-01"
        )
    assert attempts == 2


async def test_a_failed_delivery_escalates_and_a_late_delivery_report_changes_nothing(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    assert await report(pool, routing, failed(attempts=5)) == "escalated"
    assert await report(pool, routing, delivered(attempts=6)) == "escalated"
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT delivery_attempts, last_delivery_failure FROM referrals WHERE referral_id = $1",
            f"{CASE_ID}-01",
        )
        successor = await conn.fetchrow(
            "SELECT agency_id, state, escalation_chain FROM referrals WHERE referral_id = $1",
            f"{CASE_ID}-01-e1",
        )
    assert row is not None
    assert (row["delivery_attempts"], row["last_delivery_failure"]) == (6, "webhook answered 503")
    assert successor is not None
    assert dict(successor) == {
        "agency_id": "rsud-bangil",
        "state": "requested",
        "escalation_chain": ["dp3ap2kb-pasuruan"],
    }


async def test_a_delivery_failure_after_delivery_is_refused_with_the_reason(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    await report(pool, routing, delivered())
    with pytest.raises(Rejected, match="is delivered; it cannot become delivery_failed"):
        await report(pool, routing, failed())


async def test_a_delivery_report_naming_another_agency_is_refused(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    with pytest.raises(Rejected, match="was made to pkm-pandaan, not rsud-bangil"):
        await report(pool, routing, delivered(agency_id="rsud-bangil"))


async def test_a_delivery_report_for_an_unknown_referral_is_refused(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    with pytest.raises(Rejected, match=f"unknown referral {CASE_ID}-01"):
        await report(pool, routing, delivered())


def delivered_to(referral: asyncpg.Record, attempts: int = 1) -> ReferralDelivered:
    return ReferralDelivered(
        case_id=CASE_ID,
        referral_id=referral["referral_id"],
        agency_id=referral["agency_id"],
        channels=["webhook"],
        attempts=attempts,
    )


async def referrals_of_the_case(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT referral_id, agency_id FROM referrals WHERE case_id = $1 ORDER BY 1", CASE_ID
    )


async def test_a_run_of_delivery_reports_moves_every_referral_in_two_statements(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    await handle_case(pool, routing, reported())
    async with pool.acquire() as conn:
        referrals = await referrals_of_the_case(conn)
        reports = [delivered_to(r, attempts=n + 1) for n, r in enumerate(referrals)]
        reports.append(delivered_to(referrals[0], attempts=7))  # the same referral again
        statements: list[str] = []
        conn.add_query_logger(lambda logged: statements.append(logged.query))
        async with conn.transaction():
            await routing.on_referrals_delivered(conn, [(envelope(r), r) for r in reports])
        handled = [s for s in statements if "FROM referrals" in s or "UPDATE referrals" in s]
        rows = await conn.fetch(
            "SELECT referral_id, state, delivery_attempts FROM referrals WHERE case_id = $1",
            CASE_ID,
        )
    assert len(referrals) > 2
    assert len(handled) == 2
    assert {row["state"] for row in rows} == {"delivered"}
    attempts = {row["referral_id"]: row["delivery_attempts"] for row in rows}
    assert attempts == {r["referral_id"]: 7 if n == 0 else n + 1 for n, r in enumerate(referrals)}


async def test_a_run_with_one_wrong_report_is_refused_whole_naming_it(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    """The consumer then takes the run report by report and parks only the wrong one."""
    await handle_case(pool, routing, reported())
    async with pool.acquire() as conn:
        referrals = await referrals_of_the_case(conn)
        good = delivered_to(referrals[0])
        wrong = delivered_to(referrals[1]).model_copy(update={"agency_id": "bukan-lembaga"})
        with pytest.raises(Rejected, match=f"{referrals[1]['referral_id']} was made to"):
            async with conn.transaction():
                await routing.on_referrals_delivered(
                    conn, [(envelope(good), good), (envelope(wrong), wrong)]
                )


async def test_acknowledged_at_is_the_first_answer_even_when_the_accept_arrives_first(
    pool: asyncpg.Pool, routing: RoutingHandlers
) -> None:
    """Each reply kind has its own consumer: a partner's acknowledgement, sent 5 ms before
    its accept, can reach routing after it. The referral list still shows when the partner
    first answered."""
    await handle_case(pool, routing, reported())
    referral_id = f"{CASE_ID}-01"
    async with pool.acquire() as conn:
        agency_id = await conn.fetchval(
            "SELECT agency_id FROM referrals WHERE referral_id = $1", referral_id
        )
    acknowledged_at, accepted_at = NOW + MINUTE, NOW + MINUTE + timedelta(milliseconds=5)
    ids = {"case_id": CASE_ID, "referral_id": referral_id, "agency_id": agency_id}
    for reply, at in (
        (ReferralAccepted(**ids), accepted_at),
        (ReferralAcknowledged(**ids), acknowledged_at),
    ):
        event = make_event(reply, source=f"/rujuk/partners/{agency_id}", time=at)
        async with pool.acquire() as conn, conn.transaction():
            await routing.on_partner_reply(conn, event, reply)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, acknowledged_at, accepted_at FROM referrals WHERE referral_id = $1",
            referral_id,
        )
    assert row["state"] == "accepted"
    assert (row["acknowledged_at"], row["accepted_at"]) == (acknowledged_at, accepted_at)
