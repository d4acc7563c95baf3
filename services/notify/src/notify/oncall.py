"""Paging the on-call list: a page's id, the acknowledgement codes, how a typed reply names
one, and the events notify reports about pages; pure functions, no I/O.

A page is one round's message to one on-call contact (a role: a duty phone, a desk), queued
through the delivery machinery under its page id ``<alert_id>-r<round>-<contact_id>``. The
contact acknowledges with a code: one per (alert, contact), the same in every round, 8
characters of Crockford base32 drawn from ``secrets``. Codes always hold a digit and a letter,
so that no word and no number in a typed reply is read as one.
"""

import re
import secrets
import uuid
from dataclasses import dataclass

from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import (
    DeliveryChannel,
    OnCallAcknowledged,
    OnCallAckVia,
    OnCallPaged,
    OnCallPageFailed,
)

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH = 8
CODE_PATTERN = re.compile(rf"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")
# A typed reply may hold other words: the first few candidates are looked up, no more, so a
# reply cannot try thousands of guesses at once.
MAX_CANDIDATES = 5
# Crockford's reading of what people type: I and L are 1, O is 0.
_TYPED = str.maketrans("ILO", "110")
# Eight letters or digits standing alone (a space, punctuation or the text's end around
# them), or two groups of four joined by a hyphen, as Crockford allows for readability.
_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])([0-9A-Za-z]{4})-?([0-9A-Za-z]{4})(?![0-9A-Za-z])")

SOURCE = "/rujuk/notify"
PAGE_EVENT_NAMESPACE = uuid.UUID("3d0f5b8e-6a51-4c1f-8e2b-7f4c2a9e1d60")


def new_ack_code() -> str:
    """A fresh code: 8 Crockford base32 characters from ``secrets``, a digit and a letter
    among them (about 2^39.9 codes)."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if is_code(code):
            return code


def is_code(text: str) -> bool:
    """Whether ``text`` is a code as notify issues them."""
    return (
        CODE_PATTERN.fullmatch(text) is not None
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


def codes_in(text: str) -> list[str]:
    """The codes a typed reply may name, in the order typed, each once, at most
    ``MAX_CANDIDATES``: any case, spaces and words around it ("ok 7kq2-m9xd", "TERIMA
    7KQ2M9XD", "ACK: 7KQ2M9XD."), with I, L and O read as 1, 1 and 0."""
    found: list[str] = []
    for match in _CANDIDATE.finditer(text):
        candidate = (match[1] + match[2]).upper().translate(_TYPED)
        if is_code(candidate) and candidate not in found:
            found.append(candidate)
            if len(found) == MAX_CANDIDATES:
                break
    return found


def page_id(alert_id: str, round_: int, contact_id: str) -> str:
    """The key of one round's page to one contact: its delivery, its idempotency key."""
    return f"{alert_id}-r{round_}-{contact_id}"


def page_event_id(page: str, event: str) -> str:
    """The id of what notify reports about a page (``page_delivered`` or ``page_failed``):
    derived from the page, so that reporting it again publishes nothing new."""
    return str(uuid.uuid5(PAGE_EVENT_NAMESPACE, f"{page}:{event}"))


def no_channel_reason(contact_id: str, missing: list[str]) -> str:
    """Why a page could not go out at all."""
    return f"no usable channel for {contact_id!r}: {'; '.join(missing)}"[:500]


def page_failed(
    paged: OnCallPaged, contact_id: str, reason: str, attempts: int, traceparent: str | None
) -> CloudEvent:
    page = page_id(paged.alert_id, paged.round, contact_id)
    payload = OnCallPageFailed(
        case_id=paged.case_id,
        alert_id=paged.alert_id,
        round=paged.round,
        contact_id=contact_id,
        reason=reason[:500],
        attempts=attempts,
    )
    return make_event(
        payload,
        source=SOURCE,
        traceparent=traceparent,
        event_id=page_event_id(page, payload.event),
    )


@dataclass(frozen=True)
class AckCode:
    """An issued code, as notify stores it."""

    code: str
    alert_id: str
    case_id: str
    contact_id: str
    channels: list[str]


def answered_channel(code: AckCode, said: DeliveryChannel | None) -> DeliveryChannel | None:
    """The channel of the page a reply answers: the one the reply's sender names, if the
    contact was paged on it; else the only channel the contact was paged on; else unknown."""
    if said is not None and said in code.channels:
        return said
    if len(code.channels) == 1:
        return DeliveryChannel(code.channels[0])
    return None


def acknowledged_by_reply(
    code: AckCode, channel: DeliveryChannel | None, reply_number: int, traceparent: str | None
) -> CloudEvent:
    """The event of a contact's reply: by the contact (a role, never a person), the code's
    alert. Its id is derived from the code's reply count, so each counted reply is one event."""
    payload = OnCallAcknowledged(
        case_id=code.case_id,
        alert_id=code.alert_id,
        via=OnCallAckVia.REPLY,
        by=code.contact_id,
        channel=channel,
    )
    return make_event(
        payload,
        source=f"/rujuk/oncall/{code.contact_id}",
        traceparent=traceparent,
        event_id=str(
            uuid.uuid5(
                PAGE_EVENT_NAMESPACE, f"{code.alert_id}:{code.contact_id}:reply:{reply_number}"
            )
        ),
    )
