"""Notify's bus door: `referral requested` in -> queued per channel for the delivery worker;
`on-call paged` in -> one page per contact queued on its channels (or reported failed at once);
partners' replies in over NATS (``rujuk.partner.<agency>.in.<reply>``) -> checked and staged
for routing, or refused on the partner's feed; routing's `reply refused` -> forwarded to the
partner."""

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
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE, CloudEvent
from rujuk_contracts.events import (
    DeliveryChannel,
    EventPayload,
    OnCallPaged,
    ReferralReplyRefused,
    ReferralRequested,
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
                body=event.to_bytes(),
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


class RefusalForwarder:
    """Routing refused a reply (not allowed in the lifecycle): tell the partner on its feed."""

    def __init__(self, js: Callable[[], JetStreamContext]) -> None:
        self._js = js

    async def on_reply_refused(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        if not isinstance(payload, ReferralReplyRefused):
            raise Rejected(f"expected a refused reply, got {event.type}")
        await self._js().publish(
            subjects.partner_outbound(payload.agency_id, REFUSED_EVENT),
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
            if new:
                self.stats.accepted += 1
                self._after_commit()
            else:
                self.stats.duplicates += 1
        except ReplyRefused as refused:
            self.stats.refused += 1
            original = original_id(message.data, stream_sequence(message))
            body, headers = refusal_message(agency_id, refused.reason, refused.reply, original)
            await js.publish(
                subjects.partner_outbound(agency_id, REFUSED_EVENT), body, headers=headers
            )
            free_text = carries_free_text(message.data)
            await park(js, SERVICE, subject=message.subject,
                       data=without_free_text(message.data) if free_text else message.data,
                       reason=f"reply refused: {refused.reason}",
                       message_id=original and f"{agency_id}:{original}",
                       consumer=consumer_name(message))  # fmt: skip
            if free_text:
                await erase_from_stream(js, message)
            log.warning("partner reply refused", agency_id=agency_id,
                        reason=refused.reason[:200])  # fmt: skip
        await message.ack()


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
