"""Deadlines in real time: routing restarts while they are pending, and each fires exactly
once, on time, even with two routing replicas watching the same table."""

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import nats.aio.msg
import pytest

from routing.bootstrap import create_app
from routing.deadlines import DEADLINES_MISSED
from routing.settings import RoutingSettings
from rujuk_contracts import parse_event
from rujuk_contracts.events import ReferralEscalated, ReferralRequested
from tests.integration.sop_support import on_call_test_sop, publish_reported

pytestmark = pytest.mark.integration

CASE_ID = "3514-DE12CD34EF"
MINUTE_SECONDS = 1.0  # one SOP minute lasts a second here
# A small invented SOP: the case manager must acknowledge within 2 minutes and escalates to a
# second agency, then the coordinator; counselling within 3 minutes, then the coordinator.
SOP = on_call_test_sop(
    name="Deadline test SOP",
    contacts="[{id: oncall-test, role: Duty officer, channels: [sms]}]",
    rounds=2,
    every_minutes=1,
    refer="""\
      - {service: case_management, agency: upt-test, priority: urgent,
         acknowledge_within_minutes: 2, escalate_to: [alt-test]}
      - {service: psychosocial, agency: alt-test, priority: routine,
         acknowledge_within_minutes: 3}
""",
)


async def test_deadlines_fire_once_on_time_across_a_restart_and_two_replicas(
    clean_bus: str, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "3514.yaml").write_text(SOP)
    settings = RoutingSettings(
        nats_url=clean_bus,
        database_url=database_url,
        sop_dir=tmp_path,
        minute_seconds=MINUTE_SECONDS,
        deadline_poll_seconds=0.2,
    )
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    received: list[tuple[float, ReferralEscalated]] = []
    requested: dict[str, ReferralRequested] = {}

    async def on_escalated(message: nats.aio.msg.Msg) -> None:
        payload = parse_event(message.data)[1]
        assert isinstance(payload, ReferralEscalated)
        received.append((time.time(), payload))

    async def on_requested(message: nats.aio.msg.Msg) -> None:
        payload = parse_event(message.data)[1]
        assert isinstance(payload, ReferralRequested)
        requested[payload.referral_id] = payload

    first = create_app(settings)
    async with first.router.lifespan_context(first):
        await js.subscribe(ReferralEscalated.subject(), cb=on_escalated)
        await js.subscribe(ReferralRequested.subject(), cb=on_requested)
        await publish_reported(js, CASE_ID)
        async with asyncio.timeout(10):
            while len(requested) < 2:
                await asyncio.sleep(0.02)
    # Routing is down now; both deadlines are pending in its table.
    manager, counselling = requested[f"{CASE_ID}-01"], requested[f"{CASE_ID}-02"]
    assert manager.acknowledgement_deadline - datetime.now(UTC) > timedelta(seconds=1)
    await asyncio.sleep(0.3)

    missed_before = _missed("escalated")
    replicas = [create_app(settings), create_app(settings)]
    async with contextlib.AsyncExitStack() as stack:
        for app in replicas:
            await stack.enter_async_context(app.router.lifespan_context(app))
        # manager at 2 s -> alt-test (new deadline 2 s later) -> coordinator at 4 s;
        # counselling at 3 s -> coordinator; the coordinator's own deadlines end the chains.
        last_due = manager.acknowledgement_deadline + timedelta(seconds=2 * MINUTE_SECONDS)
        async with asyncio.timeout(15):
            while len(received) < 3:
                await asyncio.sleep(0.05)
        wait = (last_due - datetime.now(UTC)).total_seconds() + 2.5  # the coordinator's too
        await asyncio.sleep(max(wait, 1.0))
    await connection.close()

    escalations = [(p.referral_id, p.to_agency_id, p.step) for _, p in received]
    assert sorted(escalations) == [
        (f"{CASE_ID}-01", "alt-test", 1),
        (f"{CASE_ID}-01-e1", "coord-test", 2),
        (f"{CASE_ID}-02", "coord-test", 1),
    ]
    for arrived, escalated in received:
        due = requested[escalated.referral_id].acknowledgement_deadline.timestamp()
        assert 0 <= arrived - due < 1.0, (escalated.referral_id, arrived - due)
    assert counselling.escalation_chain == ["coord-test"]
    successor = requested[f"{CASE_ID}-01-e1"]
    assert (successor.agency_id, successor.escalation_chain) == ("alt-test", ["coord-test"])
    assert _missed("escalated") - missed_before == 3  # ops see each missed deadline once


def _missed(outcome: str) -> float:
    """rujuk_deadlines_missed_total summed over agencies, for one outcome."""
    return sum(
        sample.value
        for metric in DEADLINES_MISSED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["outcome"] == outcome
    )
