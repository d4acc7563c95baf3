"""The village-level Rumah SAE picked by the cadre's desa (issue 25), with intake, routing and
audit in-process on real NATS and PostgreSQL and the shipped 3513 SOP: a cadre report from a
listed desa reaches that desa's Rumah SAE, from another desa the kecamatan's; with intake away
the kecamatan's gets it after the bound; a question asked again, or answered twice, makes one
referral; a question intake reads after its answer_by gets no answer (none in the ledger);
and the case's desa is in no event and no ledger entry (the listed desa only in the question's
candidates, which are the SOP's directory)."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import nats
import pytest

from audit.bootstrap import create_app as create_audit
from audit.settings import AuditSettings
from intake import store as intake_store
from intake.auth import Role
from intake.bootstrap import create_app as create_intake
from intake.settings import IntakeSettings
from intake.vault import new_master_key_spec
from routing.bootstrap import create_app as create_routing
from routing.settings import RoutingSettings
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import (
    CaseReported,
    CaseVillageAgencyAsked,
    CaseVillageAgencyFound,
    ReferralRequested,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.bus import event_headers
from tests.conftest import provisioned_database, remove_streams
from tests.integration.sop_support import until_intake_knows
from tests.integration.test_intake_api import report

pytestmark = pytest.mark.integration

LISTED = "Desa Sampel Satu"  # listed by rumah-sae-desa-sampel-kraksaan in the shipped 3513 SOP
UNLISTED = "Desa Rekaan Tanpa Rumah"  # invented, listed by no agency
DESA_AGENCY, KECAMATAN_AGENCY = "rumah-sae-desa-sampel-kraksaan", "rumah-sae-kraksaan"
PICK_TIMEOUT = 3.0  # seconds: long enough for intake to answer on a busy machine

T = TypeVar("T")


@dataclass
class Village:
    intake: httpx.AsyncClient
    admin_url: str
    nats_url: str
    tokens: dict[str, str]
    stop_intake: Callable[[], Awaitable[None]]

    async def file(self, cadre: str) -> str:
        body = report(district_code="3513", kecamatan=None, village=None)
        headers = {"Authorization": f"Bearer {self.tokens[cadre]}"}
        filed = await self.intake.post("/v1/reports", json=body, headers=headers)
        assert filed.status_code == 202, filed.text
        case_id: str = filed.json()["case_id"]
        return case_id

    async def rows(self, query: str, *args: Any) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.admin_url)
        try:
            return [dict(row) for row in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    async def referrals(self, case_id: str) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT referral_id, agency_id, service, picked_by, created_at "
            "FROM routing.referrals WHERE case_id = $1 ORDER BY referral_id",
            case_id,
        )

    async def psychosocial(self, case_id: str) -> dict[str, Any]:
        """The case's psychosocial referral, once its pick is resolved."""

        async def picked() -> dict[str, Any] | None:
            found = [r for r in await self.referrals(case_id) if r["picked_by"]]
            assert len(found) <= 1, found
            return found[0] if found else None

        return await eventually(picked, timeout=20)


async def picked_by_on_stream(nats_url: str, case_id: str) -> dict[str, str | None]:
    """referral id -> picked_by of each referral.requested of the case on the stream."""
    messages = of_case(await stream_events(nats_url), case_id, ReferralRequested.event_type())
    requested = [parse_event(m)[1] for m in messages]
    return {r.referral_id: r.picked_by for r in requested if isinstance(r, ReferralRequested)}


