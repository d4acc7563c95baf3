"""Picks by village: a referral whose agency the case's desa decides (SOP ``pick: by_village``).

The desa stays in intake. When a decision has pending picks, routing keeps each as a row
(``village_picks``) and stages ``case.village_agency_asked`` in the same transaction as the
case and its other referrals, which go out at once: nothing waits on the answer. Intake
answers ``case.village_agency_found`` (an agency, or none); the first answer resolves the pick
into a ``referral.requested`` through the ordinary path (deadline counted from the answer,
the SOP's escalation chain, consent as decided). A pick with no answer by its due time is
resolved by the timer (``routing.deadlines``) with the agency for no match. A pick is resolved
once: a second answer, or an answer after the timer, changes nothing.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from routing import store
from routing.clock import Clock
from routing.decide import Decision, PendingPick
from routing.events import picked_referral_requested, village_agency_asked, village_question_id
from routing.lifecycle import StoredPick
from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.events import CaseVillageAgencyFound, PickedBy
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)


def picked_by(pick: StoredPick, agency_id: str | None, how: str) -> tuple[str, PickedBy]:
    """(the agency, how it was picked) for an answer (``agency_id``, None for none) or a
    timeout (``how`` "timeout"). How is what the referral shows (``referrals.picked_by``) and
    its ``referral.requested`` carries."""
    if how == "answer" and agency_id is not None:
        return agency_id, PickedBy.VILLAGE
    reason = pick.pending.none_reason  # kecamatan, fallback
    return (
        pick.pending.none_agency_id,
        PickedBy(f"{reason}_{'timeout' if how == 'timeout' else 'no_village'}"),
    )


@dataclass(frozen=True)
class Questions:
    """A decision's pending picks, each under its question id, with the events asking them:
    built (validated) before anything of the case is written, so a question that cannot be
    made fails the decision (the case unrouted) instead of the transaction."""

    asked: tuple[tuple[str, PendingPick], ...]
    events: tuple[CloudEvent, ...]
    asked_at: datetime
    due_at: datetime


def questions(
    decision: Decision, *, now: datetime, bound: timedelta, traceparent: str | None
) -> Questions:
    """The questions of the decision's pending picks, to be answered by ``now + bound``."""
    due_at = now + bound
    asked = tuple((village_question_id(decision.case_id, p), p) for p in decision.pending_picks)
    events = tuple(
        village_agency_asked(
            decision.case_id, question_id, pick, now, traceparent, answer_by=due_at
        )
        for question_id, pick in asked
    )
    return Questions(asked, events, asked_at=now, due_at=due_at)


async def ask(conn: Connection, decision: Decision, questions: Questions) -> None:
    """Keep the decision's pending picks and stage their questions (the caller's transaction)."""
    if not questions.asked:
        return
    await store.add_village_picks(
        conn, decision, questions.asked, asked_at=questions.asked_at, due_at=questions.due_at
    )
    await add_to_outbox(conn, *questions.events)
    for question_id, pick in questions.asked:
        log.info(
            "village pick asked",
            case_id=decision.case_id,
            question_id=question_id,
            service=pick.service.value,
            candidates=[c.agency_id for c in pick.candidates],
        )


async def take_answer(conn: Connection, found: CaseVillageAgencyFound, *, clock: Clock) -> None:
    """Resolve the pick intake answered; an answer for a resolved pick changes nothing.
    Rejected (parked) for an unknown question, another case's, or an agency not asked."""
    pick = await store.lock_pick(conn, found.question_id)
    if pick is None or pick.case_id != found.case_id:
        raise Rejected(f"no village pick {found.question_id} for case {found.case_id}")
    candidates = {c.agency_id for c in pick.pending.candidates}
    if found.agency_id is not None and found.agency_id not in candidates:
        raise Rejected(
            f"agency {found.agency_id} is not a candidate of {found.question_id} "
            f"({', '.join(sorted(candidates))})"
        )
    if pick.resolved_at is not None:
        log.info("village pick answered again", case_id=pick.case_id, question_id=pick.question_id)
        return
    await resolve(conn, pick, found.agency_id, "answer", clock())


async def resolve(
    conn: Connection, pick: StoredPick, agency_id: str | None, how: str, now: datetime
) -> str:
    """Issue the pick's referral (locked by the caller) and mark it resolved; the outcome:
    referred, already_referred (the agency holds that service in the case), case_closed."""
    agency, picked = picked_by(pick, agency_id, how)
    if await store.case_closed_at(conn, pick.case_id) is not None:
        outcome = "case_closed"
    elif await store.agency_has_service(conn, pick.case_id, agency, pick.pending.service):
        outcome = "already_referred"
    else:
        referral = pick.pending.referral(agency, now)
        await store.add_picked_referral(conn, pick, referral, picked_by=picked, at=now)
        await add_to_outbox(
            conn, picked_referral_requested(pick, referral, picked, now, current_traceparent())
        )
        outcome = "referred"
    await store.resolve_pick(
        conn, pick.question_id, at=now, agency_id=agency, how=how, outcome=outcome
    )
    log.info(
        "village pick resolved",
        case_id=pick.case_id,
        question_id=pick.question_id,
        referral_id=pick.pending.referral_id,
        agency_id=agency,
        picked_by=picked,
        outcome=outcome,
    )
    return outcome
