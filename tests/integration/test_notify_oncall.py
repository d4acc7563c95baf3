"""Paging the on-call list, on the real NATS and PostgreSQL: each round's page reaches each
contact once per channel (SMS gateway, SMTP, signed webhook with the acknowledgement code),
a redelivered round sends nothing, the next round carries the same code, a contact without an
address is reported failed, and a reply with the code acknowledges the alert on the bus while
bad replies get a clear 4xx and pass nothing on."""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext

from notify.bootstrap import create_app
from notify.settings import NotifySettings
from rujuk.receiver import WebhookReceiver
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import (
    DeliveryChannel,
    EscalationReason,
    EventPayload,
    OnCallAcknowledged,
    OnCallAckVia,
    OnCallContact,
    OnCallPaged,
    OnCallPageDelivered,
    OnCallPageFailed,
    Priority,
    ReferralAcknowledged,
    ReferralReplyRefused,
)
from rujuk_runtime.bus import event_headers
from tests.conftest import ProvisionedDatabase
from tests.integration.test_free_text import found_in, readable_rows
from tests.integration.test_notify_channels import Gateway, smtp_server
from tests.integration.test_notify_support import SIGNING_KEY

pytestmark = pytest.mark.integration

ALERT = "alert-3514-AB12CD34EF-01"
PIKET, KEPALA, NOBODY = "piket-uptppa-pasuruan", "kepala-dp3ap2kb-pasuruan", "piket-tanpa-alamat"
SMS, EMAIL, WEBHOOK = DeliveryChannel.SMS, DeliveryChannel.EMAIL, DeliveryChannel.WEBHOOK
TYPED = "Siap, saya tangani. Catatan pribadi CONTOH-TIDAK-DISIMPAN"  # must be kept nowhere
REPLIES = "/v1/oncall/replies"
PAGE_REPORTS = (OnCallPageDelivered, OnCallPageFailed)


def page(round_: int) -> OnCallPaged:
    return OnCallPaged(
        case_id="3514-AB12CD34EF",
        alert_id=ALERT,
        referral_id="3514-AB12CD34EF-01",
        agency_id="dp3ap2kb-pasuruan",
        priority=Priority.EMERGENCY,
        reason=EscalationReason.DEADLINE_MISSED,
        round=round_,
        rounds=3,
        next_round_at=datetime(2026, 11, 2, 3, 0, tzinfo=UTC) + timedelta(minutes=10 * round_),
        contacts=[
            OnCallContact(contact_id=PIKET, channels=[SMS, WEBHOOK]),
            OnCallContact(contact_id=KEPALA, channels=[SMS, EMAIL]),
            OnCallContact(contact_id=NOBODY, channels=[EMAIL]),
        ],
        sop_id="sop-3514",
        sop_version=1,
    )


def paged_event(round_: int) -> CloudEvent:
    """As routing makes it: the id derived from the alert and the round."""
    return make_event(page(round_), source="/rujuk/routing", event_id=f"{ALERT}-r{round_}")


async def publish(js: JetStreamContext, event: CloudEvent, message_id: str | None = None) -> None:
    headers = event_headers(event.id, None)
    if message_id is not None:  # past JetStream's duplicate check: notify's own is tested
        headers["Nats-Msg-Id"] = message_id
    await js.publish(OnCallPaged.subject(), event.to_bytes(), headers=headers)


async def next_events(
    subscription: JetStreamContext.PushSubscription,
    count: int,
    kinds: tuple[type[EventPayload], ...] = (EventPayload,),
) -> list[EventPayload]:
    """The next ``count`` events of these kinds on the subscription."""
    found = []
    async with asyncio.timeout(15):
        while len(found) < count:
            payload = parse_event((await subscription.next_msg(timeout=15)).data)[1]
            if isinstance(payload, kinds):
                found.append(payload)
    return found


def code_in(text: str) -> str:
    match = re.search(r"OK ([0-9A-Z]{8})", text)
    assert match is not None, text
    return match[1]


@pytest.fixture
async def partners_file(tmp_path: Path) -> Path:
    path = tmp_path / "partners.json"
    path.write_text(
        json.dumps(
            {
                PIKET: {"sms_number": "+62 800-0000-0101"},
                KEPALA: {
                    "sms_number": "+62 800-0000-0102",
                    "email": "kepala@dp3ap2kb.contoh.example",
                    "language": "en",
                },
            }
        )
    )
    return path


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hooks = WebhookReceiver(SIGNING_KEY)
    async with hooks.running():
        yield hooks