async def picked_by_at_intake(village: Village, case_id: str, cadre: str) -> dict[str, str | None]:
    """referral id -> picked_by of the case's referrals as intake's GET /v1/cases/{id} shows
    them, once it shows every referral routing made."""
    made = {r["referral_id"] for r in await village.referrals(case_id)}
    headers = {"Authorization": f"Bearer {village.tokens[cadre]}"}

    async def shown() -> dict[str, str | None] | None:
        status = await village.intake.get(f"/v1/cases/{case_id}", headers=headers)
        assert status.status_code == 200, status.text
        found = {r["referral_id"]: r["picked_by"] for r in status.json()["referrals"]}
        return found if set(found) == made else None

    return await eventually(shown)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def village(nats_url: str, server_database_url: str) -> AsyncIterator[Village]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        intake_app = create_intake(
            IntakeSettings(
                nats_url=nats_url,
                database_url=database.role_url("intake"),
                master_keys=new_master_key_spec("k1"),
            )
        )
        routing_app = create_routing(
            RoutingSettings(
                nats_url=nats_url,
                database_url=database.role_url("routing"),
                village_pick_timeout_seconds=PICK_TIMEOUT,
            )
        )
        audit_app = create_audit(
            AuditSettings(nats_url=nats_url, database_url=database.role_url("audit"))
        )
        async with contextlib.AsyncExitStack() as stack, contextlib.AsyncExitStack() as intake:
            for app in (routing_app, audit_app):
                await stack.enter_async_context(app.router.lifespan_context(app))
            await intake.enter_async_context(intake_app.router.lifespan_context(intake_app))
            conn = await asyncpg.connect(
                database.role_url("intake"), server_settings={"search_path": "intake"}
            )
            tokens = {}
            try:
                for name, desa in (("listed", LISTED), ("unlisted", UNLISTED)):
                    _, tokens[name] = await intake_store.create_token(
                        conn, Role.CADRE, districts=["3513"], areas=[f"Kraksaan/{desa}"]
                    )
            finally:
                await conn.close()
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=intake_app), base_url="http://intake"
                )
            )
            await until_intake_knows(client, {"3513": 1})  # routing announced its SOPs
            yield Village(client, database.admin_url, nats_url, tokens, intake.aclose)


async def stream_events(nats_url: str) -> list[bytes]:
    """Every message now on the events stream, raw."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        sub = await js.pull_subscribe(
            subjects.EVENTS_WILDCARD, durable=None, stream=subjects.EVENTS_STREAM
        )
        found: list[bytes] = []
        with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
            while messages := await sub.fetch(500, timeout=1):
                found += [m.data for m in messages]
        await sub.unsubscribe()
        return found
    finally:
        await connection.close()


def of_case(messages: list[bytes], case_id: str, event_type: str) -> list[bytes]:
    return [m for m in messages if parse_event(m)[0].subject == case_id
            and parse_event(m)[0].type == event_type]  # fmt: skip


async def test_a_cadre_report_from_a_listed_desa_reaches_that_desas_rumah_sae(
    village: Village,
) -> None:
    case_id = await village.file("listed")
    picked = await village.psychosocial(case_id)
    assert (picked["agency_id"], picked["service"], picked["picked_by"]) == (
        DESA_AGENCY,
        "psychosocial",
        "village",
    )
    others = [r for r in await village.referrals(case_id) if not r["picked_by"]]
    assert others, "the other referrals went out at once"
    # Its referral.requested says how, and intake's case status shows it; the others say nothing.
    expected = {picked["referral_id"]: "village", **{r["referral_id"]: None for r in others}}
    assert await picked_by_on_stream(village.nats_url, case_id) == expected
    assert await picked_by_at_intake(village, case_id, "listed") == expected
    assert all(r["created_at"] < picked["created_at"] for r in others)
    [pick] = await village.rows(
        "SELECT resolved_how, outcome, resolved_agency_id FROM routing.village_picks "
        "WHERE case_id = $1",
        case_id,
    )
    assert pick == {
        "resolved_how": "answer",
        "outcome": "referred",
        "resolved_agency_id": DESA_AGENCY,
    }


async def test_a_cadre_report_from_an_unlisted_desa_reaches_the_kecamatans_rumah_sae(
    village: Village,
) -> None:
    case_id = await village.file("unlisted")
    picked = await village.psychosocial(case_id)
    assert (picked["agency_id"], picked["picked_by"]) == (KECAMATAN_AGENCY, "kecamatan_no_village")
    shown = await picked_by_at_intake(village, case_id, "unlisted")
    assert shown[picked["referral_id"]] == "kecamatan_no_village"


async def test_the_desa_is_in_no_event_and_no_ledger_entry(village: Village) -> None:
    """The unlisted desa nowhere; the listed one only as directory data in the question."""
    listed_case = await village.file("listed")
    unlisted_case = await village.file("unlisted")
    for case_id in (listed_case, unlisted_case):
        await village.psychosocial(case_id)

    async def ledger_has_both() -> list[str] | None:
        """Every ledger entry, once each case's answer and picked referral are in."""
        rows = await village.rows(
            "SELECT case_id, event_type, event::text AS event FROM audit.ledger"
        )
        answered = {
            row["case_id"]
            for row in rows
            if row["event_type"] == CaseVillageAgencyFound.event_type()
        }
        picked = {
            row["case_id"]
            for row in rows
            if row["event_type"] == ReferralRequested.event_type()
            and '"psychosocial"' in row["event"]
        }
        both = {listed_case, unlisted_case}
        return [row["event"] for row in rows] if both <= answered & picked else None

    entries = await eventually(ledger_has_both)
    messages = await stream_events(village.nats_url)
    assert len(of_case(messages, listed_case, CaseVillageAgencyFound.event_type())) == 1
    for text in [m.decode("utf-8", "replace") for m in messages] + entries:
        assert UNLISTED.casefold() not in text.casefold(), text
        if LISTED.casefold() in text.casefold():
            event = json.loads(text)
            assert event["type"] == CaseVillageAgencyAsked.event_type(), text
            without_directory = {**event, "data": {**event["data"], "candidates": []}}
            assert LISTED.casefold() not in json.dumps(without_directory).casefold()


