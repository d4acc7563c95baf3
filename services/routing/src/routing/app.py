"""Routing's core: takes case, delivery and partner-reply events, applies the SOP in force,
stages referral events, escalates along each referral's own chain, and publishes SOP versions."""

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI

from routing import store
from routing.decide import ONE_MINUTE, Decision, ReferralDecision, decide
from routing.lifecycle import (
    AWAITING_ACKNOWLEDGEMENT,
    EscalationStep,
    IllegalTransition,
    ReferralEvent,
    ReferralState,
    next_escalation,
    next_state,
)
from routing.settings import RoutingSettings
from routing.sop import Sop, SopLibrary, load_sop_folder, parse_sop
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import (
    CaseClosed,
    CaseReported,
    CaseRouted,
    EscalationReason,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralReplyRefused,
    ReferralRequested,
    ReferralSummary,
    ReplyKind,
    SopPublished,
    WithheldReferral,
)
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger, logging_about
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

SOURCE = "/rujuk/routing"
# Event ids derive from what they announce, so a re-run stages the same Nats-Msg-Id.
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rujuk:routing")

Clock = Callable[[], datetime]
P = TypeVar("P", bound=EventPayload)
PartnerReply = ReferralAcknowledged | ReferralAccepted | ReferralDeclined | ReferralCompleted

