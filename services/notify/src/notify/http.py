"""Notify's HTTP door: partners' replies, the FHIR rendering of a referral, and on-call
contacts' replies to pages (health, /metrics, problem responses and the body guard come with
``rujuk_runtime.webapp.service_app``)."""

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from notify import store
from notify.fhir import referral_bundle
from notify.oncall import acknowledged_by_reply, answered_channel, codes_in
from notify.replies import (
    FREE_TEXT_FIELD,
    FREE_TEXT_REFUSED,
    Reply,
    ReplyRefused,
    reply_event_id,
)
from notify.settings import NotifySettings
from rujuk_contracts.envelope import parse_event
from rujuk_contracts.events import (
    DeclineReason,
    DeliveryChannel,
    NoteRef,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralRequested,
    ReplyKind,
    Service,
)
from rujuk_runtime.access import Principal, Role, require
from rujuk_runtime.inbox import processed_among
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.problems import ValidationProblem
from rujuk_runtime.telemetry import current_traceparent, span_from
from rujuk_runtime.webapp import Runtime, from_app_state

log = get_logger(__name__)

router = APIRouter()

Partner = Annotated[Principal, Depends(require(Role.PARTNER))]
Settings = Annotated[NotifySettings, from_app_state("settings")]


class ReplyRequest(BaseModel):
    """A partner's reply to one referral: codes and ids, never free text."""

    model_config = ConfigDict(extra="forbid")

    reply: ReplyKind
    reason: DeclineReason | None = Field(default=None, description="Required to decline")
    note_ref: NoteRef | None = Field(
        default=None,
        description="A decline's own words: write them at intake (POST "
        "/v1/cases/{case_id}/notes, kind decline_note), where they are sealed under the case's "
        "key, and send the note_id here",
    )
    note: str | None = Field(
        default=None,
        max_length=280,
        description="Deprecated and refused when not empty (422 naming `note`): send note_ref",
    )


class ReplyAccepted(BaseModel):
    event_id: str
    status: str = Field(description="'accepted', or 'duplicate' for a reply sent before")


class Problem(BaseModel):
    detail: str | list[dict[str, Any]]


PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (401, 403, 404, 422)
}


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _refusal(refused: ReplyRefused) -> JSONResponse:
    if refused.field is not None:  # the field-by-field shape of every 422 naming a field
        detail: Any = [{"field": refused.field, "problem": refused.reason}]
    else:
        detail = refused.reason
    return JSONResponse({"detail": detail}, status_code=refused.status)


def _reply_payload(body: ReplyRequest, case_id: str, referral_id: str, agency_id: str) -> Reply:
    common = {"case_id": case_id, "referral_id": referral_id, "agency_id": agency_id}
    if body.note:
        raise ReplyRefused(FREE_TEXT_REFUSED, field=FREE_TEXT_FIELD)
    if body.reply != ReplyKind.DECLINE and (body.reason or body.note_ref):
        raise ReplyRefused("reason and note_ref belong to a decline only", status=422)
    if body.reply == ReplyKind.ACKNOWLEDGE:
        return ReferralAcknowledged(**common)
    if body.reply == ReplyKind.ACCEPT:
        return ReferralAccepted(**common)
    if body.reply == ReplyKind.COMPLETE:
        return ReferralCompleted(**common)
    if body.reason is None:
        raise ReplyRefused("a decline needs a reason", status=422)
    return ReferralDeclined(**common, reason=body.reason, note_ref=body.note_ref)


def _agency_of(principal: Principal) -> str:
    assert principal.agency_id is not None  # a partner token is always bound to an agency
    return principal.agency_id


@router.post(
    "/v1/referrals/{referral_id}/replies",
    status_code=202,
    response_model=ReplyAccepted,
    responses={**PROBLEMS, **{status: {"model": Problem} for status in (413, 415)}},
    tags=["replies"],
)
async def reply(
    referral_id: Annotated[str, Field(max_length=100)],
    body: ReplyRequest,
    principal: Partner,
    runtime: Runtime,
) -> ReplyAccepted | JSONResponse:
    """Acknowledge, accept, decline or complete a referral delivered to your agency.

    202 means notify handed the reply to routing; if the lifecycle does not allow it,
    routing's refusal arrives on your feed as `reply.refused`."""
    agency_id = _agency_of(principal)
    with span_from("notify partner reply", None, {"rujuk.agency_id": agency_id}) as span:
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                delivered = await store.delivered_to(conn, referral_id)
                if delivered is None or delivered[1] != agency_id:
                    raise ReplyRefused(
                        f"referral {referral_id!r} was not delivered to {agency_id!r}",
                        status=404,
                    )
                span.set_attribute("rujuk.case_id", delivered[0])
                payload = _reply_payload(body, delivered[0], referral_id, agency_id)
                event_id, new = await store.accept_reply(
                    conn, agency_id, payload, current_traceparent()
                )
        except ReplyRefused as refused:
            return _refusal(refused)
    if new:
        runtime.wake_relay()
    return ReplyAccepted(event_id=event_id, status="accepted" if new else "duplicate")


