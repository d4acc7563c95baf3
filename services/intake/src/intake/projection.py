"""What intake shows an operator about a case after it left the door: routed, delivered, ..."""

from intake import store
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import (
    CaseClosed,
    CaseRouted,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralRequested,
)
from rujuk_runtime.consumer import Handler
from rujuk_runtime.db import Connection

REFERRAL_STATES: dict[type[EventPayload], str] = {
    ReferralDelivered: "delivered",
    ReferralDeliveryFailed: "delivery_failed",
    ReferralAcknowledged: "acknowledged",
    ReferralAccepted: "accepted",
    ReferralDeclined: "declined",
    ReferralCompleted: "completed",
    ReferralEscalated: "escalated",
}
_WAITING = ("requested", "delivered", "delivery_failed")
# The states each event moves a referral on from, as routing's lifecycle allows. Notify relays
# every well-formed reply and routing refuses the ones out of turn (``reply_refused``): those,
# and delivery reports arriving after a reply, leave the state as it is. Escalation is routing's.
MOVES_FROM: dict[type[EventPayload], tuple[str, ...] | None] = {
    ReferralDelivered: ("requested", "delivery_failed"),
    ReferralDeliveryFailed: ("requested",),
    ReferralAcknowledged: _WAITING,
    ReferralAccepted: (*_WAITING, "acknowledged"),
    ReferralDeclined: (*_WAITING, "acknowledged"),
    ReferralCompleted: ("accepted",),
    ReferralEscalated: None,
}


async def project(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    if isinstance(payload, CaseRouted):
        await store.set_case_status(conn, payload.case_id, "routed")
        for referral in payload.referrals:
            await store.upsert_referral(
                conn,
                referral_id=referral.referral_id,
                case_id=payload.case_id,
                agency_id=referral.agency_id,
                service=referral.service,
                priority=referral.priority,
                state="requested",
            )
    elif isinstance(payload, ReferralRequested):  # also referrals made by an escalation
        await store.insert_referral_if_new(
            conn,
            referral_id=payload.referral_id,
            case_id=payload.case_id,
            agency_id=payload.agency_id,
            service=payload.service,
            priority=payload.priority,
        )
    elif isinstance(payload, CaseClosed):
        await store.set_case_status(conn, payload.case_id, "closed")
    elif (state := REFERRAL_STATES.get(type(payload))) is not None:
        referral_id = getattr(payload, "referral_id", None)
        if isinstance(referral_id, str):
            await store.set_referral_state(
                conn, referral_id, state, moves_from=MOVES_FROM[type(payload)]
            )


PROJECTED: tuple[type[EventPayload], ...] = (
    CaseRouted,
    ReferralRequested,
    CaseClosed,
    *REFERRAL_STATES,
)


def projection_handlers() -> dict[str, Handler]:
    """The types that change what an operator sees. Intake reads the whole stream in order
    with one consumer, so a referral's `delivered` can never overtake the `routed` that
    created it; the other known types are skipped (``ServiceRuntime.skip_unhandled``)."""
    return {model.event_type(): project for model in PROJECTED}
