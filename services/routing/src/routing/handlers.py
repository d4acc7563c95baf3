"""Routing's bus handlers: an event in (a reported case, a delivery report, a partner's reply,
an on-call acknowledgement, an agency's answer to a proposed SOP version) becomes a call of the
aggregate it concerns (``cases``, ``referrals``, ``oncall``, ``proposals``), in the consumer's
transaction; the events that follow are staged in the outbox there."""

from datetime import timedelta
from typing import TypeVar

from routing import cases, oncall, picks, proposals, referrals
from routing.clock import Clock, utc_now
from routing.decide import ONE_MINUTE, Decision
from routing.referrals import REPLY_KINDS, PartnerReply
from routing.sops import SopsInForce
from rujuk_contracts import CloudEvent
from rujuk_contracts.events import (
    CaseReported,
    CaseVillageAgencyFound,
    EventPayload,
    OnCallAcknowledged,
    ReferralDelivered,
    ReferralDeliveryFailed,
    SopAnswerGiven,
)
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger

log = get_logger(__name__)

P = TypeVar("P", bound=EventPayload)


class RoutingHandlers:
    """The handlers behind routing's durable consumers, and what they share: the SOPs in force,
    the clock, and how long a minute is (shorter in compressed-time runs)."""

    def __init__(
        self,
        sops: SopsInForce,
        clock: Clock = utc_now,
        *,
        minute: timedelta = ONE_MINUTE,
        pick_timeout: timedelta = cases.PICK_TIMEOUT,
    ) -> None:
        self.sops = sops
        self.clock = clock
        self.minute = minute
        self.pick_timeout = pick_timeout

    async def on_case_reported(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        reported = _expect(payload, CaseReported)
        outcome = await cases.take_reported_case(
            conn,
            self.sops,
            reported,
            clock=self.clock,
            minute=self.minute,
            pick_timeout=self.pick_timeout,
        )
        if isinstance(outcome, Decision):  # else kept as unrouted, and acknowledged
            _log_decision(outcome, event)

    async def on_village_agency_found(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        """Intake's answer to a pick by village: the referral it decides goes out."""
        found = _expect(payload, CaseVillageAgencyFound)
        await picks.take_answer(conn, found, clock=self.clock)

    async def on_referrals_delivered(
        self, conn: Connection, batch: list[tuple[CloudEvent, EventPayload]]
    ) -> None:
        reports = [(event, _expect(payload, ReferralDelivered)) for event, payload in batch]
        await referrals.record_deliveries(conn, reports)

    async def on_referral_delivery_failed(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        failed = _expect(payload, ReferralDeliveryFailed)
        await referrals.record_delivery_failure(conn, failed, clock=self.clock)

    async def on_partner_reply(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        if type(payload) not in REPLY_KINDS:
            raise Rejected(f"{payload.event_type()} is not a partner reply")
        reply: PartnerReply = payload  # type: ignore[assignment]
        await referrals.record_reply(conn, event, reply, clock=self.clock)

    async def on_oncall_acknowledged(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        acknowledged = _expect(payload, OnCallAcknowledged)
        await oncall.record_acknowledgement(conn, acknowledged, event.time)

    async def on_sop_answer(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        """An agency's answer to a proposed SOP version, over NATS (passed on by notify)."""
        given = _expect(payload, SopAnswerGiven)
        await proposals.answer_over_nats(conn, event, given, self.clock)


def _expect(payload: EventPayload, model: type[P]) -> P:
    if not isinstance(payload, model):
        raise Rejected(f"expected {model.event_type()}, got {payload.event_type()}")
    return payload


def _log_decision(decision: Decision, event: CloudEvent) -> None:
    log.info(
        "case routed",
        case_id=decision.case_id,
        event_id=event.id,
        sop_id=decision.sop_id,
        sop_version=decision.sop_version,
        rules_fired=list(decision.rules_fired),
        referrals=[
            f"{r.referral_id} {r.service.value} -> {r.agency_id} ({r.priority.value})"
            for r in decision.referrals
        ],
        consent_overrides=decision.consent_overrides(),
        withheld=[f"{w.service.value} -> {w.agency_id}: {w.reason}" for w in decision.withheld],
        picked_by_village=[p.service.value for p in decision.pending_picks],
    )