@router.get(
    "/v1/referrals/{referral_id}/fhir",
    responses={200: {"content": {"application/fhir+json": {}}}, **PROBLEMS},
    tags=["fhir"],
)
async def referral_as_fhir(
    referral_id: Annotated[str, Field(max_length=100)],
    principal: Partner,
    runtime: Runtime,
) -> Response:
    """The referral as an HL7 FHIR R4(B) Bundle: a ServiceRequest and its Task, whose
    status follows your replies. Health referrals only; your agency's own only."""
    agency_id = _agency_of(principal)
    async with runtime.pool.acquire() as conn:
        delivered = await store.delivered_to(conn, referral_id)
        delivery = await store.delivery_of(conn, referral_id)
        if delivered is None or delivered[1] != agency_id or delivery is None:
            return _problem(404, f"referral {referral_id!r} was not delivered to {agency_id!r}")
        event, referral = parse_event(delivery.body)
        if not isinstance(referral, ReferralRequested) or referral.service != Service.HEALTH:
            return _problem(404, "only health referrals have a FHIR form")
        ids = {reply_event_id(agency_id, referral_id, kind): kind for kind in ReplyKind}
        replies = {ids[i] for i in await processed_among(conn, list(ids))}
    bundle = referral_bundle(referral, event.time, replies)
    return Response(json.dumps(bundle), media_type="application/fhir+json")


# --- on-call contacts' replies to pages --------------------------------------------------------

MAX_REPLY_CHARS = 8000  # an SMS, or an e-mail's text with the page quoted under it


class OnCallReply(BaseModel):
    """A paged contact's reply: the text as typed, or the code alone. Only the code in it is
    read; the text is never kept, logged or passed on."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(
        default=None,
        max_length=MAX_REPLY_CHARS,
        description='The reply as typed, e.g. "OK 7KQ2M9XD" (an SMS gateway\'s inbound '
        "forward, an e-mail bridge); the code is found in it",
    )
    code: str | None = Field(
        default=None, max_length=64, description="The acknowledgement code alone (a system)"
    )
    channel: DeliveryChannel | None = Field(
        default=None,
        description="The channel the reply came back on (sms, email, webhook), if the sender "
        "knows it: recorded as the channel of the page it answers",
    )


class OnCallReplyAccepted(BaseModel):
    status: str = Field(description="'accepted', or 'duplicate' for a repeat within a minute")
    message: str = Field(description="For the person who replied (Bahasa Indonesia / English)")


ACKNOWLEDGED = (
    "Terima kasih, konfirmasi Anda diterima; panggilan berikutnya dihentikan / "
    "Thank you, your acknowledgement is received; further pages stop"
)
ALREADY_ACKNOWLEDGED = "Konfirmasi ini baru saja diterima / This acknowledgement was just received"
UNKNOWN_CODE = "kode konfirmasi tidak dikenal / unknown acknowledgement code"
NO_CODE = (
    "tidak ada kode konfirmasi (8 huruf/angka) dalam balasan / no acknowledgement code "
    "(8 letters and digits) in the reply"
)


@router.post(
    "/v1/oncall/replies",
    status_code=202,
    response_model=OnCallReplyAccepted,
    responses={
        **{status: {"model": Problem} for status in (404, 413, 415)},
        422: {"model": ValidationProblem},
    },
    tags=["oncall"],
)
async def oncall_reply(
    body: OnCallReply, runtime: Runtime, settings: Settings
) -> OnCallReplyAccepted | JSONResponse:
    """Acknowledge an on-call alert by replying to its page.

    No bearer token: the acknowledgement code is the credential. It is sent only to the
    paged contact (a role's duty phone, desk address or system) and names one alert and one
    contact. 202 when the code is known (a repeat within a minute is answered but passed on
    once); 404 for a code notify did not issue; 422 when no code is found."""
    candidates = codes_in(" ".join(t for t in (body.code, body.text) if t))
    if not candidates:
        field = "code" if body.code is not None else "text"
        return JSONResponse({"detail": [{"field": field, "problem": NO_CODE}]}, status_code=422)
    window = timedelta(seconds=settings.oncall_repeat_reply_seconds)
    with span_from("notify on-call reply", None) as span:
        async with runtime.pool.acquire() as conn, conn.transaction():
            code = await store.find_ack_code(conn, candidates)
            if code is None:
                return _problem(404, UNKNOWN_CODE)
            span.set_attribute("rujuk.case_id", code.case_id)
            number = await store.count_reply(conn, code.code, window)
            if number is not None:
                channel = answered_channel(code, body.channel)
                event = acknowledged_by_reply(code, channel, number, current_traceparent())
                await add_to_outbox(conn, event)
    if number is None:
        return OnCallReplyAccepted(status="duplicate", message=ALREADY_ACKNOWLEDGED)
    runtime.wake_relay()
    log.info("on-call alert acknowledged by reply", case_id=code.case_id,
             alert_id=code.alert_id, contact_id=code.contact_id, reply=number)  # fmt: skip
    return OnCallReplyAccepted(status="accepted", message=ACKNOWLEDGED)
