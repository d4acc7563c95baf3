"""Partners' replies, over NATS (``rujuk.partner.<agency>.in.<reply>``) and over HTTP.

Notify checks what only it can check and hands the rest to routing:

- the message is a well-formed CloudEvent of a reply type (acknowledged, accepted, declined,
  completed), and on NATS the subject's last token names the same reply;
- the agency in the payload is the agency the subject (or the partner's token, issued by
  intake) belongs to;
- the referral is one notify delivered to that agency (on at least one channel), for that case.

A valid reply is republished as an internal event (source ``/rujuk/partners/<agency>``) through
notify's outbox; its id is derived from (agency, referral, reply), so a partner's retry, on
either path, is a no-op. Whether the reply is allowed in the referral's lifecycle is routing's
call (it publishes ``referral.reply_refused``, which notify forwards to the partner).

An invalid reply changes nothing: the partner gets the reason on its own feed,
``rujuk.partner.<agency>.out.reply.refused`` (a ``ReferralReplyRefused`` CloudEvent when the
reply was readable, else an ``application/problem+json`` document), and the message is parked
on ``rujuk.dlq.notify`` with the reason.
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from notify import store
from rujuk_contracts import make_event, subjects
from rujuk_contracts.envelope import CONTENT_TYPE, CloudEvent, EventError, parse_event
from rujuk_contracts.events import (
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralReplyRefused,
    ReplyKind,
)
from rujuk_runtime.bus import consumer_name, event_headers, park
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox

log = get_logger(__name__)

SERVICE = "notify"
REPLY_ID_NAMESPACE = uuid.UUID("0b7e3c52-8f0e-4c55-9a54-4f1f6a2d7c31")
REFUSED_EVENT = "reply.refused"
PROBLEM_TYPE = "urn:rujuk:problem:reply-refused"

Reply = ReferralAcknowledged | ReferralAccepted | ReferralDeclined | ReferralCompleted
REPLY_KINDS: dict[type[Reply], ReplyKind] = {
    ReferralAcknowledged: ReplyKind.ACKNOWLEDGE,
    ReferralAccepted: ReplyKind.ACCEPT,
    ReferralDeclined: ReplyKind.DECLINE,
    ReferralCompleted: ReplyKind.COMPLETE,
}


class ReplyRefused(Exception):
    def __init__(self, reason: str, reply: Reply | None = None, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply
        self.status = status


def reply_event_id(agency_id: str, referral_id: str, kind: ReplyKind) -> str:
    return str(uuid.uuid5(REPLY_ID_NAMESPACE, f"{agency_id}:{referral_id}:{kind.value}"))


def read_reply(raw: bytes) -> tuple[CloudEvent, Reply]:
    try:
        event, payload = parse_event(raw)
    except EventError as exc:
        raise ReplyRefused(f"not a valid reply: {exc}") from exc
    if not isinstance(
        payload, ReferralAcknowledged | ReferralAccepted | ReferralDeclined | ReferralCompleted
    ):
        raise ReplyRefused(f"{event.type} is not a partner reply")
    return event, payload


async def accept_reply(
    conn: Connection, agency_id: str, reply: Reply, traceparent: str | None
) -> tuple[str, bool]:
    """Check the reply against what notify delivered; stage the internal event.

    Returns the internal event id and whether it is new (False: a retry, nothing staged)."""
    if reply.agency_id != agency_id:
        raise ReplyRefused(
            f"agency {reply.agency_id!r} in the reply is not {agency_id!r}, the agency it "
            "came from",
            reply,
            status=403,
        )
    delivered = await store.delivered_to(conn, reply.referral_id)
    if delivered is None or delivered[1] != agency_id:
        raise ReplyRefused(
            f"referral {reply.referral_id!r} was not delivered to {agency_id!r}", reply, 404
        )
    if delivered[0] != reply.case_id:
        raise ReplyRefused(
            f"referral {reply.referral_id!r} is not about case {reply.case_id!r}", reply, 422
        )
    kind = REPLY_KINDS[type(reply)]
    event_id = reply_event_id(agency_id, reply.referral_id, kind)
    new = await conn.fetchval(
        "INSERT INTO processed_events (event_id, event_type) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        reply.event_type(),
    )
    if not new:
        return event_id, False
    event = make_event(
        reply, source=f"/rujuk/partners/{agency_id}", traceparent=traceparent, event_id=event_id
    )
    await add_to_outbox(conn, event)
    log.info("partner reply accepted", case_id=reply.case_id, referral_id=reply.referral_id,
             agency_id=agency_id, reply=kind.value)  # fmt: skip
    return event_id, True


def refusal_message(
    agency_id: str, reason: str, reply: Reply | None, original_id: str | None
) -> tuple[bytes, dict[str, str]]:
    """What the partner reads on ``…out.reply.refused``."""
    if reply is not None:
        kind = REPLY_KINDS[type(reply)]
        refused = ReferralReplyRefused(
            case_id=reply.case_id,
            referral_id=reply.referral_id,
            agency_id=agency_id,
            reply=kind,
            reason=reason[:300],
        )
        event_id = str(uuid.uuid5(REPLY_ID_NAMESPACE, f"refused:{agency_id}:{original_id}"))
        event = make_event(refused, source="/rujuk/notify", event_id=event_id)
        return event.to_bytes(), event_headers(event.id, None)
    problem = {
        "type": PROBLEM_TYPE,
        "title": "Balasan ditolak / reply refused",
        "detail": reason[:500],
        "reply_id": original_id,
    }
    headers = {"Content-Type": "application/problem+json"}
    if original_id:
        headers["Nats-Msg-Id"] = f"refused:{agency_id}:{original_id}"
    return json.dumps(problem).encode(), headers


def _agency_and_reply_of(subject: str) -> tuple[str, str]:
    parts = subject.split(".")  # rujuk.partner.<agency>.in.<reply...>
    if len(parts) < 5 or parts[:2] != [subjects.PREFIX, "partner"] or parts[3] != "in":
        raise ValueError(f"not a partner reply subject: {subject}")
    return parts[2], ".".join(parts[4:])


def _original_id(raw: bytes, message: Msg) -> str | None:
    try:
        document = json.loads(raw)
        if isinstance(document, dict) and isinstance(document.get("id"), str):
            return str(document["id"])[:64]
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    try:
        return f"seq-{message.metadata.sequence.stream}"
    except Exception:
        return None


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
            agency_id, reply_token = _agency_and_reply_of(message.subject)
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
                _, new = await accept_reply(conn, agency_id, reply, event.traceparent)
            if new:
                self.stats.accepted += 1
                self._after_commit()
            else:
                self.stats.duplicates += 1
        except ReplyRefused as refused:
            self.stats.refused += 1
            original_id = _original_id(message.data, message)
            body, headers = refusal_message(agency_id, refused.reason, refused.reply, original_id)
            await js.publish(
                subjects.partner_outbound(agency_id, REFUSED_EVENT), body, headers=headers
            )
            await park(js, SERVICE, subject=message.subject, data=message.data,
                       reason=f"reply refused: {refused.reason}",
                       message_id=original_id and f"{agency_id}:{original_id}",
                       consumer=consumer_name(message))  # fmt: skip
            log.warning("partner reply refused", agency_id=agency_id,
                        reason=refused.reason[:200])  # fmt: skip
        await message.ack()


async def forward_refusal(
    js: JetStreamContext, event: CloudEvent, refused: ReferralReplyRefused
) -> None:
    """Routing refused a reply (not allowed in the lifecycle): tell the partner on its feed."""
    await js.publish(
        subjects.partner_outbound(refused.agency_id, REFUSED_EVENT),
        event.to_bytes(),
        headers={**event_headers(event.id, event.traceparent), "Content-Type": CONTENT_TYPE},
    )
