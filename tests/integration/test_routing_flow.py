"""Routing as a running service: a report on the bus comes back as referral requests."""

import asyncio
from datetime import UTC, datetime

import nats
import pytest
from fastapi import FastAPI
from nats.aio.msg import Msg

from routing import store
from routing.bootstrap import create_app
from routing.events import event_id
from routing.lifecycle import UnroutedCase, UnroutedReason
from routing.settings import RoutingSettings
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import CaseReported, CaseRouted, ReferralRequested
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.bus import DLQ_REASON_HEADER, event_headers
from rujuk_runtime.service import ServiceRuntime

pytestmark = pytest.mark.integration

CASE_ID = "3513-AB12CD34EF"


def reported(case_id: str = CASE_ID, district: str = "3513") -> CaseReported:
    return CaseReported(
        case_id=case_id,
        channel="walk_in",
        reported_at=datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
        triage=TriageFacts(
            violence_types=["physical"],
            age_group="child",
            sex="male",
            injury=True,
            district_code=district,
            kecamatan="Paiton",
        ),
    )


async def collect(subscription: nats.js.JetStreamContext.PushSubscription, count: int) -> list[Msg]:
    messages: list[Msg] = []
    async with asyncio.timeout(20):
        while len(messages) < count:
            messages.append(await subscription.next_msg(timeout=20))
    return messages


async def test_a_case_comes_back_routed_a_repeat_is_parked_an_unroutable_one_is_kept(
    clean_bus: str, database_url: str
) -> None:
    settings = RoutingSettings(nats_url=clean_bus, database_url=database_url, batch_size=10)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        connection = await nats.connect(clean_bus)
        js = connection.jetstream()
        routed_feed = await js.subscribe(CaseRouted.subject())
        requested_feed = await js.subscribe(ReferralRequested.subject())
        parked_feed = await js.subscribe(subjects.dead_letter("routing"))

        event = make_event(reported(), source="/rujuk/test")
        for _ in range(2):  # the second is a republish: JetStream drops it by its Nats-Msg-Id
            await js.publish(
                CaseReported.subject(), event.to_bytes(), headers=event_headers(event.id, None)
            )
        again = make_event(reported(), source="/rujuk/test")  # same case under a new event id
        await js.publish(CaseReported.subject(), again.to_bytes())
        elsewhere = make_event(reported("3599-AB12CD34EF", "3599"), source="/rujuk/test")
        await js.publish(CaseReported.subject(), elsewhere.to_bytes())

        [routed_message] = await collect(routed_feed, 1)
        routed_event, routed = parse_event(routed_message.data)
        assert isinstance(routed, CaseRouted)
        assert routed_event.id == event_id(f"{CASE_ID}:routed")
        assert routed_message.headers is not None
        assert routed_message.headers["Nats-Msg-Id"] == routed_event.id

        requests = await collect(requested_feed, len(routed.referrals))
        payloads = [parse_event(message.data)[1] for message in requests]
        assert [p.referral_id for p in payloads if isinstance(p, ReferralRequested)] == [
            summary.referral_id for summary in routed.referrals
        ]

        [parked] = await collect(parked_feed, 1)
        assert (parked.headers or {}).get(DLQ_REASON_HEADER) == (
            f"rejected: case {CASE_ID} was routed before"
        )
        unrouted = await until_unrouted(app, "3599-AB12CD34EF")
        assert unrouted.reason is UnroutedReason.NO_SOP
        assert unrouted.district_code == "3599"
        await asyncio.sleep(0.5)  # nothing more arrives: the republished duplicate was dropped
        with pytest.raises(nats.errors.TimeoutError):
            await routed_feed.next_msg(timeout=0.5)
        with pytest.raises(nats.errors.TimeoutError):  # the unroutable case was not parked
            await parked_feed.next_msg(timeout=0.5)
        await connection.close()


async def until_unrouted(app: FastAPI, case_id: str) -> UnroutedCase:
    runtime: ServiceRuntime = app.state.runtime
    async with asyncio.timeout(20):
        while True:
            async with runtime.pool.acquire() as conn:
                found = await store.lock_unrouted(conn, case_id)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
