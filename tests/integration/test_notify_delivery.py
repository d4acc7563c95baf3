"""Delivery reliability: a partner down for a while gets every referral once, in order, when it
is back; meanwhile other partners are not delayed, not even by one that hangs."""

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import jsonschema_rs
import nats
import pytest
from prometheus_client import Counter

from notify.bootstrap import build_notify
from notify.breaker import BreakerState
from notify.partners import durable_name
from notify.settings import NotifySettings
from notify.worker import DELIVERY_ATTEMPTS, REFERRALS_SETTLED
from rujuk.receiver import WebhookReceiver
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import PickedBy, ReferralDelivered, ReferralDeliveryFailed
from tests.integration.test_notify_support import (
    SIGNING_KEY,
    black_hole,
    publish_referral,
    referral,
)
from tests.unit.test_contracts import RELEASED_V1

pytestmark = pytest.mark.integration

N = 12


async def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_partner_down_then_back_gets_everything_once_in_order_and_others_wait_not(
    clean_bus: str, database_url: str, tmp_path: Path
) -> None:
    down = WebhookReceiver(SIGNING_KEY, refuse_with=503)
    healthy = WebhookReceiver(SIGNING_KEY)
    async with down.running(), healthy.running(), black_hole() as hanging_url:
        partners_file = tmp_path / "partners.json"
        partners_file.write_text(
            json.dumps(
                {
                    "rsud-down": {"webhook_url": f"{down.base_url}/rsud-down"},
                    "polres-up": {"webhook_url": f"{healthy.base_url}/polres-up"},
                    "shelter-hang": {"webhook_url": f"{hanging_url}/shelter-hang"},
                }
            )
        )
        settings = NotifySettings(
            nats_url=clean_bus,
            database_url=database_url,
            webhook_signing_key=SIGNING_KEY.decode(),
            partners_file=partners_file,
            webhook_timeout_seconds=1.0,
            max_attempts=50,
            backoff_base_seconds=0.05,
            backoff_cap_seconds=0.2,
            breaker_threshold=3,
            breaker_cooldown_seconds=0.4,
            poll_interval_seconds=0.2,
        )
        notify = build_notify(settings)
        async with notify.runtime.running():
            connection = await nats.connect(clean_bus)
            js = connection.jetstream()
            outcomes = await js.subscribe("rujuk.evt.referral.>", ordered_consumer=True)
            sent: dict[str, list[str]] = {"rsud-down": [], "polres-up": [], "shelter-hang": []}
            published_at = time.monotonic()
            for n in range(N):
                for agency in sent:
                    payload = referral(agency, n)
                    sent[agency].append(payload.referral_id)
                    await publish_referral(js, payload)

            # The healthy partner gets all of its referrals promptly, in order, while one
            # partner refuses and another hangs (its 1 s timeouts are paid by its lane only).
            await wait_until(lambda: len(healthy.deliveries) >= N, 10, "the healthy partner")
            healthy_took = time.monotonic() - published_at
            assert healthy_took < 2.5, f"the healthy partner waited {healthy_took:.2f}s"
            assert down.deliveries == []
            worker = notify.worker
            assert worker is not None
            await wait_until(
                lambda: worker.breakers[f"{down.base_url}/rsud-down"].state != "closed",
                5,
                "the down partner's breaker to open",
            )

            # The partner comes back: everything arrives, in order, once.
            down.refuse_with = None
            await wait_until(lambda: len(down.deliveries) >= N, 15, "the partner back up")
            await asyncio.sleep(0.3)  # room for any duplicate to show up
            for receiver, agency in ((down, "rsud-down"), (healthy, "polres-up")):
                ids = [d.event["data"]["referral_id"] for d in receiver.deliveries]
                assert ids == sent[agency], f"{agency}: wrong order, loss or duplicates"
                assert receiver.rejected == 0
            assert worker.breakers[f"{down.base_url}/rsud-down"].state == BreakerState.CLOSED

            # Every referral reached each partner's NATS feed (its durable consumer), in order.
            for agency in ("rsud-down", "polres-up", "shelter-hang"):
                feed = await js.pull_subscribe(
                    subjects.partner_outbound_wildcard(agency),
                    durable=durable_name(agency),
                    stream=subjects.PARTNER_STREAM,
                )
                messages = await feed.fetch(N, timeout=5)
                got = [json.loads(m.data)["data"]["referral_id"] for m in messages]
                assert got == sent[agency]

            # `delivered` for the two that answered; the hanging one is still being retried.
            delivered: set[str] = set()
            async with asyncio.timeout(10):
                while len(delivered) < 2 * N:
                    message = await outcomes.next_msg(timeout=10)
                    _, payload = parse_event(message.data)
                    assert not isinstance(payload, ReferralDeliveryFailed)
                    if isinstance(payload, ReferralDelivered):
                        assert payload.agency_id != "shelter-hang"
                        assert set(payload.channels) == {"nats", "webhook"}
                        delivered.add(payload.referral_id)
            assert delivered == set(sent["rsud-down"] + sent["polres-up"])
            await connection.close()

        conn = await asyncpg.connect(database_url)
        try:
            failures = await conn.fetchval(
                "SELECT count(*) FROM notify.delivery_attempts "
                "WHERE NOT ok AND channel = 'webhook' AND detail LIKE '%HTTP 503%'"
            )
            head_attempts = await conn.fetchval(
                "SELECT attempts FROM notify.sends WHERE referral_id = $1 AND channel = 'webhook'",
                sent["rsud-down"][0],
            )
            later_attempts = await conn.fetchval(
                "SELECT max(attempts) FROM notify.sends WHERE referral_id = ANY($1::text[]) "
                "AND channel = 'webhook'",
                sent["rsud-down"][1:],
            )
        finally:
            await conn.close()
        assert failures >= 3  # each refused attempt is recorded
        assert head_attempts > 1
        assert later_attempts == 1  # referrals behind the head never overtook it


