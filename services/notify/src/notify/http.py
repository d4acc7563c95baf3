"""Notify's HTTP door: partners' replies, and the FHIR rendering of a referral (health,
/metrics and problem responses come with ``rujuk_runtime.webapp.service_app``)."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from notify import store
from notify.fhir import referral_bundle
from notify.replies import (
    FREE_TEXT_FIELD,
    FREE_TEXT_REFUSED,
    Reply,
    ReplyRefused,
    reply_event_id,
)
from rujuk_contracts.envelope import parse_event
from rujuk_contracts.events import (
    DeclineReason,
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
from rujuk_runtime.telemetry import current_traceparent, span_from
from rujuk_runtime.webapp import Runtime

router = APIRouter()

Partner = Annotated[Principal, Depends(require(Role.PARTNER))]


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
    responses=PROBLEMS,
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