async def test_each_round_pages_each_contact_once_and_a_reply_acknowledges(
    clean_bus: str,
    database: ProvisionedDatabase,
    partners_file: Path,
    receiver: WebhookReceiver,
) -> None:
    gateway = Gateway()
    with smtp_server() as (mailbox, smtp_port):
        async with gateway.running():
            app = create_app(
                NotifySettings(
                    nats_url=clean_bus,
                    database_url=database.role_url("notify"),
                    webhook_signing_key=SIGNING_KEY.decode(),
                    webhook_base_url=receiver.base_url,
                    partners_file=partners_file,
                    smtp_host="127.0.0.1",
                    smtp_port=smtp_port,
                    smtp_starttls=False,
                    sms_gateway_url=f"http://127.0.0.1:{gateway.port}/send",
                    console_public_url="https://konsol.contoh.example",
                    oncall_repeat_reply_seconds=1.0,
                    poll_interval_seconds=30,  # new pages must wake the worker
                )
            )
            async with app.router.lifespan_context(app):
                connection = await nats.connect(clean_bus)
                js = connection.jetstream()
                reports = await js.subscribe("rujuk.evt.oncall.>", ordered_consumer=True)
                acks = await js.subscribe(OnCallAcknowledged.subject(), ordered_consumer=True)

                # Round 1: both contacts with an address paged; the one without reported.
                await publish(js, paged_event(1))
                first = await next_events(reports, 3, PAGE_REPORTS)
                # The same round again, past JetStream's duplicate check, then round 2: the
                # lanes keep order, so anything the repeat queued would go out before round 2.
                await publish(js, paged_event(1), message_id="redelivered")
                await publish(js, paged_event(2))
                second = await next_events(reports, 3, PAGE_REPORTS)
                refused = await page_is_no_referral(js)
                sent_sms = list(gateway.requests)
                sent_mail = list(mailbox.messages)
                hooks = list(receiver.pages)

                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
                    piket_code = code_in(
                        next(b["message"] for _, b in sent_sms if b["to"].endswith("0101"))
                    )
                    kepala_code = code_in(
                        next(b["message"] for _, b in sent_sms if b["to"].endswith("0102"))
                    )
                    answers = await reply_and_refuse(client, acks, piket_code, kepala_code)
                await connection.close()

    # Round 1 and round 2: delivered to each contact on its channels, once each.
    for round_, reported in ((1, first), (2, second)):
        delivered = {p.contact_id: p for p in reported if isinstance(p, OnCallPageDelivered)}
        assert set(delivered) == {PIKET, KEPALA}
        assert set(delivered[PIKET].channels) == {SMS, WEBHOOK}
        assert set(delivered[KEPALA].channels) == {SMS, EMAIL}
        assert {p.round for p in reported} == {round_}
        [failed] = [p for p in reported if isinstance(p, OnCallPageFailed)]
        assert failed.contact_id == NOBODY
        assert failed.attempts == 0
        assert "no email in NOTIFY_PARTNERS_FILE" in failed.reason
        assert f"'{NOBODY}' is not in NOTIFY_PARTNERS_FILE" in failed.reason

    # Exactly two SMS per round, two webhooks (piket), two e-mails (kepala): nothing twice.
    assert sorted(h["idempotency-key"] for h, _ in sent_sms) == sorted(
        f"{ALERT}-r{r}-{c}" for r in (1, 2) for c in (PIKET, KEPALA)
    )
    assert [h.webhook_id for h in hooks] == [f"{ALERT}-r1-{PIKET}", f"{ALERT}-r2-{PIKET}"]
    assert [h.event["id"] for h in hooks] == [f"{ALERT}-r1", f"{ALERT}-r2"]  # the CloudEvent
    assert [rcpts for rcpts, _ in sent_mail] == [["kepala@dp3ap2kb.contoh.example"]] * 2
    # The same code in every round and on every channel, one per contact.
    assert piket_code != kepala_code
    assert {code_in(b["message"]) for _, b in sent_sms if b["to"].endswith("0101")} == {piket_code}
    assert [h.ack_code for h in hooks] == [piket_code, piket_code]
    for _, mail in sent_mail:
        text = mail.get_payload(decode=True).decode()
        assert f"reply with your acknowledgement code: OK {kepala_code}" in text  # English
        assert "https://konsol.contoh.example/coordinator" in text
    assert " ".join(sent_mail[1][1]["Subject"].split()) == (  # unfolded
        "[rujuk] ON-CALL EMERGENCY: case 3514-AB12CD34EF unanswered (page 2 of 3)"
    )
    piket_sms = [b["message"] for _, b in sent_sms if b["to"].endswith("0101")]
    assert piket_sms[0].startswith("rujuk PIKET DARURAT, Kab. Pasuruan (3514): rujukan kasus")

    # A partner's reply naming a page as if it were a referral is refused.
    assert isinstance(refused, ReferralReplyRefused)
    assert "was not delivered to" in refused.reason

    # The replies: what the contacts were told, and what reached the bus.
    assert answers["accepted"]["status"] == "accepted"
    assert answers["repeat"]["status"] == "duplicate"
    assert answers["again"]["status"] == "accepted"
    assert [(a.by, a.via, a.channel) for a in answers["on the bus"]] == [
        (PIKET, OnCallAckVia.REPLY, SMS),
        (PIKET, OnCallAckVia.REPLY, None),  # paged on sms and webhook: which one is unknown
        (KEPALA, OnCallAckVia.REPLY, EMAIL),
    ]
    assert {a.alert_id for a in answers["on the bus"]} == {ALERT}

    # What the person typed is kept nowhere in notify's tables.
    assert (
        found_in([TYPED, "CONTOH-TIDAK-DISIMPAN"], *await readable_rows(database.admin_url)) == []
    )