async def test_a_question_asked_again_or_answered_twice_makes_one_referral(
    village: Village,
) -> None:
    case_id = await village.file("listed")
    first = await village.psychosocial(case_id)
    messages = await stream_events(village.nats_url)
    [asked] = of_case(messages, case_id, CaseVillageAgencyAsked.event_type())
    asked_event, asked_payload = parse_event(asked)
    assert isinstance(asked_payload, CaseVillageAgencyAsked)
    # Another answer, under a new event id, naming the other candidate.
    other = CaseVillageAgencyFound(
        case_id=case_id,
        question_id=asked_payload.question_id,
        agency_id="rumah-sae-desa-sampel-paiton",
    )
    second_answer = make_event(other, source="/rujuk/test")
    connection = await nats.connect(village.nats_url)
    try:
        js = connection.jetstream()
        # The question replayed: its bytes again under a new Nats-Msg-Id (JetStream keeps it).
        await js.publish(CaseVillageAgencyAsked.subject(), asked,
                         headers=event_headers(f"replay-{asked_event.id}", None))  # fmt: skip
        # The same question asked again under a new event id: intake answers it again.
        again = make_event(asked_payload, source="/rujuk/routing")
        await js.publish(CaseVillageAgencyAsked.subject(), again.to_bytes(),
                         headers=event_headers(again.id, None))  # fmt: skip
        await js.publish(CaseVillageAgencyFound.subject(), second_answer.to_bytes(),
                         headers=event_headers(second_answer.id, None))  # fmt: skip
    finally:
        await connection.close()

    async def routing_took_all() -> bool:
        done = await village.rows(
            "SELECT event_id FROM routing.processed_events WHERE event_id = $1",
            second_answer.id,
        )
        answered = await village.rows(
            "SELECT event_id FROM intake.processed_events WHERE event_id = $1", again.id
        )
        return bool(done and answered)

    await eventually(routing_took_all)
    await asyncio.sleep(0.5)  # anything the repeated answer would have caused, caused by now
    assert [r for r in await village.referrals(case_id) if r["picked_by"]] == [first]
    requested = [
        parse_event(m)[1]
        for m in of_case(
            await stream_events(village.nats_url), case_id, ReferralRequested.event_type()
        )
    ]
    assert [
        r.agency_id
        for r in requested
        if isinstance(r, ReferralRequested) and r.referral_id == first["referral_id"]
    ] == [DESA_AGENCY]
    assert "rumah-sae-desa-sampel-paiton" not in [
        r.agency_id for r in requested if isinstance(r, ReferralRequested)
    ]


