"""Partners' answers to a proposed SOP version over NATS (``rujuk.partner.<agency>.in.sop_answer``):
what notify checks of them and what it passes on to routing, as pure functions (the door is
``handlers.NatsReplies``).

Notify checks what only it can check, as it does for replies to referrals (``replies``):

- the message is a well-formed CloudEvent of type ``sop.answer_given`` (a reason code with an
  objection, none with an agreement; no other field, so no free text);
- its ``source`` is ``/rujuk/partners/<agency>`` exactly, and the agency in the payload is the
  agency whose subject it came on.

A valid answer is passed on as an internal ``sop.answer_given`` under that source, its id
derived from (agency, the partner's event id): the partner's retry of one answer is a no-op,
while a new answer (a new id) replaces the earlier one. Whether the proposal asks the agency
and still takes answers is routing's call (``sop.answer_refused``, which notify forwards).

An invalid answer changes nothing: the partner gets the reason on its own feed,
``rujuk.partner.<agency>.out.sop.answer_refused`` (a ``SopAnswerRefused`` CloudEvent when the
answer was readable, else the same ``application/problem+json`` document as a reply's), and
the message is parked on ``rujuk.dlq.notify`` with the reason.
"""

import uuid

from rujuk_contracts import make_event, subjects
from rujuk_contracts.envelope import CloudEvent, EventError, parse_event
from rujuk_contracts.events import SopAnswerGiven, SopAnswerRefusal, SopAnswerRefused

SOP_ANSWER_NAMESPACE = uuid.UUID("c4a1d6f2-3b8e-4f0a-9d17-5e2b8c7a6f90")
REFUSED_EVENT = "sop.answer_refused"
SOURCE = "/rujuk/notify"


class SopAnswerNotValid(Exception):
    """An answer notify does not pass on; ``answer`` when it could be read."""

    def __init__(self, reason: str, answer: SopAnswerGiven | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answer = answer


def read_sop_answer(raw: bytes) -> tuple[CloudEvent, SopAnswerGiven]:
    try:
        event, payload = parse_event(raw)
    except EventError as exc:
        raise SopAnswerNotValid(
            f"bukan jawaban SOP yang sah / not a valid SOP answer: {exc}"
        ) from exc
    if not isinstance(payload, SopAnswerGiven):
        raise SopAnswerNotValid(
            f"{event.type} bukan jawaban SOP / is not an SOP answer: send "
            f"{SopAnswerGiven.event_type()} here"
        )
    return event, payload


def sop_answer_event_id(agency_id: str, partner_event_id: str) -> str:
    """The internal event's id: one per answer the partner sent, whatever its retries."""
    return str(uuid.uuid5(SOP_ANSWER_NAMESPACE, f"{agency_id}:{partner_event_id}"))


def accepted_sop_answer(agency_id: str, event: CloudEvent, answer: SopAnswerGiven) -> CloudEvent:
    """The internal event for an answer that came on ``agency_id``'s subject."""
    if answer.agency_id != agency_id:
        raise SopAnswerNotValid(
            f"lembaga {answer.agency_id!r} dalam jawaban bukan {agency_id!r} / agency "
            f"{answer.agency_id!r} in the answer is not {agency_id!r}, the agency it came from",
            answer,
        )
    expected_source = subjects.partner_source(agency_id)
    if event.source != expected_source:
        raise SopAnswerNotValid(
            f"source harus / must be {expected_source!r} (the answering agency's), not "
            f"{event.source[:80]!r}",
            answer,
        )
    return make_event(
        answer,
        source=expected_source,
        traceparent=event.traceparent,
        event_id=sop_answer_event_id(agency_id, event.id),
    )


def refused_sop_answer(
    agency_id: str, reason: str, answer: SopAnswerGiven, original_id: str | None
) -> CloudEvent:
    """What the partner reads on ``…out.sop.answer_refused`` about an answer notify could read
    and did not pass on."""
    refused = SopAnswerRefused(
        proposal_id=answer.proposal_id,
        sop_id=answer.sop_id,
        district_code=answer.district_code,
        agency_id=agency_id,
        decision=answer.decision,
        refusal=SopAnswerRefusal.NOT_VALID,
        reason=reason[:300],
    )
    event_id = str(uuid.uuid5(SOP_ANSWER_NAMESPACE, f"refused:{agency_id}:{original_id}"))
    return make_event(refused, source=SOURCE, event_id=event_id)
