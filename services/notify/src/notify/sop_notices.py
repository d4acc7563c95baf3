"""Telling the agencies asked to sign a proposed SOP version off: that they are asked
(``sop.proposed``), and then that the proposal was withdrawn or published; each notice's
delivery key, the CloudEvent each agency gets and the text of its SMS and e-mail (pure).

A notice rides the delivery machinery of referrals (lanes, retries, breakers, leases) under
its key ``<proposal_id>:<event>:<agency_id>``, on the agency's channels: its NATS feed
(``rujuk.partner.<agency>.out.sop.proposed``, …), its webhook, e-mail and SMS. Each agency
gets routing's event with an id of its own, derived from the event's id and the agency (one
JetStream message id per feed message; a redelivery is the same notice). The texts say, in
Bahasa Indonesia then English, what the SOP is and how to answer; codes only.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rujuk_contracts import CloudEvent, subjects
from rujuk_contracts.events import (
    EventPayload,
    SopAnswerGiven,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
)

NOTICE_NAMESPACE = uuid.UUID("9a2e7c41-5d3b-4e8f-a6c0-1b7d2f4e8a53")
WIB = timezone(timedelta(hours=7), "WIB")
SopNotice = SopProposed | SopProposalWithdrawn | SopPublished
NOTICE_TYPES = frozenset(model.event_type() for model in (SopProposed, SopProposalWithdrawn,
                                                          SopPublished))  # fmt: skip
PROPOSED_TYPE = SopProposed.event_type()


def notice_key(proposal_id: str, event: CloudEvent, agency_id: str) -> str:
    """The delivery key of one notice to one agency, e.g. ``prop-…:proposed:rsud-bangil``."""
    event_name = event.type.split(".")[3]
    return f"{proposal_id}:{event_name}:{subjects.check_agency_id(agency_id)}"


def notice_event(event: CloudEvent, agency_id: str) -> CloudEvent:
    """Routing's event as ``agency_id`` gets it: the same, with an id of its own."""
    own_id = str(uuid.uuid5(NOTICE_NAMESPACE, f"{event.id}:{agency_id}"))
    return event.model_copy(update={"id": own_id})


@dataclass(frozen=True)
class HowToAnswer:
    """Where an asked agency answers: the console, routing's API, its NATS subject."""

    console_url: str
    routing_url: str


@dataclass(frozen=True)
class NoticeText:
    subject: str  # of the e-mail
    sms: str  # short
    body: str  # of the e-mail: the SMS's words, and how to answer in full


def _sop(notice: SopNotice) -> str:
    return f"SOP {notice.district_code} v{notice.sop_version}"


def _when(moment: datetime) -> str:
    return moment.astimezone(WIB).strftime("%d-%m-%Y %H:%M WIB")


def notice_text(
    notice: EventPayload, agency_id: str, how: HowToAnswer, *, at: datetime
) -> NoticeText:
    """The SMS and e-mail of a notice, Bahasa Indonesia then English. ``at``: the event's time
    (a publication without an effective date applies from then)."""
    if isinstance(notice, SopProposed):
        sop = _sop(notice)
        nats = subjects.partner_inbound(agency_id, subjects.SOP_ANSWER)
        api = f"{how.routing_url.rstrip('/')}/v1/sop-proposals/{notice.proposal_id}/answers"
        sms = (
            f"rujuk: {sop} diusulkan; mohon persetujuan Anda sebelum diterbitkan. Jawab di "
            f"konsol, API atau NATS. / {sop} proposed; your sign-off is asked before it is "
            f"published. Usulan / proposal {notice.proposal_id}"
        )
        body = (
            f"{sms}\n\n"
            f"{sop} mengubah tugas lembaga Anda ({agency_id}). Setujui atau ajukan keberatan "
            f"dengan kode alasan / It changes your agency's duties: agree, or object with a "
            f"reason code:\n"
            f"  - konsol / console: {how.console_url}\n"
            f"  - API: POST {api}\n"
            f'    {{"decision": "agree"}} | {{"decision": "object", "reason": "…"}}\n'
            f"  - NATS: {nats} (CloudEvent {SopAnswerGiven.event_type()})"
        )
        return NoticeText(
            subject=f"[rujuk] {sop} diusulkan: mohon persetujuan / proposed: your sign-off",
            sms=sms,
            body=_email(body),
        )
    if isinstance(notice, SopProposalWithdrawn):
        sop = _sop(notice)
        sms = (
            f"rujuk: usulan {sop} ditarik; tidak perlu dijawab lagi. / The proposal of {sop} "
            f"was withdrawn; no answer is needed. Usulan / proposal {notice.proposal_id}"
        )
        return NoticeText(
            subject=f"[rujuk] Usulan {sop} ditarik / proposal withdrawn",
            sms=sms,
            body=_email(sms),
        )
    if isinstance(notice, SopPublished):
        sop = _sop(notice)
        effective = _when(notice.effective_at or at)
        override = ""
        if notice.override_reason is not None and agency_id in notice.agencies_not_agreed:
            override = (
                f" Diterbitkan dengan override ({notice.override_reason.value}) tanpa "
                f"persetujuan Anda. / Published with an override "
                f"({notice.override_reason.value}) without your agreement."
            )
        sms = (
            f"rujuk: {sop} diterbitkan, berlaku mulai {effective}. / {sop} published, in "
            f"force from {effective}.{override} Usulan / proposal {notice.proposal_id}"
        )
        return NoticeText(
            subject=f"[rujuk] {sop} diterbitkan / published", sms=sms, body=_email(sms)
        )
    raise ValueError(f"{notice.event_type()} is not an SOP notice")


def _email(text: str) -> str:
    return (
        "Yth. petugas layanan / Dear service desk,\n\n"
        + text
        + "\n\nPesan ini tidak memuat data identitas siapa pun; dikirim otomatis oleh rujuk, "
        "jangan membalas e-mail ini. / This message holds no one's identifying data; sent by "
        "rujuk, do not reply to this e-mail.\n"
    )