async def test_a_question_read_after_its_answer_by_gets_no_answer_and_no_ledger_entry(
    village: Village,
) -> None:
    """Intake behind: a question it reads after routing's timer resolved the pick gets no
    answer, so the ledger never learns which desa-level agency lists the case's desa while no
    referral names it; the same question read in time is answered (that agency)."""
    case_id = await village.file("listed")
    await village.psychosocial(case_id)
    [asked] = of_case(
        await stream_events(village.nats_url), case_id, CaseVillageAgencyAsked.event_type()
    )
    _, original = parse_event(asked)
    assert isinstance(original, CaseVillageAgencyAsked)
    assert original.answer_by is not None  # routing says when it stops waiting
    now = datetime.now(UTC)
    late, fresh = (
        original.model_copy(update={"question_id": f"vq-{uuid.uuid4().hex}", "answer_by": by})
        for by in (now - timedelta(seconds=1), now + timedelta(hours=1))
    )
    questions = [make_event(q, source="/rujuk/routing") for q in (late, fresh)]
    connection = await nats.connect(village.nats_url)
    try:
        for question in questions:
            await connection.jetstream().publish(
                CaseVillageAgencyAsked.subject(),
                question.to_bytes(),
                headers=event_headers(question.id, None),
            )
    finally:
        await connection.close()

    async def answers_in_ledger() -> dict[str, str | None] | None:
        """question id -> agency of every answer in the ledger, once intake read both
        questions and the fresh one's answer is in."""
        read = await village.rows(
            "SELECT event_id FROM intake.processed_events WHERE event_id = ANY($1::text[])",
            [q.id for q in questions],
        )
        rows = await village.rows(
            "SELECT event::text AS event FROM audit.ledger WHERE event_type = $1",
            CaseVillageAgencyFound.event_type(),
        )
        found = {e["data"]["question_id"]: e["data"]["agency_id"] for e in map(json.loads,
                 (r["event"] for r in rows))}  # fmt: skip
        return found if len(read) == 2 and fresh.question_id in found else None

    answers = await eventually(answers_in_ledger)
    assert answers[fresh.question_id] == DESA_AGENCY
    await asyncio.sleep(0.5)  # a late answer, had intake made one, reached the ledger by now
    assert late.question_id not in (await eventually(answers_in_ledger))
    on_stream = [
        parse_event(m)[1]
        for m in of_case(
            await stream_events(village.nats_url), case_id, CaseVillageAgencyFound.event_type()
        )
    ]
    assert late.question_id not in [
        a.question_id for a in on_stream if isinstance(a, CaseVillageAgencyFound)
    ]


async def test_with_intake_away_the_kecamatans_rumah_sae_gets_it_after_the_bound(
    village: Village,
) -> None:
    """Last in the module: intake stops. A case reported (as intake would have) is routed, its
    other referrals go out at once, and the pick waits no longer than the bound."""
    await village.stop_intake()
    case_id = "3513-VQ0TMEQVTA"
    reported = CaseReported(
        case_id=case_id,
        channel="outreach",
        reported_at=datetime.now(UTC),
        triage=TriageFacts(
            violence_types=["physical"],
            age_group="adult",
            sex="female",
            district_code="3513",
            kecamatan="Kraksaan",
        ),
    )
    event = make_event(reported, source="/rujuk/test")
    connection = await nats.connect(village.nats_url)
    try:
        await connection.jetstream().publish(
            CaseReported.subject(), event.to_bytes(), headers=event_headers(event.id, None)
        )
    finally:
        await connection.close()
    picked = await village.psychosocial(case_id)
    assert (picked["agency_id"], picked["picked_by"]) == (KECAMATAN_AGENCY, "kecamatan_timeout")
    others = [r for r in await village.referrals(case_id) if not r["picked_by"]]
    assert others
    on_stream = await picked_by_on_stream(village.nats_url, case_id)
    assert on_stream == {picked["referral_id"]: "kecamatan_timeout",
                         **{r["referral_id"]: None for r in others}}  # fmt: skip
    waited = (picked["created_at"] - max(r["created_at"] for r in others)).total_seconds()
    assert PICK_TIMEOUT - 0.5 <= waited <= PICK_TIMEOUT + 5, waited