async def page_is_no_referral(js: JetStreamContext) -> EventPayload:
    """A partner's reply (over NATS, as the contact's id) to a page's id: what it is told."""
    refusals = await js.subscribe(
        subjects.partner_outbound(PIKET, "reply.refused"),
        stream=subjects.PARTNER_STREAM,
        ordered_consumer=True,
    )
    reply = ReferralAcknowledged(
        case_id="3514-AB12CD34EF", referral_id=f"{ALERT}-r1-{PIKET}", agency_id=PIKET
    )
    await js.publish(
        subjects.partner_inbound(PIKET, "acknowledge"),
        make_event(reply, source=subjects.partner_source(PIKET)).to_bytes(),
    )
    return parse_event((await refusals.next_msg(timeout=15)).data)[1]


async def reply_and_refuse(
    client: httpx.AsyncClient,
    acks: JetStreamContext.PushSubscription,
    piket_code: str,
    kepala_code: str,
) -> dict[str, Any]:
    """Replies to the pages, good and bad; what came back and what reached the bus."""
    answers: dict[str, Any] = {}
    typed = f"{TYPED} ok {piket_code.lower()} terima kasih"
    accepted = await client.post(REPLIES, json={"text": typed, "channel": "sms"})
    assert accepted.status_code == 202, accepted.text
    answers["accepted"] = accepted.json()
    assert "Terima kasih" in accepted.json()["message"]
    assert "Thank you" in accepted.json()["message"]
    repeat = await client.post(REPLIES, json={"code": piket_code})  # within the window
    answers["repeat"] = repeat.json()

    # Bad replies: a clear 4xx each, nothing passed on.
    no_code = await client.post(REPLIES, json={"text": "terima kasih, saya tangani"})
    assert no_code.status_code == 422
    assert no_code.json()["detail"][0]["field"] == "text"
    assert "no acknowledgement code" in no_code.json()["detail"][0]["problem"]
    empty = await client.post(REPLIES, json={})
    assert empty.status_code == 422
    unknown = await client.post(REPLIES, json={"text": "OK 9ZZZ1111"})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "detail": "kode konfirmasi tidak dikenal / unknown acknowledgement code"
    }
    huge = await client.post(REPLIES, json={"text": f"OK {piket_code} " + "x" * 20_000})
    assert huge.status_code == 413
    not_json = await client.post(
        REPLIES, content=f"OK {piket_code}", headers={"content-type": "text/plain"}
    )
    assert not_json.status_code == 415
    broken = await client.post(
        REPLIES, content=b'{"text": "OK ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    extra = await client.post(REPLIES, json={"code": piket_code, "note": "free text"})
    assert extra.status_code == 422

    # Past the repeat window a reply counts again (the ledger records each).
    again = await client.post(REPLIES, json={"code": piket_code})
    deadline = asyncio.get_running_loop().time() + 10
    while again.json()["status"] == "duplicate" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        again = await client.post(REPLIES, json={"code": piket_code})
    answers["again"] = again.json()
    # Last, the other contact: had anything above been passed on, it would come before this.
    sentinel = await client.post(REPLIES, json={"text": f"ACK {kepala_code}", "channel": "email"})
    assert sentinel.status_code == 202
    answers["on the bus"] = await next_events(acks, 3)
    return answers