REPLY_KINDS: dict[type[EventPayload], tuple[ReplyKind, ReferralEvent]] = {
    ReferralAcknowledged: (ReplyKind.ACKNOWLEDGE, ReferralEvent.ACKNOWLEDGED),
    ReferralAccepted: (ReplyKind.ACCEPT, ReferralEvent.ACCEPTED),
    ReferralDeclined: (ReplyKind.DECLINE, ReferralEvent.DECLINED),
    ReferralCompleted: (ReplyKind.COMPLETE, ReferralEvent.COMPLETED),
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def event_id(key: str) -> str:
    """A deterministic event id, e.g. ``event_id(f"{referral_id}:requested")``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, key))


class SopConflict(Exception):
    """A published SOP whose version cannot follow the one in force."""


class CaseNotFound(Exception):
    pass


class CaseHasOpenReferrals(Exception):
    def __init__(self, case_id: str, open_referrals: list[store.StoredReferral]) -> None:
        names = ", ".join(
            f"{r.referral_id} ({r.agency_id}, {r.state.value})" for r in open_referrals
        )
        super().__init__(f"case {case_id} has open referrals: {names}")
        self.open_referrals = open_referrals


@dataclass(frozen=True)
class PublishedSop:
    sop: Sop
    sha256: str
    published_at: datetime
    created: bool  # False when this very document was published before


class Routing:
    """Routing's event handlers, the SOPs in force, escalation and SOP publishing."""

    def __init__(
        self,
        library: SopLibrary | None = None,
        clock: Clock = utc_now,
        *,
        minute: timedelta = ONE_MINUTE,
    ) -> None:
        self.library = library or SopLibrary()  # the files: where nothing was published
        self.clock = clock
        self.minute = minute
        self._published: dict[tuple[str, int, str], Sop] = {}  # (district, version, sha256)

    # --- which SOP is in force ----------------------------------------------------------------

    def load_sops(self, folder: Path) -> SopLibrary:
        """Read every SOP in the folder; a broken one is refused, the others stay."""
        self.library = load_sop_folder(folder)
        return self.library

    def log_sops(self, folder: Path) -> None:
        for sop in self.library.sops.values():
            log.info(
                "sop file loaded",
                sop_id=sop.sop_id,
                sop_version=sop.version,
                district=sop.district_code,
                rules=len(sop.rules),
                sample_data=sop.sample_data,
            )
        for file_name, reason in self.library.refused.items():
            log.error("sop refused", file=file_name, reason=reason)
        if not self.library.sops:
            log.warning("no SOP file in force", folder=str(folder))

    def sop_for(self, district: str) -> Sop:
        """The SOP file in force for the district (where nothing was published)."""
        sop = self.library.for_district(district)
        if sop is not None:
            return sop
        if f"{district}.yaml" in self.library.refused:
            raise Rejected(f"the SOP for district {district} was refused at start (see the log)")
        raise Rejected(f"no SOP for district {district}")

    async def sop_in_force(self, conn: Connection, district: str) -> Sop:
        """The newest version published for the district, else its SOP file.

        Asked of the database for every case (one indexed row), so every routing replica
        applies a new version from the moment it is committed; parsed once per version.
        """
        newest = await store.newest_sop(conn, district)
        if newest is None:
            return self.sop_for(district)
        version, sha256 = newest
        key = (district, version, sha256)
        sop = self._published.get(key)
        if sop is None:
            stored = await store.get_sop(conn, district, version)
            assert stored is not None
            sop = parse_sop(stored.yaml, origin=f"published {district} v{version}")
            self._published[key] = sop
        return sop

    async def sops_in_force(self, conn: Connection) -> dict[str, tuple[Sop, str]]:
        """District -> (SOP in force, where it came from: 'published' or 'file')."""
        in_force = {district: (sop, "file") for district, sop in self.library.sops.items()}
        for stored in await store.newest_sops(conn):
            in_force[stored.district_code] = (
                await self.sop_in_force(conn, stored.district_code),
                "published",
            )
        return in_force

    async def publish_sop(self, conn: Connection, text: str, published_by: str) -> PublishedSop:
        """Validate, store and announce a new SOP version; it applies to new cases only.

        Raises SopError (every problem, with its line) or SopConflict; nothing changes then,
        and the version in force stays.
        """
        sop = parse_sop(text, origin="published document")
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        await conn.execute(  # one publisher per district at a time
            "SELECT pg_advisory_xact_lock(hashtext('routing.sops:' || $1))", sop.district_code
        )
        existing = await store.get_sop(conn, sop.district_code, sop.version)
        if existing is not None:
            if existing.sha256 == sha256:
                return PublishedSop(sop, sha256, existing.published_at, created=False)
            raise SopConflict(
                f"{sop.label} was already published with other content: raise the version"
            )
        try:
            current = await self.sop_in_force(conn, sop.district_code)
        except Rejected:
            current = None
        if current is not None and sop.version <= current.version:
            raise SopConflict(
                f"{current.label} is in force: publish a version above {current.version}, "
                f"not {sop.version}"
            )
        now = self.clock()
        await store.add_sop(
            conn,
            store.StoredSop(
                district_code=sop.district_code,
                version=sop.version,
                sop_id=sop.sop_id,
                yaml=text,
                sha256=sha256,
                published_by=published_by,
                published_at=now,
            ),
        )
        published = SopPublished(
            sop_id=sop.sop_id,
            district_code=sop.district_code,
            sop_version=sop.version,
            sha256=sha256,
            published_by=published_by,
        )
        await add_to_outbox(
            conn,
            make_event(
                published,
                source=SOURCE,
                traceparent=current_traceparent(),
                event_id=event_id(f"sop:{sop.district_code}:{sop.version}:{sha256}"),
                time=now,
            ),
        )
        log.info(
            "sop published",
            sop_id=sop.sop_id,
            sop_version=sop.version,
            district=sop.district_code,
            sha256=sha256,
            published_by=published_by,
        )
        return PublishedSop(sop, sha256, now, created=True)

    # --- cases --------------------------------------------------------------------------------

    async def on_case_reported(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        reported = _expect(payload, CaseReported)
        sop = await self.sop_in_force(conn, reported.triage.district)
        now = self.clock()
        decision = decide(sop, reported.case_id, reported.triage, now, minute=self.minute)
        stored = await store.add_case(
            conn,
            decision,
            district_code=sop.district_code,
            reported_at=reported.reported_at,
            routed_at=now,
            violence_types=[v.value for v in reported.triage.violence_types],
        )
        if not stored:
            raise Rejected(f"case {reported.case_id} was routed before")
        await add_to_outbox(conn, *routing_events(decision, now, current_traceparent()))
        _log_decision(decision, event)

    async def close_case(self, conn: Connection, case_id: str, closed_by: str, reason: str) -> bool:
        """Close a case whose referrals are all settled; False if it was closed already."""
        case = await store.lock_case(conn, case_id)
        if case is None:
            raise CaseNotFound(case_id)
        if case.closed_at is not None:
            return False
        still_open = case.open_referrals()
        if still_open:
            raise CaseHasOpenReferrals(case_id, still_open)
        now = self.clock()
        await store.close_case(conn, case_id, closed_at=now, closed_by=closed_by, reason=reason)
        await add_to_outbox(
            conn,
            make_event(
                CaseClosed(case_id=case_id, closed_by=closed_by, reason=reason),
                source=SOURCE,
                traceparent=current_traceparent(),
                event_id=event_id(f"{case_id}:closed"),
                time=now,
            ),
        )
        log.info("case closed", case_id=case_id, closed_by=closed_by)
        return True

    # --- delivery reports (from notify) -------------------------------------------------------

    async def on_referrals_delivered(
        self, conn: Connection, batch: list[tuple[CloudEvent, EventPayload]]
    ) -> None:
        """A run of delivery reports: their referrals locked with one statement and moved with
        one more. Any report refused aborts the run; the consumer then takes the reports one
        by one, so that only the refused one is parked."""
        reports = [_expect(payload, ReferralDelivered) for _, payload in batch]
        referrals = await store.lock_referrals(conn, [r.referral_id for r in reports])
        moves: dict[str, tuple[str, ReferralState, int, str | None]] = {}
        for (event, _), report in zip(batch, reports, strict=True):
            referral = _reported_referral(referrals.get(report.referral_id), report)
            state = _next(referral, ReferralEvent.DELIVERED)
            with logging_about(event.subject, event.id, event.traceparent):
                _log_state(referral, ReferralEvent.DELIVERED, state)
            earlier = moves.get(referral.referral_id)  # the same referral twice in a run
            attempts = max(report.attempts, earlier[2]) if earlier else report.attempts
            moves[referral.referral_id] = (referral.referral_id, state, attempts, None)
            referrals[referral.referral_id] = replace(referral, state=state)
        await store.record_deliveries(conn, list(moves.values()))

    async def on_referral_delivery_failed(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        failed = _expect(payload, ReferralDeliveryFailed)
        referral, state = await self._delivery_report(
            conn, failed, ReferralEvent.DELIVERY_FAILED, failed.attempts, failed.reason
        )
        if state == ReferralState.DELIVERY_FAILED:  # notify gave up: the next agency takes it
            await self.escalate(conn, referral, EscalationReason.DELIVERY_FAILED)

    async def _delivery_report(
        self,
        conn: Connection,
        report: ReferralDelivered | ReferralDeliveryFailed,
        happened: ReferralEvent,
        attempts: int,
        failure: str | None,
    ) -> tuple[store.StoredReferral, ReferralState]:
        referral = _reported_referral(await store.lock_referral(conn, report.referral_id), report)
        state = _next(referral, happened)
        await store.record_delivery(
            conn, referral.referral_id, state, attempts=attempts, failure=failure
        )
        _log_state(referral, happened, state)
        return referral, state

    # --- partner replies (notify republishes them) --------------------------------------------

    async def on_partner_reply(
        self, conn: Connection, event: CloudEvent, payload: EventPayload
    ) -> None:
        """Move the referral by the table; a reply it does not allow changes nothing and is
        answered with ReferralReplyRefused (a business refusal, not a broken message)."""
        if type(payload) not in REPLY_KINDS:
            raise Rejected(f"{payload.event_type()} is not a partner reply")
        reply: PartnerReply = payload  # type: ignore[assignment]
        kind, happened = REPLY_KINDS[type(payload)]
        referral = await store.lock_referral(conn, reply.referral_id)
        refusal: str | None = None
        state = ReferralState.REQUESTED
        if referral is None:
            refusal = f"unknown referral {reply.referral_id}"
        elif referral.case_id != reply.case_id:
            refusal = f"referral {reply.referral_id} is not part of case {reply.case_id}"
        elif referral.agency_id != reply.agency_id:
            refusal = f"referral {reply.referral_id} is not held by {reply.agency_id}"
        else:
            try:
                state = next_state(referral.referral_id, referral.state, happened)
            except IllegalTransition as exc:
                refusal = str(exc)
        if refusal is not None or referral is None:
            await self._refuse(conn, event, reply, kind, refusal or "unknown referral")
            return
        await store.record_reply(
            conn,
            referral.referral_id,
            state,
            happened.value,
            event.time,
            decline_reason=reply.reason.value if isinstance(reply, ReferralDeclined) else None,
        )
        _log_state(referral, happened, state)
        if state == ReferralState.DECLINED:
            await self.escalate(conn, referral, EscalationReason.DECLINED)

    async def _refuse(
        self, conn: Connection, event: CloudEvent, reply: PartnerReply, kind: ReplyKind, reason: str
    ) -> None:
        refused = ReferralReplyRefused(
            case_id=reply.case_id,
            referral_id=reply.referral_id,
            agency_id=reply.agency_id,
            reply=kind,
            reason=reason[:300],
        )
        await add_to_outbox(
            conn,
            make_event(
                refused,
                source=SOURCE,
                traceparent=event.traceparent or current_traceparent(),
                event_id=event_id(f"{event.id}:refused"),
                time=self.clock(),
            ),
        )
        log.warning(
            "partner reply refused",
            case_id=reply.case_id,
            referral_id=reply.referral_id,
            agency_id=reply.agency_id,
            reply=kind.value,
            event_id=event.id,
            reason=reason,
        )

    # --- escalation ---------------------------------------------------------------------------

    async def escalate(
        self, conn: Connection, referral: store.StoredReferral, reason: EscalationReason
    ) -> EscalationStep | None:
        """Hand a locked referral on to the next agency of its own stored chain.

        Stages ReferralEscalated and a ReferralRequested for the new referral, with ids derived
        from the new referral's id. None, and nothing changed, at the end of the chain.
        """
        busy = await store.agencies_holding(conn, referral.case_id, referral.service)
        step = next_escalation(
            referral.root_referral_id,
            referral.escalation_step,
            referral.escalation_chain,
            busy - {referral.agency_id},
        )
        if step is None:
            log.warning(
                "escalation chain exhausted",
                case_id=referral.case_id,
                referral_id=referral.referral_id,
                agency_id=referral.agency_id,
                reason=reason.value,
            )
            return None
        next_state(referral.referral_id, referral.state, ReferralEvent.ESCALATED)  # or raise
        now = self.clock()
        deadline = now + referral.acknowledge_within
        if not await store.add_escalated_referral(
            conn, referral, step, deadline, reason.value, created_at=now
        ):
            return None  # made before: its events were staged then
        await store.mark_escalated(conn, referral.referral_id, now)
        traceparent = current_traceparent()
        escalated = ReferralEscalated(
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            from_agency_id=referral.agency_id,
            to_agency_id=step.agency_id,
            reason=reason,
            step=step.step,
        )
        requested = ReferralRequested(
            case_id=referral.case_id,
            referral_id=step.referral_id,
            agency_id=step.agency_id,
            service=referral.service,
            priority=referral.priority,
            acknowledgement_deadline=deadline,
            escalation_chain=list(step.chain),
            sop_id=referral.sop_id,
            sop_version=referral.sop_version,
            rule_ids=list(referral.rule_ids),
            consent_override=referral.consent_override,
        )
        for payload, kind in ((escalated, "escalated"), (requested, "requested")):
            await add_to_outbox(
                conn,
                make_event(
                    payload,
                    source=SOURCE,
                    traceparent=traceparent,
                    event_id=event_id(f"{step.referral_id}:{kind}"),
                    time=now,
                ),
            )
        log.info(
            "referral escalated",
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            new_referral_id=step.referral_id,
            from_agency_id=referral.agency_id,
            to_agency_id=step.agency_id,
            reason=reason.value,
            step=step.step,
        )
        return step

    async def fire_deadline(self, conn: Connection, referral: store.StoredReferral) -> str:
        """A claimed deadline passed: escalate if still unacknowledged. Returns the outcome."""
        if referral.state not in AWAITING_ACKNOWLEDGEMENT:
            return "met"
        step = await self.escalate(conn, referral, EscalationReason.DEADLINE_MISSED)
        return "escalated" if step is not None else "chain_exhausted"


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
                acknowledgement_deadline=referral.acknowledgement_deadline,
                consent_override=referral.consent_override,
            )
            for referral in decision.referrals
        ],
        withheld=[
            WithheldReferral(
                service=withheld.service,
                agency_id=withheld.agency_id,
                rule_ids=list(withheld.rule_ids),
                reason=withheld.reason[:200],
            )
            for withheld in decision.withheld
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
        consent_override=referral.consent_override,
    )


def build_runtime(settings: RoutingSettings) -> tuple[ServiceRuntime, Routing]:
    """The runtime with routing's durable consumers registered, and the handlers behind them."""
    runtime = ServiceRuntime("routing", settings)
    routing = Routing(minute=timedelta(seconds=settings.minute_seconds))
    runtime.handle(CaseReported, routing.on_case_reported, durable="routing-case-reported")
    runtime.handle_batches(
        ReferralDelivered, routing.on_referrals_delivered, durable="routing-referral-delivered"
    )
    runtime.handle(
        ReferralDeliveryFailed,
        routing.on_referral_delivery_failed,
        durable="routing-referral-delivery-failed",
    )
    for reply in REPLY_KINDS:
        runtime.handle(reply, routing.on_partner_reply, durable=f"routing-referral-{reply.event}")
    return runtime, routing


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    """The HTTP API (see routing.api) around the consumers and the deadline watcher."""
    from routing.api import create_api  # the API module builds on this one

    return create_api(settings or RoutingSettings())


def _reported_referral(
    referral: store.StoredReferral | None, report: ReferralDelivered | ReferralDeliveryFailed
) -> store.StoredReferral:
    """The referral a delivery report is about, if the report names it rightly."""
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
    return referral


def _next(referral: store.StoredReferral, happened: ReferralEvent) -> ReferralState:
    try:
        return next_state(referral.referral_id, referral.state, happened)
    except IllegalTransition as exc:
        raise Rejected(str(exc)) from exc


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
    )


def _log_state(
    referral: store.StoredReferral, happened: ReferralEvent, state: ReferralState
) -> None:
    # DEBUG: one line per referral per step, the same facts the audit ledger keeps (and
    # the rujuk_open_referrals gauge counts); a case's routing and every failure stay at INFO.
    log.debug(
        "referral state",
        case_id=referral.case_id,
        referral_id=referral.referral_id,
        agency_id=referral.agency_id,
        referral_event=happened.value,
        previous=referral.state.value,
        state=state.value,
    )
