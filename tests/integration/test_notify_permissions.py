"""A real nats-server with the generated authorization: each partner is fenced to its own feed
and its own reply subjects."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError

from notify import partners
from rujuk_contracts import subjects
from rujuk_runtime.bus import ensure_streams
from rujuk_runtime.embedded import EmbeddedNats

pytestmark = pytest.mark.integration

SERVICE_PASSWORD = "service-password-for-tests"


@contextlib.asynccontextmanager
async def partner_connection(
    url: str, key: partners.PartnerKey
) -> AsyncIterator[tuple[Client, list[str]]]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    assert key.seed is not None
    connection = await nats.connect(
        url,
        nkeys_seed_str=key.seed,
        inbox_prefix=partners.inbox_prefix(key.agency_id),
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        yield connection, errors
    finally:
        await connection.close()


async def wait_for_violation(errors: list[str], needle: str) -> None:
    async with asyncio.timeout(5):
        while not any("permissions violation" in e and needle.lower() in e for e in errors):
            await asyncio.sleep(0.02)


async def test_a_partner_reads_only_its_own_feed_and_replies_only_as_itself(
    tmp_path: Path,
) -> None:
    key_a, key_b = partners.new_partner_key("puskesmas-a"), partners.new_partner_key("polres-b")
    config = tmp_path / "nats.conf"
    config.write_text(
        partners.authorization_block(
            [
                partners.service_user_entry("rujuk", partners.hash_password(SERVICE_PASSWORD)),
                key_a.user_entry(),
                key_b.user_entry(),
            ]
        )
    )
    server = EmbeddedNats(tmp_path / "nats", config_file=config).start()
    try:
        # Notify, as the service user: streams, each agency's durable consumer, the feeds.
        service = await nats.connect(f"nats://rujuk:{SERVICE_PASSWORD}@127.0.0.1:{server.port}")
        js = service.jetstream()
        await ensure_streams(js)
        for agency in ("puskesmas-a", "polres-b"):
            await partners.ensure_partner_consumer(js, agency)
            await partners.ensure_partner_consumer(js, agency)  # idempotent
            for n in range(2):
                await js.publish(
                    subjects.partner_outbound(agency, "referral.requested"),
                    f'{{"for": "{agency}", "n": {n}}}'.encode(),
                )

        # Without credentials, nobody gets in.
        with pytest.raises(Exception):  # noqa: B017, PT011 - nats-py raises its own errors
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)

        async with partner_connection(server.url, key_a) as (partner_a, errors):
            js_a = partner_a.jetstream()
            # A reads its own referrals from its durable consumer, and acknowledges them.
            feed = await js_a.pull_subscribe(
                subjects.partner_outbound_wildcard("puskesmas-a"),
                durable=partners.durable_name("puskesmas-a"),
                stream=subjects.PARTNER_STREAM,
            )
            received = await feed.fetch(2, timeout=5)
            assert [m.data for m in received] == [
                b'{"for": "puskesmas-a", "n": 0}',
                b'{"for": "puskesmas-a", "n": 1}',
            ]
            for message in received:
                await message.ack()

            # A publishes its own reply; JetStream stores it.
            ack = await js_a.publish(
                subjects.partner_inbound("puskesmas-a", "acknowledge"), b'{"reply": "own"}'
            )
            assert ack.stream == subjects.PARTNER_STREAM

            # A cannot subscribe to B's feed, nor to the whole partner tree, nor to B's inbox.
            await partner_a.subscribe(subjects.partner_outbound_wildcard("polres-b"))
            await wait_for_violation(errors, 'subscription to "rujuk.partner.polres-b.out.>"')
            await partner_a.subscribe("rujuk.partner.>")
            await wait_for_violation(errors, 'subscription to "rujuk.partner.>"')
            await partner_a.subscribe(f"{partners.inbox_prefix('polres-b')}.>")
            await wait_for_violation(errors, "_inbox_polres-b")

            # A cannot read B's durable consumer, nor make a consumer of its own on B's feed.
            with pytest.raises((NatsTimeoutError, TimeoutError)):
                await js_a.consumer_info(subjects.PARTNER_STREAM, "partner-polres-b", timeout=1)
            await wait_for_violation(errors, "$js.api.consumer.info.rujuk_partner.partner-polres-b")
            with pytest.raises((NatsTimeoutError, TimeoutError)):
                await partner_a.request(
                    f"$JS.API.CONSUMER.MSG.NEXT.{subjects.PARTNER_STREAM}.partner-polres-b",
                    b'{"batch": 1}',
                    timeout=1,
                )
            await wait_for_violation(errors, "msg.next.rujuk_partner.partner-polres-b")
            with pytest.raises((NatsTimeoutError, TimeoutError)):
                await js_a.pull_subscribe(
                    subjects.partner_outbound_wildcard("polres-b"),
                    durable="sneaky",
                    stream=subjects.PARTNER_STREAM,
                )
            await wait_for_violation(errors, "$js.api.consumer")

            # A cannot reply as B (neither through JetStream nor plain publish).
            await partner_a.publish(
                subjects.partner_inbound("polres-b", "acknowledge"), b'{"reply": "forged"}'
            )
            await partner_a.flush()
            await wait_for_violation(errors, 'publish to "rujuk.partner.polres-b.in.acknowledge"')
            # ...nor publish internal events.
            await partner_a.publish("rujuk.evt.referral.accepted", b"{}")
            await wait_for_violation(errors, 'publish to "rujuk.evt.referral.accepted"')

        # What JetStream holds: A's own reply, no forgery; B's feed untouched by A.
        replies = await js.subscribe(
            "rujuk.partner.*.in.>", stream=subjects.PARTNER_STREAM, ordered_consumer=True
        )
        first = await replies.next_msg(timeout=5)
        assert first.subject == "rujuk.partner.puskesmas-a.in.acknowledge"
        with pytest.raises(NatsTimeoutError):
            await replies.next_msg(timeout=0.5)
        info_b = await js.consumer_info(subjects.PARTNER_STREAM, "partner-polres-b")
        assert info_b.num_pending == 2
        assert info_b.delivered.consumer_seq == 0

        # And B reads its own feed with its own key.
        async with partner_connection(server.url, key_b) as (partner_b, _):
            feed_b = await partner_b.jetstream().pull_subscribe(
                subjects.partner_outbound_wildcard("polres-b"),
                durable=partners.durable_name("polres-b"),
                stream=subjects.PARTNER_STREAM,
            )
            assert len(await feed_b.fetch(2, timeout=5)) == 2
        await service.close()
    finally:
        server.stop()