async def test_after_the_last_attempt_the_referral_is_reported_failed_once(
    clean_bus: str, database_url: str
) -> None:
    down = WebhookReceiver(SIGNING_KEY, refuse_with=503)
    attempts_before = _count(DELIVERY_ATTEMPTS, agency_id="rsud-down", channel="webhook",
                             outcome="failed")  # fmt: skip
    failed_before = _count(REFERRALS_SETTLED, agency_id="rsud-down", outcome="delivery_failed")
    async with down.running():
        settings = NotifySettings(
            nats_url=clean_bus,
            database_url=database_url,
            webhook_signing_key=SIGNING_KEY.decode(),
            webhook_base_url=down.base_url,
            max_attempts=2,
            backoff_base_seconds=0.05,
            backoff_cap_seconds=0.05,
            poll_interval_seconds=0.2,
        )
        notify = build_notify(settings)
        async with notify.runtime.running():
            connection = await nats.connect(clean_bus)
            js = connection.jetstream()
            outcomes = await js.subscribe("rujuk.evt.referral.>", ordered_consumer=True)
            payload = referral("rsud-down", 0)
            await publish_referral(js, payload)
            failed: list[ReferralDeliveryFailed] = []
            async with asyncio.timeout(10):
                while not failed:
                    _, event = parse_event((await outcomes.next_msg(timeout=10)).data)
                    assert not isinstance(event, ReferralDelivered)
                    if isinstance(event, ReferralDeliveryFailed):
                        failed.append(event)
            with pytest.raises(nats.errors.TimeoutError):
                await outcomes.next_msg(timeout=0.5)  # reported once
            await connection.close()
    [report] = failed
    assert report.referral_id == payload.referral_id
    assert report.attempts == 2
    # Ops see it too: two failed webhook attempts and one failed referral for that partner.
    attempts = _count(DELIVERY_ATTEMPTS, agency_id="rsud-down", channel="webhook",
                      outcome="failed")  # fmt: skip
    assert attempts - attempts_before == 2
    failed_now = _count(REFERRALS_SETTLED, agency_id="rsud-down", outcome="delivery_failed")
    assert failed_now - failed_before == 1
    assert "webhook" in report.reason
    assert "HTTP 503" in report.reason
    assert report.reason.endswith("(delivered on nats)")


def _count(counter: Counter, **labels: str) -> float:
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels == labels
    )


async def test_a_referral_a_desa_picked_reaches_its_partner_as_v1_was_released(
    clean_bus: str, database_url: str, tmp_path: Path
) -> None:
    """``picked_by``, which referral.requested gained after v1 was released, stays with
    rujuk's own services: the partner's copy leaves it out and is valid under the released
    schema, which a partner's client may still validate with (and a referral it refused as
    invalid would be lost)."""
    receiver = WebhookReceiver(SIGNING_KEY)
    async with receiver.running():
        partners_file = tmp_path / "partners.json"
        partners_file.write_text(
            json.dumps({"pkm-contoh": {"webhook_url": f"{receiver.base_url}/pkm-contoh"}})
        )
        settings = NotifySettings(
            nats_url=clean_bus,
            database_url=database_url,
            webhook_signing_key=SIGNING_KEY.decode(),
            partners_file=partners_file,
            poll_interval_seconds=0.2,
        )
        notify = build_notify(settings)
        async with notify.runtime.running():
            connection = await nats.connect(clean_bus)
            try:
                picked = referral("pkm-contoh", 0).model_copy(
                    update={"picked_by": PickedBy.VILLAGE}
                )
                assert make_event(picked, source="/rujuk/routing").data["picked_by"] == "village"
                await publish_referral(connection.jetstream(), picked)
                await wait_until(lambda: receiver.deliveries, 10, "the partner")
            finally:
                await connection.close()
    received = receiver.deliveries[0].event
    assert received["data"]["referral_id"] == picked.referral_id
    assert "picked_by" not in received["data"]
    released = json.loads((RELEASED_V1 / "id.rujuk.referral.requested.v1.json").read_text())
    validator = jsonschema_rs.validator_for(released, validate_formats=True)
    assert [error.message for error in validator.iter_errors(received)] == []
