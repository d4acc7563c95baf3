"""Partners' replies over NATS and HTTP: valid ones become internal events once; invalid ones
get a clear error, are parked, and change nothing."""

import asyncio
import contextlib
import json
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from intake.auth import new_secret
from notify.bootstrap import create_app
from notify.replies import FREE_TEXT_REMOVED, reply_event_id
from notify.settings import NotifySettings
from rujuk.samples import INVENTED_NIK
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import (
    DeclineReason,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralDeclined,
    ReferralDelivered,
    ReferralReplyRefused,
    ReplyKind,
    Role,
)
from rujuk_runtime.bus import DLQ_REASON_HEADER, event_headers
from tests.integration.access_support import announce_token, bearer, eventually
from tests.integration.test_free_text import readable_rows
from tests.integration.test_notify_support import SIGNING_KEY, publish_referral, referral

pytestmark = pytest.mark.integration


async def next_or_none(subscription: JetStreamContext.PushSubscription, wait: float) -> Msg | None:
    try:
        return await subscription.next_msg(timeout=wait)
    except TimeoutError:  # nats-py raises its own, or asyncio's when the deadline passes first
        return None


async def partner_publish(js: JetStreamContext, agency: str, reply: str, body: bytes) -> None:
    await js.publish(subjects.partner_inbound(agency, reply), body)


def notify_app(nats_url: str, database_url: str) -> FastAPI:
    """Notify as its process builds it, polling its sends every 0.2 s."""
    return create_app(
        NotifySettings(
            nats_url=nats_url,
            database_url=database_url,
            webhook_signing_key=SIGNING_KEY.decode(),
            poll_interval_seconds=0.2,
        )
    )


def reply_bytes(payload: Any, source: str | None = None) -> bytes:
    """A partner's reply as it should send it: source ``/rujuk/partners/<its agency>``."""
    source = source or subjects.partner_source(payload.agency_id)
    return make_event(payload, source=source).to_bytes()


