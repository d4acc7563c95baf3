"""On call past the coordinator, on the real NATS and PostgreSQL: a referral nobody answers,
the coordinator included, pages the SOP's on-call list round after round, on schedule, once
per round across a restart and two replicas, and stops when someone acknowledges (in the
console through routing's API, or by a reply notify relays on the bus)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import nats
import nats.aio.msg
import pytest
from fastapi import FastAPI

from routing import oncall, store
from routing.bootstrap import create_app
from routing.paging import OnCallAlert, alert_id_for
from routing.settings import RoutingSettings
from rujuk_contracts import make_event, parse_event
from rujuk_contracts.events import (
    EscalationReason,
    OnCallAcknowledged,
    OnCallAckVia,
    OnCallPaged,
    Priority,
    Role,
)
from rujuk_runtime.bus import event_headers
from tests.integration.access_support import announce_token, bearer, eventually
from tests.integration.sop_support import on_call_test_sop, publish_reported

pytestmark = pytest.mark.integration

MINUTE_SECONDS = 0.5  # one SOP minute lasts half a second here
EVERY = 2 * MINUTE_SECONDS  # the SOP's repeat policy: every 2 minutes, 3 rounds
LATE_AT_MOST = 3.0  # seconds a round may come after its time on a loaded machine
# An invented SOP: an emergency case manager must acknowledge within a minute; its chain is the
# coordinator alone (decide appends it), who has a minute too; then the on-call list is paged.
SOP = on_call_test_sop(
    name="On-call test SOP",
    contacts="""[{id: piket-test, role: Duty officer (invented), channels: [sms, webhook]},
             {id: kepala-test, role: Head of office (invented), channels: [email]}]""",
    rounds=3,
    every_minutes=2,
    refer="""\
      - {service: case_management, agency: upt-test, priority: emergency,
         acknowledge_within_minutes: 1}
