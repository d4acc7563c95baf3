"""Intake's bus handlers: what it consumes from the bus. The referral projection (each run of
routing's and notify's events folded into what an operator sees of a case), the SOPs in force
(routing's ``sop.in_force``: where reports may be filed, which agencies partners belong to),
the agencies open SOP proposals ask (``sop.proposed`` until withdrawn or published: they may
hold partner tokens too) and token events (which only tell it to forget remembered tokens:
intake checks its own table); and routing's questions which desa-level agency lists a case's
desa, answered from the vault (the desa never leaves intake)."""

from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter

from intake import events as intake_events
from intake import store
from intake.projection import PROJECTED, fold, referrals_read
from intake.vault import Vault, VaultError
from intake.villages import agency_listing, too_late_to_answer
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import (
    CaseClosed,
    CaseVillageAgencyAsked,
    EventPayload,
    SopInForce,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
    district_of,
)
from rujuk_runtime.access import TokenVerifier, token_handlers
from rujuk_runtime.consumer import BatchHandler, Handler, Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

VILLAGE_ANSWERS_TOO_LATE = Counter(
    "rujuk_village_answers_too_late_total",
    "Questions which desa-level agency lists a case's desa read after their answer_by: not "
    "answered (routing's timer resolves the pick)",
    ["district"],
)


async def project(conn: Connection, events: list[tuple[CloudEvent, EventPayload]]) -> None:
    """Project a run of events with three statements, however many there are: read the rows
    they touch (locked, so replicas projecting at once take turns), fold, write the result."""
    payloads = [payload for _, payload in events]
    current = await store.referrals_for_update(conn, referrals_read(payloads))
    changes = fold(payloads, current)
    closed_at = {p.case_id: e.time for e, p in events if isinstance(p, CaseClosed)}
    await store.put_referrals(conn, list(changes.referrals.values()))
    await store.set_case_statuses(conn, changes.case_status, closed_at)


def projection_handlers() -> dict[str, BatchHandler]:
    """The types that change what an operator sees. Intake reads the whole stream in order
    with one consumer, so a referral's `delivered` can never overtake the `routed` that
    created it; the other known types are skipped (``ServiceRuntime.skip_unhandled``)."""
    return {model.event_type(): project for model in PROJECTED}


def token_event_handlers(verifier: TokenVerifier) -> dict[str, Handler]:
    """Intake checks its own table; token events only tell it to forget remembered tokens."""
    return token_handlers(verifier, project=False)


async def project_sop_in_force(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    if not isinstance(payload, SopInForce):
        raise Rejected(f"expected {SopInForce.event_type()}, got {payload.event_type()}")
    await store.put_sop_in_force(conn, payload, event.time)


async def project_sop_proposal(conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
    """Whom the district's open proposals ask: opened by ``sop.proposed``, closed by its
    withdrawal (or supersession) or by the ``sop.published`` that names it."""
    if isinstance(payload, SopProposed):
        await store.open_sop_proposal(conn, payload)
    elif isinstance(payload, SopProposalWithdrawn):
        await store.close_sop_proposal(conn, payload.proposal_id, payload.district_code, event.time)
    elif isinstance(payload, SopPublished):
        # Published directly (no proposal_id): a proposal it supersedes is withdrawn by its
        # own event.
        if payload.proposal_id is not None:
            await store.close_sop_proposal(
                conn, payload.proposal_id, payload.district_code, event.time
            )
    else:
        raise Rejected(f"expected an SOP proposal event, got {payload.event_type()}")


def sop_handlers() -> dict[str, Handler]:
    """The SOPs in force and the agencies open proposals ask, as routing announces them (on
    the same ordered consumer)."""
    return {
        SopInForce.event_type(): project_sop_in_force,
        **{
            model.event_type(): project_sop_proposal
            for model in (SopProposed, SopProposalWithdrawn, SopPublished)
        },
    }


class VillageQuestions:
    """Answers ``case.village_agency_asked`` from the vault: the candidate that lists the
    case's desa, or none (also for a case intake does not know, or whose data was erased or
    does not open). Logs say which, never the desa. A question read after its ``answer_by``
    gets no answer at all (``villages.too_late_to_answer``): routing's timer resolves it."""

    def __init__(
        self, vault: Vault, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.vault = vault
        self.clock = clock

    async def answer(self, conn: Connection, event: CloudEvent, payload: EventPayload) -> None:
        if not isinstance(payload, CaseVillageAgencyAsked):
            raise Rejected(
                f"expected {CaseVillageAgencyAsked.event_type()}, got {payload.event_type()}"
            )
        now = self.clock()
        if too_late_to_answer(now, payload.answer_by):
            VILLAGE_ANSWERS_TOO_LATE.labels(district_of(payload.case_id)).inc()
            log.warning(
                "village pick answer too late",
                case_id=payload.case_id,
                question_id=payload.question_id,
                answer_by=payload.answer_by.isoformat() if payload.answer_by else None,
            )
            return
        agency_id, why = await self._agency(conn, payload)
        found = intake_events.village_agency_found(
            payload.case_id, payload.question_id, agency_id, traceparent=current_traceparent()
        )
        await add_to_outbox(conn, found)
        log.info(
            "village agency answered",
            case_id=payload.case_id,
            question_id=payload.question_id,
            agency_id=agency_id,
            why=why,
        )

    async def _agency(
        self, conn: Connection, asked: CaseVillageAgencyAsked
    ) -> tuple[str | None, str]:
        entry = await store.vault_entry(conn, asked.case_id)
        if entry is None:
            return None, "unknown_case"
        if entry.sealed is None:
            return None, "erased"
        try:
            record = self.vault.open(asked.case_id, entry.sealed)
        except VaultError:
            return None, "vault_cannot_open"
        village = record.get("village")
        kecamatan = entry.triage.get("kecamatan")
        agency_id = agency_listing(
            asked.candidates,
            kecamatan if isinstance(kecamatan, str) else None,
            village if isinstance(village, str) else None,
        )
        return agency_id, "listed" if agency_id else "not_listed"