async def test_replies_over_nats_and_http(clean_bus: str, database_url: str) -> None:
    app = notify_app(clean_bus, database_url)
    async with app.router.lifespan_context(app):
        connection = await nats.connect(clean_bus)
        js = connection.jetstream()
        internal = await js.subscribe("rujuk.evt.referral.>", ordered_consumer=True)
        refusals = await js.subscribe(
            "rujuk.partner.*.out.reply.refused", stream=subjects.PARTNER_STREAM,
            ordered_consumer=True,
        )  # fmt: skip
        parked = await js.subscribe(subjects.dead_letter("notify"), ordered_consumer=True)

        to_a, to_b = referral("rsud-a", 1), referral("polres-b", 2, case="ZZ98YY76XX")
        await publish_referral(js, to_a)
        await publish_referral(js, to_b)
        delivered = set()
        async with asyncio.timeout(10):
            while len(delivered) < 2:
                _, payload = parse_event((await internal.next_msg(timeout=10)).data)
                if isinstance(payload, ReferralDelivered):
                    delivered.add(payload.referral_id)

        def ack(of: Any, agency: str) -> ReferralAcknowledged:
            return ReferralAcknowledged(
                case_id=of.case_id, referral_id=of.referral_id, agency_id=agency
            )

        # NATS: a valid reply, then the partner's retry of it.
        valid = reply_bytes(ack(to_a, "rsud-a"))
        await partner_publish(js, "rsud-a", "acknowledge", valid)
        await partner_publish(js, "rsud-a", "acknowledge", reply_bytes(ack(to_a, "rsud-a")))
        message = await internal.next_msg(timeout=10)
        event, payload = parse_event(message.data)
        assert isinstance(payload, ReferralAcknowledged)
        assert payload.referral_id == to_a.referral_id
        assert event.source == "/rujuk/partners/rsud-a"
        assert event.id == reply_event_id("rsud-a", to_a.referral_id, ReplyKind.ACKNOWLEDGE)

        # NATS: invalid replies, each answered on the partner's own feed and parked.
        invalid: list[tuple[str, bytes, str]] = [
            ("acknowledge", reply_bytes(ack(to_b, "polres-b")), "is not 'rsud-a'"),
            ("acknowledge", reply_bytes(ack(to_b, "rsud-a")), "was not delivered to 'rsud-a'"),
            ("accept", b"not json at all", "not a valid reply"),
            (
                "acknowledge",
                reply_bytes(ack(to_a, "rsud-a"), source="/partners/rsud-a"),
                "must be '/rujuk/partners/rsud-a'",
            ),
            (
                "acknowledge",
                reply_bytes(
                    ReferralAccepted(
                        case_id=to_a.case_id, referral_id=to_a.referral_id, agency_id="rsud-a"
                    )
                ),
                "send it on rujuk.partner.rsud-a.in.accept",
            ),
        ]
        for reply, body, _ in invalid:
            await partner_publish(js, "rsud-a", reply, body)
        for _, body, reason in invalid:
            refused = await refusals.next_msg(timeout=10)
            assert refused.subject == "rujuk.partner.rsud-a.out.reply.refused"
            if body.startswith(b"not json"):
                problem = json.loads(refused.data)
                assert problem["type"] == "urn:rujuk:problem:reply-refused"
                assert reason in problem["detail"]
            else:
                _, refusal = parse_event(refused.data)
                assert isinstance(refusal, ReferralReplyRefused)
                assert refusal.agency_id == "rsud-a"
                assert reason in refusal.reason
            dead = await parked.next_msg(timeout=10)
            assert dead.data == body
            assert dead.headers is not None
            assert reason in dead.headers[DLQ_REASON_HEADER]

        # HTTP: the partner's token, issued by intake, says who it is.
        _, token_b = await announce_token(clean_bus, Role.PARTNER, "polres-b")
        _, coordinator = await announce_token(clean_bus, Role.COORDINATOR)
        url = f"/v1/referrals/{to_b.referral_id}/replies"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
            as_b = bearer(token_b)
            # Once the token is projected, a decline without a reason is refused, not the token.
            await eventually(lambda: client.post(url, json={"reply": "decline"}, headers=as_b), 422)
            assert (await client.post(url, json={"reply": "accept"})).status_code == 401
            forged = bearer(new_secret())
            assert (
                await client.post(url, json={"reply": "accept"}, headers=forged)
            ).status_code == 401
            # The coordinator's token is projected on its own time too; then: not a partner.
            not_a_partner = await eventually(
                lambda: client.post(url, json={"reply": "accept"}, headers=bearer(coordinator)),
                403,
            )
            assert "partner" in not_a_partner.json()["detail"]
            first = await client.post(url, json={"reply": "accept"}, headers=as_b)
            assert first.status_code == 202, first.text
            assert first.json()["status"] == "accepted"
            again = await client.post(url, json={"reply": "accept"}, headers=as_b)
            assert again.json() == {**first.json(), "status": "duplicate"}
            not_theirs = await client.post(
                f"/v1/referrals/{to_a.referral_id}/replies", json={"reply": "accept"}, headers=as_b
            )
            assert not_theirs.status_code == 404
            assert "was not delivered to 'polres-b'" in not_theirs.json()["detail"]
            no_reason = await client.post(url, json={"reply": "decline"}, headers=as_b)
            assert no_reason.status_code == 422
            assert no_reason.json()["detail"] == "a decline needs a reason"
            unknown = await client.post(url, json={"reply": "ignore"}, headers=as_b)
            assert unknown.status_code == 422

            # The referral as FHIR: the Task follows the reply notify passed on.
            fhir = await client.get(f"/v1/referrals/{to_b.referral_id}/fhir", headers=as_b)
            assert fhir.status_code == 200, fhir.text
            assert fhir.headers["content-type"] == "application/fhir+json"
            bundle = Bundle.model_validate(fhir.json())
            request, task = (entry.resource for entry in bundle.entry)
            assert isinstance(request, ServiceRequest)
            assert isinstance(task, Task)
            assert (request.status, task.status) == ("active", "accepted")
            assert task.for_fhir.identifier.value == to_b.case_id
            other = await client.get(f"/v1/referrals/{to_a.referral_id}/fhir", headers=as_b)
            assert other.status_code == 404

        message = await internal.next_msg(timeout=10)
        event, payload = parse_event(message.data)
        assert isinstance(payload, ReferralAccepted)
        assert (payload.agency_id, event.source) == ("polres-b", "/rujuk/partners/polres-b")
        assert await next_or_none(internal, 0.5) is None  # nothing else: retries were no-ops

        # Routing refuses a reply its lifecycle does not allow: the partner hears it too.
        routing_says = make_event(
            ReferralReplyRefused(
                case_id=to_b.case_id, referral_id=to_b.referral_id, agency_id="polres-b",
                reply=ReplyKind.COMPLETE, reason="completed before accepted",
            ),
            source="/rujuk/routing",
        )  # fmt: skip
        await js.publish(
            ReferralReplyRefused.subject(),
            routing_says.to_bytes(),
            headers=event_headers(routing_says.id, None),
        )
        forwarded = await refusals.next_msg(timeout=10)
        assert forwarded.subject == "rujuk.partner.polres-b.out.reply.refused"
        assert parse_event(forwarded.data)[0].id == routing_says.id
        await connection.close()


