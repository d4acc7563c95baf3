"""Agencies asked to sign a proposed SOP version off hear of it through notify (their feed,
webhook and SMS; nobody else does) and answer on NATS: routing records a valid answer, and a
malformed one, one from the wrong source or from an agency not asked is refused with the
reason on that agency's feed while the consumers go on; the ledger keeps it all."""

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from audit.bootstrap import create_runtime as create_audit
from audit.cli import case_history
from audit.settings import AuditSettings
from notify.bootstrap import build_notify
from notify.replies import FREE_TEXT_REMOVED
from notify.settings import NotifySettings
from routing.bootstrap import create_app as create_routing
from routing.settings import RoutingSettings
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import (
    ObjectionReason,
    Role,
    SopAnswerGiven,
    SopAnswerRefusal,
    SopAnswerRefused,
    SopDecision,
    SopProposed,
    SopPublished,
)
from rujuk_runtime.bus import DLQ_REASON_HEADER, event_headers
from tests.integration.access_support import announce_token, bearer, eventually
from tests.integration.test_notify_channels import Gateway
from tests.integration.test_notify_support import SIGNING_KEY
from tests.integration.test_routing_proposals import V2, YAML, Clock

pytestmark = pytest.mark.integration

UPT, LBH = "uptppa-probolinggo", "lbh-probolinggo"  # asked: V2 shortens their deadlines
POLICE = "polres-probolinggo-ppa"  # in the directory, not asked


