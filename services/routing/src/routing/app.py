"""Routing's door: takes case and delivery events, applies the SOP, stages referral events."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope

from routing import store
from routing.decide import Decision, ReferralDecision, decide
from routing.lifecycle import IllegalTransition, ReferralEvent, next_state
from routing.settings import RoutingSettings
from routing.sop import Sop, SopLibrary, load_sop_folder
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import (
    CaseReported,
    CaseRouted,
    EventPayload,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralRequested,
    ReferralSummary,
)
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

SOURCE = "/rujuk/routing"
# Event ids derive from what they announce, so a re-run stages the same Nats-Msg-Id.
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rujuk:routing")

Clock = Callable[[], datetime]
P = TypeVar("P", bound=EventPayload)


def utc_now() -> datetime:
    return datetime.now(UTC)


def event_id(key: str) -> str:
    """A deterministic event id, e.g. ``event_id(f"{referral_id}:requested")``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, key))


class Routing:
    """Routing's event handlers and the SOPs in force."""

    def __init__(self, library: SopLibrary | None = None, clock: Clock = utc_now) -> None:
        self.library = library or SopLibrary()
        self.clock = clock

    def load_sops(self, folder: Path) -> SopLibrary:
        """Read every SOP in the folder; a broken one is logged and refused, others stay."""
        library = load_sop_folder(folder)
        for sop in library.sops.values():
            log.info(
                "sop loaded",
                sop_id=sop.sop_id,
                sop_version=sop.version,
                district=sop.district_code,
                rules=len(sop.rules),
                sample_data=sop.sample_data,
            )
        for file_name, reason in library.refused.items():
            log.error("sop refused", file=file_name, reason=reason)
        if not library.sops:
            log.warning("no SOP in force: every case will be refused", folder=str(folder))
        self.library = library
        return library

    def sop_for(self, district: str) -> Sop:
        sop = self.library.for_district(district)
        if sop is not None:
            return sop
        if f"{district}.yaml" in self.library.refused:
            raise Rejected(f"the SOP for district {district} was refused at start (see the log)")
        raise Rejected(f"no SOP for district {district}")

    async def on_case_reported(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        reported = _expect(payload, CaseReported)
        sop = self.sop_for(reported.triage.district)
        now = self.clock()
        decision = decide(sop, reported.case_id, reported.triage, now)
        stored = await store.add_case(
            conn,
            decision,
            district_code=sop.district_code,
            reported_at=reported.reported_at,
            routed_at=now,
        )
        if not stored:
            raise Rejected(f"case {reported.case_id} was routed before")
        for outgoing in routing_events(decision, now, current_traceparent()):
            await add_to_outbox(conn, outgoing)
        _log_decision(decision, event)

    async def on_referral_delivered(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        delivered = _expect(payload, ReferralDelivered)
        await self._advance(conn, delivered, ReferralEvent.DELIVERED, delivered.attempts, None)

    async def on_referral_delivery_failed(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        failed = _expect(payload, ReferralDeliveryFailed)
        # Escalation on failure comes with the deadline watcher; for now the state says it.
        await self._advance(
            conn, failed, ReferralEvent.DELIVERY_FAILED, failed.attempts, failed.reason
        )

    async def _advance(
        self,
        conn: Connection,
        report: ReferralDelivered | ReferralDeliveryFailed,
        happened: ReferralEvent,
        attempts: int,
        failure: str | None,
    ) -> None:
        referral = await store.lock_referral(conn, report.referral_id)
        if referral is None:
            raise Rejected(f"unknown referral {report.referral_id}")
        if referral.case_id != report.case_id:
            raise Rejected(
                f"referral {referral.referral_id} belongs to case {referral.case_id}, "
                f"not {report.case_id}"
            )
        if referral.agency_id != report.agency_id:
            raise Rejected(
                f"referral {referral.referral_id} was made to {referral.agency_id}, "
                f"not {report.agency_id}"
            )
        try:
            state = next_state(referral.referral_id, referral.state, happened)
        except IllegalTransition as exc:
            raise Rejected(str(exc)) from exc
        await store.record_delivery(
            conn, referral.referral_id, state, attempts=attempts, failure=failure
        )
        log.info(
            "referral state",
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            agency_id=referral.agency_id,
            referral_event=happened.value,
            previous=referral.state.value,
            state=state.value,
        )


def routing_events(decision: Decision, now: datetime, traceparent: str | None) -> list[CloudEvent]:
    """One CaseRouted, then one ReferralRequested per referral, with deterministic ids."""
    routed = make_event(
        case_routed(decision),
        source=SOURCE,
        traceparent=traceparent,
        event_id=event_id(f"{decision.case_id}:routed"),
        time=now,
    )
    requested = [
        make_event(
            referral_requested(decision, referral),
            source=SOURCE,
            traceparent=traceparent,
            event_id=event_id(f"{referral.referral_id}:requested"),
            time=now,
        )
        for referral in decision.referrals
    ]
    return [routed, *requested]


def case_routed(decision: Decision) -> CaseRouted:
    return CaseRouted(
        case_id=decision.case_id,
        sop_id=decision.sop_id,
        sop_version=decision.sop_version,
        rules_fired=list(decision.rules_fired),
        referrals=[
            ReferralSummary(
                referral_id=referral.referral_id,
                service=referral.service,
                agency_id=referral.agency_id,
                priority=referral.priority,
            )
            for referral in decision.referrals
        ],
    )


def referral_requested(decision: Decision, referral: ReferralDecision) -> ReferralRequested:
    return ReferralRequested(
        case_id=decision.case_id,
        referral_id=referral.referral_id,
        agency_id=referral.agency_id,
        service=referral.service,
        priority=referral.priority,
        acknowledgement_deadline=referral.acknowledgement_deadline,
        escalation_chain=list(referral.escalation_chain),
        sop_id=decision.sop_id,
        sop_version=decision.sop_version,
        rule_ids=list(referral.rule_ids),
    )


def build_runtime(settings: RoutingSettings) -> tuple[ServiceRuntime, Routing]:
    """The runtime with routing's durable consumers registered, and the handlers behind them."""
    runtime = ServiceRuntime("routing", settings)
    routing = Routing()
    runtime.handle(CaseReported, routing.on_case_reported, durable="routing-case-reported")
    runtime.handle(
        ReferralDelivered, routing.on_referral_delivered, durable="routing-referral-delivered"
    )
    runtime.handle(
        ReferralDeliveryFailed,
        routing.on_referral_delivery_failed,
        durable="routing-referral-delivery-failed",
    )
    return runtime, routing


def create_app(settings: RoutingSettings | None = None) -> AsgiFastStream:
    """The ASGI app: consumers, /healthz, and /sops (what is in force, what was refused)."""
    settings = settings or RoutingSettings()
    runtime, routing = build_runtime(settings)
    app = runtime.asgi_app(routes=[("/sops", sops_route(routing))])

    async def load_sops() -> None:  # after the runtime's own start-up hook set up logging
        routing.load_sops(settings.sop_dir)

    app.on_startup(load_sops)
    return app


def sops_route(routing: Routing) -> ASGIApp:
    @get(description="The SOPs in force by district, and the files refused with the reason")
    async def sops(scope: Scope) -> AsgiResponse:
        body: dict[str, Any] = {
            "in_force": {
                district: {
                    "sop_id": sop.sop_id,
                    "version": sop.version,
                    "name": sop.name,
                    "sample_data": sop.sample_data,
                    "rules": [rule.id for rule in sop.rules],
                }
                for district, sop in sorted(routing.library.sops.items())
            },
            "refused": routing.library.refused,
        }
        return AsgiResponse(json.dumps(body).encode(), 200, {"content-type": "application/json"})

    return sops


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
        # Not in CaseRouted v1 yet: kept here and in the referral rows.
        consent_overrides=decision.consent_overrides(),
        withheld=[f"{w.service.value} -> {w.agency_id}: {w.reason}" for w in decision.withheld],
    )