TYPED = f"CONTOH Siti Rekaan, NIK {INVENTED_NIK}, HP +62 800 5555 0027"  # invented


async def test_a_decline_with_free_text_is_refused_parked_without_it_and_erased(
    clean_bus: str, database_url: str
) -> None:
    """Issue 18: a tester typed a NIK and a phone number into a decline's note. Over NATS the
    reply is refused on the partner's feed, parked without the text, and the partner's own
    message is erased from the stream; over HTTP it is a 422 naming `note`. Nothing reaches
    routing, and the text is in no stream and no row. A decline naming a note at intake by
    `note_ref` goes through, carrying the id only."""
    app = notify_app(clean_bus, database_url)
    async with app.router.lifespan_context(app):
        connection = await nats.connect(clean_bus)
        js = connection.jetstream()
        declines = await js.subscribe(ReferralDeclined.subject(), ordered_consumer=True)
        delivered = await js.subscribe(ReferralDelivered.subject(), ordered_consumer=True)
        refusals = await js.subscribe(
            "rujuk.partner.rsud-a.out.reply.refused", stream=subjects.PARTNER_STREAM,
            ordered_consumer=True,
        )  # fmt: skip
        parked = await js.subscribe(subjects.dead_letter("notify"), ordered_consumer=True)
        to_a = referral("rsud-a", 1)
        await publish_referral(js, to_a)
        await delivered.next_msg(timeout=10)

        def decline(**fields: Any) -> ReferralDeclined:
            return ReferralDeclined(
                case_id=to_a.case_id,
                referral_id=to_a.referral_id,
                agency_id="rsud-a",
                reason=DeclineReason.OTHER,
                **fields,
            )

        # NATS
        sent = await js.publish(
            subjects.partner_inbound("rsud-a", "decline"), reply_bytes(decline(note=TYPED))
        )
        _, refusal = parse_event((await refusals.next_msg(timeout=10)).data)
        assert isinstance(refusal, ReferralReplyRefused)
        assert "note_ref" in refusal.reason
        dead = await parked.next_msg(timeout=10)
        assert TYPED.encode() not in dead.data
        assert json.loads(dead.data)["data"]["note"] == FREE_TEXT_REMOVED
        assert dead.headers is not None
        assert "note" in dead.headers[DLQ_REASON_HEADER]
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the partner's own message is erased from the stream
            try:
                await js.get_msg(subjects.PARTNER_STREAM, sent.seq)
            except nats.js.errors.NotFoundError:
                break
            assert asyncio.get_running_loop().time() < deadline, "still in the partner stream"
            await asyncio.sleep(0.1)

        # HTTP
        _, token = await announce_token(clean_bus, Role.PARTNER, "rsud-a")
        url = f"/v1/referrals/{to_a.referral_id}/replies"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
            body = {"reply": "decline", "reason": "other", "note": TYPED}
            refused = await eventually(lambda: client.post(url, json=body, headers=bearer(token)),
                                       422)  # fmt: skip
            assert refused.json()["detail"][0]["field"] == "note"
            assert "note_ref" in refused.json()["detail"][0]["problem"]
            assert TYPED not in refused.text
            assert await next_or_none(declines, 0.5) is None  # nothing reached routing

            note_ref = "note-" + "9b" * 16
            fine = await client.post(
                url, json={"reply": "decline", "reason": "other", "note_ref": note_ref},
                headers=bearer(token),
            )  # fmt: skip
            assert fine.status_code == 202, fine.text
        _, passed_on = parse_event((await declines.next_msg(timeout=10)).data)
        assert isinstance(passed_on, ReferralDeclined)
        assert (passed_on.note_ref, passed_on.note) == (note_ref, None)

        everything: list[bytes] = []
        for stream in (subjects.PARTNER_STREAM, subjects.DLQ_STREAM, subjects.EVENTS_STREAM):
            info = await js.stream_info(stream)
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    everything.append((await js.get_msg(stream, seq)).data or b"")
        await connection.close()
    assert everything
    assert [m for m in everything if TYPED.encode() in m] == []
    assert [v for v in await readable_rows(database_url) if _has(v, TYPED)] == []


def _has(value: str | bytes, text: str) -> bool:
    return (text.encode() if isinstance(value, bytes) else text) in value  # type: ignore[operator]
