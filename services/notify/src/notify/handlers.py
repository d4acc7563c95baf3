"""Notify's bus door: `referral requested` in -> queued per channel for the delivery worker;
`on-call paged` in -> one page per contact queued on its channels (or reported failed at once);
partners' replies in over NATS (``rujuk.partner.<agency>.in.<reply>``) -> checked and staged
for routing, or refused on the partner's feed; routing's `reply refused` -> forwarded to the
partner. SOP proposals: `sop proposed` -> a notice queued to each asked agency, and
`proposal withdrawn` / `sop published` -> one to each agency told of the proposal; answers in
over NATS (``…in.sop_answer``) -> checked and staged for routing, or refused on the partner's
feed; routing's `sop answer refused` -> forwarded to the partner."""

import json
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from notify import store
from notify.directory import Directory
from notify.oncall import new_ack_code, no_channel_reason, page_failed, page_id
from notify.replies import (
    REFUSED_EVENT,
    REPLY_KINDS,
    Reply,
    ReplyRefused,
    agency_and_reply_of,
    carries_free_text,
    original_id,
    read_reply,
    refusal_problem,
    refused_reply,
    without_free_text,
)
from notify.sop_answers import REFUSED_EVENT as SOP_ANSWER_REFUSED_EVENT
from notify.sop_answers import (
    SopAnswerNotValid,
    accepted_sop_answer,
    read_sop_answer,
    refused_sop_answer,
)
from notify.sop_notices import notice_event, notice_key
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE, CloudEvent
from rujuk_contracts.events import (
    DeliveryChannel,
    EventPayload,
    OnCallPaged,
    ReferralReplyRefused,
    ReferralRequested,
    SopAnswerGiven,
    SopAnswerRefused,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
)
from rujuk_runtime.bus import consumer_name, event_headers, park
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.messages import stream_sequence
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import handling_traceparent

log = get_logger(__name__)

SERVICE = "notify"


class ReferralRequests:
    """Queues each requested referral on the channels its agency has and notify can use."""

    def __init__(self, directory: Directory, available: set[DeliveryChannel]) -> None:
        self._directory = directory
        self._available = available

    async def on_referrals_requested(
        self, conn: Connection, events: list[tuple[CloudEvent, EventPayload]]
    ) -> None:
        """Queue a batch's referrals, each on the channels its agency has, in one statement."""
        queue: list[tuple[store.Delivery, list[str]]] = []
        for event, payload in events:
            if not isinstance(payload, ReferralRequested):
                raise Rejected(f"expected a referral request, got {event.type}")
            channels = self._directory.channels_for(payload.agency_id, self._available)
            delivery = store.Delivery(
                referral_id=payload.referral_id,
                case_id=payload.case_id,
                agency_id=payload.agency_id,
                event_id=event.id,
                event_type=event.type,
                # as v1 was released: what rujuk's own services read since stays with them
                body=event.model_copy(update={"data": payload.released_data()}).to_bytes(),
                # each send hangs under notify's handling of the request, in its trace
                traceparent=handling_traceparent(event.id, event.traceparent),
                channels_done=[],
                attempts=0,
            )
            queue.append((delivery, [str(c) for c in channels]))
        await store.enqueue_many(conn, queue)


class OnCallPages:
    """Queues one round's page to each on-call contact, through the same delivery machinery
    as referrals (lanes, retries, breakers, leases), on the channels the SOP names for the
    contact that notify can use; never on the NATS feed. A contact with none is reported
    `page failed` at once."""

    def __init__(self, directory: Directory, available: set[DeliveryChannel]) -> None:
        self._directory = directory
        self._available = available

    async def on_paged(
        self, conn: Connection, events: list[tuple[CloudEvent, EventPayload]]
    ) -> None:
        queue: list[tuple[store.Delivery, list[str]]] = []
        failed: list[CloudEvent] = []
        for event, paged in events:
            if not isinstance(paged, OnCallPaged):
                raise Rejected(f"expected an on-call page, got {event.type}")
            traceparent = handling_traceparent(event.id, event.traceparent)
            plans: dict[str, list[str]] = {}
            for contact_id, wanted in _contacts_of(paged).items():
                usable, missing = self._directory.page_channels(contact_id, wanted, self._available)
                if not usable:
                    reason = no_channel_reason(contact_id, missing)
                    failed.append(page_failed(paged, contact_id, reason, 0, traceparent))
                    log.warning("on-call page cannot go out", alert_id=paged.alert_id,
                                contact_id=contact_id, reason=reason)  # fmt: skip
                    continue
                if missing:
                    log.warning("on-call page goes out on fewer channels", alert_id=paged.alert_id,
                                contact_id=contact_id, left_out=missing)  # fmt: skip
                plans[contact_id] = [str(c) for c in usable]
            await store.issue_ack_codes(
                conn,
                paged.alert_id,
                paged.case_id,
                {contact_id: (new_ack_code(), channels) for contact_id, channels in plans.items()},
            )
            for contact_id, channels in plans.items():
                delivery = store.Delivery(
                    referral_id=page_id(paged.alert_id, paged.round, contact_id),
                    case_id=paged.case_id,
                    agency_id=contact_id,  # the lane is (contact, channel)
                    event_id=event.id,
                    event_type=event.type,
                    body=event.to_bytes(),
                    traceparent=traceparent,
                    channels_done=[],
                    attempts=0,
                )
                queue.append((delivery, channels))
        await store.enqueue_many(conn, queue)
        await add_to_outbox(conn, *failed)