class Feeds:
    """Every partner's feed, as an operator reads the partner stream."""

    def __init__(self, subscription: JetStreamContext.PushSubscription) -> None:
        self._subscription = subscription
        self.messages: list[Msg] = []

    async def until(self, done: Callable[["Feeds"], bool], timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                with contextlib.suppress(nats.errors.TimeoutError):
                    self.messages.append(await self._subscription.next_msg(timeout=0.5))

    def of(self, agency_id: str, event: str) -> list[Msg]:
        subject = subjects.partner_outbound(agency_id, event)
        return [m for m in self.messages if m.subject == subject]

    def agencies_told(self, event: str) -> set[str]:
        return {m.subject.split(".")[2] for m in self.messages if m.subject.endswith(event)}


def answer(
    proposal: dict[str, Any],
    agency_id: str,
    reason: ObjectionReason | None = None,
    *,
    source: str | None = None,
    event_id: str | None = None,
) -> bytes:
    """An agency's answer as its client sends it."""
    given = SopAnswerGiven(
        proposal_id=proposal["proposal_id"],
        sop_id=proposal["sop_id"],
        district_code=proposal["district_code"],
        sop_version=proposal["version"],
        agency_id=agency_id,
        decision=SopDecision.AGREE if reason is None else SopDecision.OBJECT,
        reason=reason,
    )
    source = source or subjects.partner_source(agency_id)
    return make_event(given, source=source, event_id=event_id).to_bytes()


async def send(js: JetStreamContext, agency_id: str, body: bytes) -> None:
    document = json.loads(body) if body.startswith(b"{") else {}
    headers = event_headers(document["id"], None) if "id" in document else None
    await js.publish(subjects.partner_inbound(agency_id, subjects.SOP_ANSWER), body,
                     headers=headers)  # fmt: skip


def refusal_on(feeds: Feeds, agency_id: str) -> list[SopAnswerRefused]:
    found = []
    for message in feeds.of(agency_id, "sop.answer_refused"):
        if message.headers and message.headers.get("Content-Type") == "application/problem+json":
            continue
        refused = parse_event(message.data)[1]
        assert isinstance(refused, SopAnswerRefused)
        found.append(refused)
    return found


async def test_asked_agencies_hear_of_a_proposal_and_answer_it_on_nats(
    clean_bus: str, database_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    routing = create_routing(
        RoutingSettings(nats_url=clean_bus, database_url=database_url), clock=clock
    )
    webhooks, sms = Gateway(), Gateway()
    partners_file = tmp_path / "partners.json"
    partners_file.write_text(json.dumps({UPT: {"sms_number": "+620000000000"}}))
    notify = build_notify(
        NotifySettings(
            nats_url=clean_bus,
            database_url=database_url,
            webhook_signing_key=SIGNING_KEY.decode(),
            webhook_base_url=f"http://127.0.0.1:{webhooks.port}/webhooks",
            partners_file=partners_file,
            sms_gateway_url=f"http://127.0.0.1:{sms.port}/send",
            poll_interval_seconds=0.2,
            routing_public_url="https://routing.rujuk.example",
        )
    )
    audit = create_audit(AuditSettings(nats_url=clean_bus, database_url=database_url))
    transport = httpx.ASGITransport(app=routing)
    async with (
        webhooks.running(),
        sms.running(),
        routing.router.lifespan_context(routing),
        notify.runtime.running(),
        audit.running(),
        httpx.AsyncClient(transport=transport, base_url="http://routing") as http,
    ):
        _, coordinator = await announce_token(clean_bus, Role.COORDINATOR)
        http.headers.update(bearer(coordinator))
        await eventually(lambda: http.get("/v1/sop-proposals"), 200)
        connection = await nats.connect(clean_bus)
        js = connection.jetstream()
        feeds = Feeds(
            await js.subscribe(
                "rujuk.partner.*.out.>", stream=subjects.PARTNER_STREAM, ordered_consumer=True
            )
        )
        parked = await js.subscribe(subjects.dead_letter("notify"), ordered_consumer=True)

        created = await http.post("/v1/sop-proposals", content=V2, headers=YAML)
        assert created.status_code == 201, created.text
        proposal = created.json()
        pid = proposal["proposal_id"]

        # Each asked agency, and only they, on the feed, the webhook and (UPT has one) SMS.
        await feeds.until(lambda f: f.agencies_told("sop.proposed") == {UPT, LBH})
        ids = set()
        for agency in (UPT, LBH):
            [message] = feeds.of(agency, "sop.proposed")
            event, proposed = parse_event(message.data)
            assert isinstance(proposed, SopProposed)
            assert proposed.proposal_id == pid
            assert message.headers is not None
            assert message.headers["Nats-Msg-Id"] == event.id
            ids.add(event.id)
        assert len(ids) == 2  # an id per agency: one feed message each
        async with asyncio.timeout(10):
            while len(webhooks.requests) < 2 or not sms.requests:
                await asyncio.sleep(0.05)
        assert {headers["webhook-id"] for headers, _ in webhooks.requests} == ids
        [(_, text)] = sms.requests
        assert text["to"] == "+620000000000"
        assert "SOP 3513 v2 diusulkan; mohon persetujuan Anda" in text["message"]
        assert "SOP 3513 v2 proposed; your sign-off is asked" in text["message"]
        assert pid in text["message"]

        # Answers on NATS: UPT agrees (and its client sends it twice), LBH objects.
        agreement = answer(proposal, UPT, event_id=str(uuid.uuid4()))
        await send(js, UPT, agreement)
        await send(js, UPT, agreement)
        await send(js, LBH, answer(proposal, LBH, ObjectionReason.DEADLINE_UNACHIEVABLE))

        def standing_is(agreed: list[str], objected: list[str]) -> Callable[[], Any]:
            async def check() -> httpx.Response:  # 200 once the answers stand so
                response = await http.get(f"/v1/sop-proposals/{pid}")
                body = response.json()
                ok = body["agreed"] == agreed and [o["agency_id"] for o in body["objected"]] == (
                    objected
                )
                return response if ok else httpx.Response(425)

            return check

        standing = (await eventually(standing_is([UPT], [LBH]), 200)).json()
        vias = {a["agency_id"]: a["answer"]["via"] for a in standing["asked"]}
        assert vias == {UPT: "nats", LBH: "nats"}
        assert standing["objected"] == [{"agency_id": LBH, "reason": "deadline_unachievable"}]

        # Refused: an agency not asked, the wrong source, an unreadable message, free text;
        # each on the sender's own feed, with the reason, and parked when notify refused it.
        await send(js, POLICE, answer(proposal, POLICE))
        await send(js, UPT, answer(proposal, UPT, source="/partners/uptppa-probolinggo"))
        await send(js, LBH, b"not json at all")
        typed = json.loads(answer(proposal, LBH, ObjectionReason.OTHER))
        typed["data"]["note"] = "CONTOH kami keberatan"  # free text: refused, not kept
        await send(js, LBH, json.dumps(typed).encode())
        await feeds.until(
            lambda f: (
                bool(refusal_on(f, POLICE) and refusal_on(f, UPT))
                and len(f.of(LBH, "sop.answer_refused")) == 2
            )
        )
        [not_asked] = refusal_on(feeds, POLICE)
        assert not_asked.refusal is SopAnswerRefusal.NOT_ASKED
        assert "tidak meminta persetujuan" in not_asked.reason
        assert "does not ask polres-probolinggo-ppa" in not_asked.reason
        [wrong_source] = refusal_on(feeds, UPT)
        assert wrong_source.refusal is SopAnswerRefusal.NOT_VALID
        assert "must be '/rujuk/partners/uptppa-probolinggo'" in wrong_source.reason
        unreadable, with_text = feeds.of(LBH, "sop.answer_refused")
        assert "not a valid SOP answer: body is not JSON" in json.loads(unreadable.data)["detail"]
        assert "note: Extra inputs are not permitted" in json.loads(with_text.data)["detail"]
        dead = [await parked.next_msg(timeout=10) for _ in range(3)]
        reasons = [message.headers or {} for message in dead]
        assert "must be '/rujuk/partners/uptppa-probolinggo'" in reasons[0][DLQ_REASON_HEADER]
        assert "not a valid SOP answer" in reasons[1][DLQ_REASON_HEADER]
        assert json.loads(dead[2].data)["data"]["note"] == FREE_TEXT_REMOVED
        assert b"CONTOH" not in dead[2].data
        assert not feeds.of(POLICE, "sop.proposed")

        # ...and both consumers go on: LBH changes its mind.
        await send(js, LBH, answer(proposal, LBH))
        await eventually(standing_is([LBH, UPT], []), 200)

        # Published: the agencies told of it hear so; a late answer is refused.
        effective = clock() + timedelta(hours=1)
        published = await http.post(
            f"/v1/sop-proposals/{pid}/publish", json={"effective_at": effective.isoformat()}
        )
        assert published.status_code == 200, published.text
        await feeds.until(lambda f: f.agencies_told("sop.published") == {UPT, LBH})
        notice = parse_event(feeds.of(UPT, "sop.published")[0].data)[1]
        assert isinstance(notice, SopPublished)
        assert notice.proposal_id == pid
        await send(js, UPT, answer(proposal, UPT))
        await feeds.until(lambda f: len(refusal_on(f, UPT)) == 2)
        assert refusal_on(feeds, UPT)[1].refusal is SopAnswerRefusal.PROPOSAL_CLOSED
        await connection.close()

        # The ledger: each answer as received and as recorded, the refusals, and UPT's
        # repeated message once (notify's and routing's events interleave: order aside).
        def story(entries: list[Any]) -> list[tuple[str, str]]:
            kinds = []
            for entry in entries:
                event = entry.cloud_event()
                kind = entry.event_type.split(".")[3]
                if kind in ("answer_given", "signed_off", "objected", "answer_refused"):
                    kinds.append((kind, event["data"]["agency_id"]))
            return kinds

        expected = [
            ("answer_given", UPT),
            ("signed_off", UPT),
            ("answer_given", LBH),
            ("objected", LBH),
            ("answer_given", POLICE),
            ("answer_refused", POLICE),
            ("answer_given", LBH),
            ("signed_off", LBH),
            ("answer_given", UPT),
            ("answer_refused", UPT),
        ]
        deadline = asyncio.get_running_loop().time() + 20
        while sorted(
            found := story(await case_history(database_url, proposal["sop_id"]))
        ) != sorted(expected):
            assert asyncio.get_running_loop().time() < deadline, found
            await asyncio.sleep(0.2)
