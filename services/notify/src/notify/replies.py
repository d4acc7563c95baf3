"""Partners' replies, over NATS (``rujuk.partner.<agency>.in.<reply>``) and over HTTP: what
notify checks of them, as pure functions (the doors are ``handlers.NatsReplies`` and the
``reply`` route in ``http``; ``store.accept_reply`` stages an accepted one).

Notify checks what only it can check and hands the rest to routing:

- the message is a well-formed CloudEvent of a reply type (acknowledged, accepted, declined,
  completed), and on NATS the subject's last token names the same reply;
- the agency in the payload is the agency the subject (or the partner's token, issued by
  intake) belongs to;
- the referral is one notify delivered to that agency (on at least one channel), for that case;
- it carries no free text: a decline's ``note`` is refused (the partner writes its words at
  intake, where they are sealed under the case's key, and sends the note's id as
  ``note_ref``). A refused reply that carried a note is parked without it, and on NATS the
  partner's message is erased from the stream (``handlers.NatsReplies``).

A reply over NATS must carry ``source`` = ``/rujuk/partners/<agency>`` (the one documented
form, ``subjects.partner_source``): any other is refused, naming the source to set, never
rewritten. A valid reply is republished as an internal event under that source through
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
from typing import Any

from rujuk_contracts import make_event, subjects
from rujuk_contracts.envelope import CloudEvent, EventError, parse_event
from rujuk_contracts.events import (
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralReplyRefused,
    ReplyKind,
)

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


FREE_TEXT_FIELD = "note"
FREE_TEXT_REFUSED = (
    "note: teks bebas tidak diterima; tulis di intake (POST /v1/cases/{case_id}/notes, kind "
    "decline_note) lalu kirim note_ref / free text is not accepted: write it at intake and "
    "send its note_id as note_ref"
)
FREE_TEXT_REMOVED = "[removed by notify: free text is not kept]"


class ReplyRefused(Exception):
    def __init__(
        self,
        reason: str,
        reply: Reply | None = None,
        status: int = 422,
        *,
        field: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply
        self.status = status
        self.field = field  # the body field at fault, when one is


def refuse_free_text(reply: Reply) -> None:
    """A decline's deprecated ``note`` is refused when it says anything: free text goes to
    intake's vault, and the reply names it by ``note_ref``."""
    if isinstance(reply, ReferralDeclined) and reply.note:
        raise ReplyRefused(FREE_TEXT_REFUSED, reply, field=FREE_TEXT_FIELD)


def carries_free_text(raw: bytes) -> bool:
    """Whether a partner's message (parsed or not) has text in ``data.note``."""
    data = _data_of(raw)
    return data is not None and bool(data.get(FREE_TEXT_FIELD))


def without_free_text(raw: bytes) -> bytes:
    """The message as it may be kept (parked): ``data.note`` replaced by a marker."""
    document = json.loads(raw)
    document["data"][FREE_TEXT_FIELD] = FREE_TEXT_REMOVED
    return json.dumps(document, separators=(",", ":")).encode()


def _data_of(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    data = document.get("data") if isinstance(document, dict) else None
    return data if isinstance(data, dict) else None


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
    refuse_free_text(payload)
    return event, payload


def accepted_reply(
    agency_id: str,
    reply: Reply,
    delivered: tuple[str, str] | None,
    traceparent: str | None,
    *,
    source: str | None = None,
) -> CloudEvent:
    """The internal event for a reply from ``agency_id``, checked against what notify
    delivered of its referral (``store.delivered_to``: case id and agency id, or None).
    ``source``: the CloudEvent source the partner set (None over HTTP, where notify sets it)."""
    refuse_free_text(reply)
    if reply.agency_id != agency_id:
        raise ReplyRefused(
            f"agency {reply.agency_id!r} in the reply is not {agency_id!r}, the agency it "
            "came from",
            reply,
            status=403,
        )
    expected_source = subjects.partner_source(agency_id)
    if source is not None and source != expected_source:
        raise ReplyRefused(
            f"source harus / must be {expected_source!r} (the replying agency's), not "
            f"{source[:80]!r}",
            reply,
            field="source",
        )
    if delivered is None or delivered[1] != agency_id:
        raise ReplyRefused(
            f"referral {reply.referral_id!r} was not delivered to {agency_id!r}", reply, 404
        )
    if delivered[0] != reply.case_id:
        raise ReplyRefused(
            f"referral {reply.referral_id!r} is not about case {reply.case_id!r}", reply, 422
        )
    if isinstance(reply, ReferralDeclined) and reply.note is not None:  # "" said nothing
        reply = reply.model_copy(update={"note": None})
    event_id = reply_event_id(agency_id, reply.referral_id, REPLY_KINDS[type(reply)])
    return make_event(reply, source=expected_source, traceparent=traceparent, event_id=event_id)


def refused_reply(agency_id: str, reason: str, reply: Reply, original_id: str | None) -> CloudEvent:
    """What the partner reads on ``…out.reply.refused`` about a reply notify could read."""
    refused = ReferralReplyRefused(
        case_id=reply.case_id,
        referral_id=reply.referral_id,
        agency_id=agency_id,
        reply=REPLY_KINDS[type(reply)],
        reason=reason[:300],
    )
    event_id = str(uuid.uuid5(REPLY_ID_NAMESPACE, f"refused:{agency_id}:{original_id}"))
    return make_event(refused, source="/rujuk/notify", event_id=event_id)


def refusal_problem(reason: str, original_id: str | None) -> dict[str, Any]:
    """What the partner reads on ``…out.reply.refused`` about a reply notify could not read."""
    return {
        "type": PROBLEM_TYPE,
        "title": "Balasan ditolak / reply refused",
        "detail": reason[:500],
        "reply_id": original_id,
    }


def agency_and_reply_of(subject: str) -> tuple[str, str]:
    parts = subject.split(".")  # rujuk.partner.<agency>.in.<reply...>
    if len(parts) < 5 or parts[:2] != [subjects.PREFIX, "partner"] or parts[3] != "in":
        raise ValueError(f"not a partner reply subject: {subject}")
    return parts[2], ".".join(parts[4:])


def original_id(raw: bytes, stream_sequence: int | None) -> str | None:
    """The id the partner gave its reply, else its place in the stream (``seq-<n>``)."""
    try:
        document = json.loads(raw)
        if isinstance(document, dict) and isinstance(document.get("id"), str):
            return str(document["id"])[:64]
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    return None if stream_sequence is None else f"seq-{stream_sequence}"