def _contacts_of(paged: OnCallPaged) -> dict[str, list[DeliveryChannel]]:
    """Each contact once, with its channels (a contact listed twice gets the channels of both)."""
    contacts: dict[str, list[DeliveryChannel]] = {}
    for contact in paged.contacts:
        channels = contacts.setdefault(contact.contact_id, [])
        channels += [c for c in contact.channels if c not in channels]
    return contacts


class SopNotices:
    """Queues the notices of a proposed SOP version: `sop proposed` to each asked agency;
    `proposal withdrawn` and `sop published` (of a proposal) to each agency told of it. On the
    agency's channels, through the machinery of referrals (``sop_notices``)."""

    def __init__(self, directory: Directory, available: set[DeliveryChannel]) -> None:
        self._directory = directory
        self._available = available

    async def on_proposed(self, conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
        if not isinstance(payload, SopProposed):
            raise Rejected(f"expected a proposed SOP version, got {event.type}")
        asked = [a.agency_id for a in payload.asked]
        await self._queue(conn, event, payload.proposal_id, asked)

    async def on_closed(self, conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
        """A proposal withdrawn, or published: the agencies told of it hear the end of it."""
        if not isinstance(payload, SopProposalWithdrawn | SopPublished):
            raise Rejected(f"expected a withdrawn or published SOP version, got {event.type}")
        if payload.proposal_id is None:  # published directly: nobody was asked
            return
        told = await store.sop_notice_agencies(conn, payload.proposal_id)
        await self._queue(conn, event, payload.proposal_id, told)

    async def _queue(
        self, conn: Connection, event: CloudEvent, proposal_id: str, agency_ids: list[str]
    ) -> None:
        traceparent = handling_traceparent(event.id, event.traceparent)
        queue: list[tuple[store.Delivery, list[str]]] = []
        for agency_id in agency_ids:
            own = notice_event(event, agency_id)
            delivery = store.Delivery(
                referral_id=notice_key(proposal_id, event, agency_id),
                case_id=proposal_id,  # what it is about (store.sop_notice_agencies)
                agency_id=agency_id,
                event_id=own.id,
                event_type=event.type,
                body=own.to_bytes(),
                traceparent=traceparent,
                channels_done=[],
                attempts=0,
            )
            channels = self._directory.channels_for(agency_id, self._available)
            queue.append((delivery, [str(c) for c in channels]))
        queued = await store.enqueue_many(conn, queue)
        log.info("sop notices queued", proposal_id=proposal_id, event_type=event.type,
                 agencies=agency_ids, queued=queued)  # fmt: skip


class RefusalForwarder:
    """Routing refused a reply (not allowed in the lifecycle) or an answer to a proposed SOP
    version (not asked, closed): tell the partner on its feed."""

    def __init__(self, js: Callable[[], JetStreamContext]) -> None:
        self._js = js

    async def on_reply_refused(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        if not isinstance(payload, ReferralReplyRefused):
            raise Rejected(f"expected a refused reply, got {event.type}")
        await self._forward(event, payload.agency_id, REFUSED_EVENT)

    async def on_sop_answer_refused(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        if not isinstance(payload, SopAnswerRefused):
            raise Rejected(f"expected a refused SOP answer, got {event.type}")
        await self._forward(event, payload.agency_id, SOP_ANSWER_REFUSED_EVENT)

    async def _forward(self, event: CloudEvent, agency_id: str, feed_event: str) -> None:
        await self._js().publish(
            subjects.partner_outbound(agency_id, feed_event),
            event.to_bytes(),
            headers={**event_headers(event.id, event.traceparent), "Content-Type": CONTENT_TYPE},
        )


def refusal_message(
    agency_id: str, reason: str, reply: Reply | None, original: str | None
) -> tuple[bytes, dict[str, str]]:
    """What the partner reads on ``…out.reply.refused``, and its headers."""
    if reply is not None:
        event = refused_reply(agency_id, reason, reply, original)
        return event.to_bytes(), event_headers(event.id, None)
    headers = {"Content-Type": "application/problem+json"}
    if original:
        headers["Nats-Msg-Id"] = f"refused:{agency_id}:{original}"
    return json.dumps(refusal_problem(reason, original)).encode(), headers


def sop_refusal_message(
    agency_id: str, reason: str, answer: SopAnswerGiven | None, original: str | None
) -> tuple[bytes, dict[str, str]]:
    """What the partner reads on ``…out.sop.answer_refused`` about an answer notify did not
    pass on, and its headers."""
    if answer is not None:
        event = refused_sop_answer(agency_id, reason, answer, original)
        return event.to_bytes(), event_headers(event.id, None)
    headers = {"Content-Type": "application/problem+json"}
    if original:
        headers["Nats-Msg-Id"] = f"sop-refused:{agency_id}:{original}"
    return json.dumps(refusal_problem(reason, original)).encode(), headers


@dataclass
class ReplyStats:
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0


class NatsReplies:
    """The durable consumer of ``rujuk.partner.*.in.>``: one message at a time, in order."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        js: Callable[[], JetStreamContext],
        after_commit: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._js = js
        self._after_commit = after_commit
        self.stats = ReplyStats()

    async def process(self, batch: list[Msg]) -> None:
        for message in batch:
            await self._one(message)

    async def _one(self, message: Msg) -> None:
        pool, js = self._pool(), self._js()
        try:
            agency_id, reply_token = agency_and_reply_of(message.subject)
            subjects.check_agency_id(agency_id)
        except ValueError as exc:
            await park(js, SERVICE, subject=message.subject, data=message.data,
                       reason=str(exc), message_id=None,
                       consumer=consumer_name(message))  # fmt: skip
            await message.ack()
            return
        if reply_token == subjects.SOP_ANSWER:
            await self._sop_answer(message, agency_id)
            await message.ack()
            return
        try:
            event, reply = read_reply(message.data)
            kind = REPLY_KINDS[type(reply)]
            if reply_token != kind.value:
                raise ReplyRefused(
                    f"this {kind.value} reply was sent on {message.subject}; "
                    f"send it on {subjects.partner_inbound(agency_id, kind.value)}",
                    reply,
                )
            async with pool.acquire() as conn, conn.transaction():
                _, new = await store.accept_reply(
                    conn, agency_id, reply, event.traceparent, source=event.source
                )
            self._count(new)
        except ReplyRefused as refused:
            original = original_id(message.data, stream_sequence(message))
            body, headers = refusal_message(agency_id, refused.reason, refused.reply, original)
            await self._refuse(message, agency_id, refused.reason, original, REFUSED_EVENT,
                               body, headers)  # fmt: skip
        await message.ack()

    async def _sop_answer(self, message: Msg, agency_id: str) -> None:
        """An answer to a proposed SOP version: staged for routing, or refused."""
        try:
            event, answer = read_sop_answer(message.data)
            internal = accepted_sop_answer(agency_id, event, answer)
            async with self._pool().acquire() as conn, conn.transaction():
                new = await store.stage_sop_answer(conn, internal)
            if new:
                log.info("sop answer passed on", agency_id=agency_id,
                         proposal_id=answer.proposal_id, decision=answer.decision.value,
                         event_id=internal.id)  # fmt: skip
            self._count(new)
        except SopAnswerNotValid as refused:
            original = original_id(message.data, stream_sequence(message))
            body, headers = sop_refusal_message(agency_id, refused.reason, refused.answer,
                                                original)  # fmt: skip
            await self._refuse(message, agency_id, refused.reason, original,
                               SOP_ANSWER_REFUSED_EVENT, body, headers)  # fmt: skip

    def _count(self, new: bool) -> None:
        if new:
            self.stats.accepted += 1
            self._after_commit()
        else:
            self.stats.duplicates += 1

    async def _refuse(
        self,
        message: Msg,
        agency_id: str,
        reason: str,
        original: str | None,
        feed_event: str,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        """Tell the partner why on its feed, and park the message (without free text)."""
        js = self._js()
        self.stats.refused += 1
        await js.publish(subjects.partner_outbound(agency_id, feed_event), body, headers=headers)
        free_text = carries_free_text(message.data)
        await park(js, SERVICE, subject=message.subject,
                   data=without_free_text(message.data) if free_text else message.data,
                   reason=f"reply refused: {reason}",
                   message_id=original and f"{agency_id}:{original}",
                   consumer=consumer_name(message))  # fmt: skip
        if free_text:
            await erase_from_stream(js, message)
        log.warning("partner reply refused", agency_id=agency_id, feed=feed_event,
                    reason=reason[:200])  # fmt: skip


async def erase_from_stream(js: JetStreamContext, message: Msg) -> None:
    """Erase a partner's refused message that carried free text from the partner stream
    (JetStream overwrites it), so that what a person typed there is not kept for ever. A
    failure is logged and the reply consumer goes on: it must not stall every partner."""
    sequence = stream_sequence(message)
    if sequence is None:
        return
    try:
        await js.delete_msg(subjects.PARTNER_STREAM, sequence)
    except Exception as exc:
        log.error("a refused reply with free text stays in the partner stream",
                  stream=subjects.PARTNER_STREAM, sequence=sequence,
                  error=type(exc).__name__)  # fmt: skip