""",
)
ACKED_IN_CONSOLE = "3514-0C0000000A"
ACKED_BY_REPLY = "3514-0C0000000B"
NEVER_ACKED = "3514-0C0000000C"


@pytest.fixture
def settings(clean_bus: str, database_url: str, tmp_path: Path) -> RoutingSettings:
    (tmp_path / "3514.yaml").write_text(SOP)
    return RoutingSettings(
        nats_url=clean_bus,
        database_url=database_url,
        sop_dir=tmp_path,
        minute_seconds=MINUTE_SECONDS,
        deadline_poll_seconds=0.05,
    )


@contextlib.asynccontextmanager
async def running(*apps: FastAPI) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


async def until(condition: object, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_pages_repeat_on_schedule_once_per_round_and_stop_when_acknowledged(
    settings: RoutingSettings, clean_bus: str
) -> None:
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    pages: list[tuple[float, OnCallPaged]] = []  # (when routing paged it, the round)

    async def on_paged(message: nats.aio.msg.Msg) -> None:
        event, payload = parse_event(message.data)
        assert isinstance(payload, OnCallPaged)
        pages.append((event.time.timestamp(), payload))

    def rounds_of(case_id: str) -> list[int]:
        return [p.round for _, p in pages if p.case_id == case_id]

    first = create_app(settings)
    async with (
        running(first),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first), base_url="http://routing"
        ) as http,
    ):
        await js.subscribe(OnCallPaged.subject(), cb=on_paged)  # the stream exists now
        token_id, secret = await announce_token(clean_bus, Role.COORDINATOR, districts=["3514"])
        http.headers.update(bearer(secret))
        await eventually(lambda: http.get("/v1/oncall/alerts"), 200)
        for case_id in (ACKED_IN_CONSOLE, ACKED_BY_REPLY, NEVER_ACKED):
            await publish_reported(js, case_id)
        # upt-test's minute, then the coordinator's: each case's chain runs out, round 1.
        await until(lambda: all(rounds_of(c) == [1] for c in (ACKED_BY_REPLY, NEVER_ACKED)), 10)

        # A reply relayed by notify (an on-call role answered the page) stops that alert.
        [(_, paged)] = [(t, p) for t, p in pages if p.case_id == ACKED_BY_REPLY]
        reply = make_event(
            OnCallAcknowledged(
                case_id=ACKED_BY_REPLY,
                alert_id=paged.alert_id,
                via=OnCallAckVia.REPLY,
                by="piket-test",
                channel="sms",
            ),
            source="/rujuk/notify",
        )
        await js.publish(
            OnCallAcknowledged.subject(), reply.to_bytes(), headers=event_headers(reply.id, None)
        )

        await until(lambda: rounds_of(ACKED_IN_CONSOLE) == [1, 2], 5)
        listed = (await http.get("/v1/oncall/alerts")).json()["alerts"]
        alert = next(a for a in listed if a["case_id"] == ACKED_IN_CONSOLE)
        assert (alert["rounds_paged"], alert["rounds"], alert["acknowledged"]) == (2, 3, False)
        assert [c["contact_id"] for c in alert["contacts"]] == ["piket-test", "kepala-test"]
        response = await http.post(f"/v1/oncall/alerts/{alert['alert_id']}/acknowledge")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["first"] is True
        assert body["alert"]["acknowledged_by"] == f"coordinator:{token_id}"
        assert body["alert"]["acknowledged_via"] == "console"
        again = await http.post(f"/v1/oncall/alerts/{alert['alert_id']}/acknowledge")
        assert (again.status_code, again.json()["first"]) == (200, False)
        unknown = await http.post("/v1/oncall/alerts/3514-0C0000000Z-01-oncall/acknowledge")
        assert unknown.status_code == 404

    # Routing is down when NEVER_ACKED's round 2 falls due; it comes once, late, at restart,
    # and with two replicas watching, round 3 comes once, EVERY after it.
    await asyncio.sleep(EVERY * 1.3)
    replicas = [create_app(settings), create_app(settings)]
    async with running(*replicas):
        await until(lambda: len(rounds_of(NEVER_ACKED)) == 3, 10)
        await asyncio.sleep(EVERY * 1.5)  # no fourth round: the SOP says three
    await connection.close()

    assert rounds_of(NEVER_ACKED) == [1, 2, 3]
    assert rounds_of(ACKED_IN_CONSOLE) == [1, 2]  # acknowledged before round 3
    assert rounds_of(ACKED_BY_REPLY) == [1]  # acknowledged before round 2
    # Round 3 is paged when round 2 said it would be: never earlier; later only by how long a
    # busy machine takes to get to it (the watcher polls every 50 ms; `make test` runs two
    # workers on two cores, and it came 1.2 s late once).
    [(_, round_1), (second_at, round_2), (third_at, _)] = [
        (t, p) for t, p in pages if p.case_id == NEVER_ACKED
    ]
    assert round_2.next_round_at is not None
    assert round_2.next_round_at.timestamp() == pytest.approx(second_at + EVERY, abs=0.001)
    assert 0 <= third_at - round_2.next_round_at.timestamp() < LATE_AT_MOST
    assert round_1.next_round_at is not None
    assert second_at > round_1.next_round_at.timestamp()  # late: routing was down when due
    last = [p for _, p in pages if p.case_id == NEVER_ACKED][-1]
    assert (last.next_round_at, last.rounds) == (None, 3)
    assert [c.contact_id for c in last.contacts] == ["piket-test", "kepala-test"]
    assert (last.agency_id, last.reason, last.priority) == (
        "coord-test",
        "deadline_missed",
        "emergency",
    )


async def test_a_coordinator_of_another_district_cannot_see_or_acknowledge(
    settings: RoutingSettings, clean_bus: str
) -> None:
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    app = create_app(settings)
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http,
    ):
        _, here = await announce_token(clean_bus, Role.COORDINATOR, districts=["3514"])
        _, elsewhere = await announce_token(clean_bus, Role.COORDINATOR, districts=["3513"])
        _, partner = await announce_token(clean_bus, Role.PARTNER, agency_id="upt-test")
        await eventually(lambda: http.get("/v1/oncall/alerts", headers=bearer(here)), 200)
        await publish_reported(js, NEVER_ACKED)

        async def listed(secret: str) -> list[dict[str, object]]:
            response = await http.get("/v1/oncall/alerts", headers=bearer(secret))
            assert response.status_code == 200
            return response.json()["alerts"]  # type: ignore[no-any-return]

        async with asyncio.timeout(10):
            while not await listed(here):
                await asyncio.sleep(0.05)
        [alert] = await listed(here)
        assert await listed(elsewhere) == []
        url = f"/v1/oncall/alerts/{alert['alert_id']}/acknowledge"
        refused = await http.post(url, headers=bearer(elsewhere))
        nowhere = "3514-0C0000000Z-01-oncall"
        missing = await http.post(
            f"/v1/oncall/alerts/{nowhere}/acknowledge", headers=bearer(elsewhere)
        )
        assert (refused.status_code, missing.status_code) == (404, 404)
        # the same answer as for an alert that does not exist
        assert refused.json() == {
            k: v.replace(nowhere, str(alert["alert_id"])) for k, v in missing.json().items()
        }
        assert (await http.get("/v1/oncall/alerts", headers=bearer(partner))).status_code == 403
        assert (await http.post(url, headers=bearer(partner))).status_code == 403
        assert (await listed(here))[0]["acknowledged"] is False
        # An offset past PostgreSQL's bigint is a bad request, not a server error (schemathesis
        # found it): on every paged list of routing's.
        for paged in ("/v1/oncall/alerts", "/v1/cases/unrouted", "/v1/referrals"):
            huge = await http.get(paged, params={"offset": 10**30}, headers=bearer(here))
            assert huge.status_code == 422, (paged, huge.text)
            assert "offset" in huge.text
    await connection.close()


async def test_acknowledging_again_stages_nothing_new_and_another_coordinator_is_recorded(
    database_url: str,
) -> None:
    """In one transaction, so the first acknowledgement's event is surely still in the outbox
    (an acknowledgement repeated before the relay sent the first one once answered 500)."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "routing"})
    try:
        async with conn.transaction():
            now = datetime.now(UTC)
            referral_id = f"{NEVER_ACKED}-01-e1"
            await store.open_alert(
                conn,
                OnCallAlert(
                    alert_id=alert_id_for(referral_id),
                    case_id=NEVER_ACKED,
                    district_code="3514",
                    referral_id=referral_id,
                    agency_id="coord-test",
                    priority=Priority.EMERGENCY,
                    reason=EscalationReason.DEADLINE_MISSED,
                    opened_at=now,
                    plan=None,
                    rounds_paged=1,
                    next_page_at=None,
                ),
            )
            alert_id = alert_id_for(referral_id)
            acks = [
                await oncall.acknowledge_in_console(conn, alert_id, by, now, districts=["3514"])
                for by in ("coordinator:tok-a", "coordinator:tok-a", "coordinator:tok-b")
            ]
            staged = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE event_type = $1", OnCallAcknowledged.event_type()
            )
    finally:
        await conn.close()
    assert [first for _, first in acks] == [True, False, False]
    assert {alert.acknowledged_by for alert, _ in acks} == {"coordinator:tok-a"}  # the first
    assert staged == 2  # tok-a once, tok-b once
