"""SOP proposals: a coordinator proposes a version, each agency whose duties change agrees or
objects (a reason code), and the coordinator publishes it from an effective date, once every
asked agency agreed or with an override whose reason is recorded. Every step is an event
staged in the outbox in the same transaction (sop.proposed, sop.signed_off, sop.objected,
sop.proposal_withdrawn, sop.published)."""

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from routing import store
from routing.clock import Clock
from routing.events import (
    sop_answer_refused,
    sop_answered,
    sop_proposal_withdrawn,
    sop_proposed,
)
from routing.sop import Sop, parse_sop
from routing.sop.diff import rule_diff
from routing.sop.duties import AgencyDutyChanges, duty_changes
from routing.sop.examples import example_problems
from routing.sop.signoff import Standing, StoredAnswer, StoredProposal, standing_of
from routing.sops import (
    Publication,
    PublishedSop,
    SopConflict,
    SopNotServed,
    SopsInForce,
    supersede_open_proposal,
)
from rujuk_contracts import CloudEvent
from rujuk_contracts.events import (
    AnswerVia,
    ObjectionReason,
    OverrideReason,
    SopAnswerGiven,
    SopAnswerRefusal,
)
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

# An effective date a little in the past is "now" (clocks differ, a form takes time to send).
EFFECTIVE_AT_SLACK = timedelta(minutes=1)


class ProposalNotFound(Exception):
    """No such proposal, or one the caller may not see (answered as the same)."""


class ProposalClosed(Exception):
    """The proposal was published, withdrawn or superseded: nothing more can be done to it."""

    def __init__(self, proposal: StoredProposal) -> None:
        super().__init__(
            f"usulan {proposal.proposal_id} sudah ditutup ({proposal.state}) / proposal "
            f"{proposal.proposal_id} is {proposal.state}: it takes no more answers"
        )
        self.state = proposal.state


class NotAsked(Exception):
    """An agency answered a proposal that does not ask it."""


class BadEffectiveDate(ValueError):
    """An effective date in the past."""


class NotAgreed(Exception):
    """Publishing without an override while some asked agency has not agreed."""

    def __init__(self, standing: Standing) -> None:
        parts = []
        if standing.objected:
            parts.append(
                "keberatan / objected: "
                + ", ".join(f"{agency} ({reason})" for agency, reason in standing.objected)
            )
        if standing.awaiting:
            parts.append("belum menjawab / yet to answer: " + ", ".join(standing.awaiting))
        super().__init__(
            "belum semua lembaga setuju / not every agency whose duties change agreed: "
            + "; ".join(parts)
            + ". Tunggu jawaban mereka atau beri override_reason / wait for their answers "
            "or give an override_reason"
        )
        self.standing = standing


@dataclass(frozen=True)
class Proposed:
    proposal: StoredProposal
    before: Sop | None  # the version in force when proposed
    after: Sop
    asked: list[AgencyDutyChanges]
    created: bool  # False: this very document is the district's open proposal already


def new_proposal_id() -> str:
    return f"prop-{uuid.uuid4().hex}"


async def propose(
    conn: Connection,
    sops: SopsInForce,
    text: str,
    proposed_by: str,
    clock: Clock,
    *,
    districts: Collection[str] | None,
) -> Proposed:
    """Check and store a proposed version, ask the agencies whose duties change, and stage
    ``sop.proposed``. It supersedes the district's open proposal, if any.

    Raises SopError (every problem, with its line), SopNotServed or SopConflict (its version
    does not follow the one in force); nothing changes then.
    """
    sop = parse_sop(text, origin="proposed document", run_examples=example_problems)
    if districts is not None and sop.district_code not in districts:
        raise SopNotServed(sop.district_code)
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    await store.lock_district_sops(conn, sop.district_code)
    before = await sops.latest_version(conn, sop.district_code, await sops.check_follows(conn, sop))
    asked = duty_changes(before, sop)
    open_one = await store.open_proposal(conn, sop.district_code)
    if open_one is not None and open_one.sha256 == sha256:
        return Proposed(open_one, before, sop, asked, created=False)
    now = clock()
    proposal_id = new_proposal_id()
    await supersede_open_proposal(
        conn, sop.district_code, at=now, by=proposed_by, superseded_by=proposal_id
    )
    directories = {a.id for a in sop.directory} | {
        a.id for a in (before.directory if before else [])
    }
    proposal = StoredProposal(
        proposal_id=proposal_id,
        district_code=sop.district_code,
        sop_id=sop.sop_id,
        version=sop.version,
        yaml=text,
        sha256=sha256,
        base_version=before.version if before else None,
        proposed_by=proposed_by,
        proposed_at=now,
        state="open",
        agency_ids=sorted(directories),
        closed_at=None,
        closed_by=None,
        asked={a.agency_id: [code.value for code in a.codes] for a in asked},
        answers={},
    )
    await store.add_proposal(conn, proposal)
    await add_to_outbox(conn, sop_proposed(proposal, asked, now, current_traceparent()))
    log.info(
        "sop proposed",
        proposal_id=proposal.proposal_id,
        district=sop.district_code,
        sop_version=sop.version,
        asked=sorted(proposal.asked),
        proposed_by=proposed_by,
    )
    return Proposed(proposal, before, sop, asked, created=True)


async def answer(
    conn: Connection,
    proposal_id: str,
    agency_id: str,
    *,
    reason: ObjectionReason | None,
    note_ref: str | None = None,
    via: AnswerVia,
    answered_by: str,
    clock: Clock,
    key: str | None = None,
) -> StoredProposal:
    """Record an asked agency's answer (``reason`` None: it agrees; else it objects), which
    replaces its earlier one, and stage ``sop.signed_off`` or ``sop.objected``. ``key`` tells
    this answer from others (a NATS reply's event id); by default the time it was given.

    Raises ProposalNotFound, NotAsked (the proposal does not ask this agency) or
    ProposalClosed (published, withdrawn or superseded).
    """
    proposal = await store.get_proposal(conn, proposal_id, lock=True)
    if proposal is None:
        raise ProposalNotFound(proposal_id)
    if agency_id not in proposal.asked:
        raise NotAsked(agency_id)
    if proposal.state != "open":
        raise ProposalClosed(proposal)
    now = clock()
    given = StoredAnswer(
        agency_id=agency_id,
        decision="agree" if reason is None else "object",
        reason=None if reason is None else reason.value,
        note_ref=note_ref if reason is not None else None,
        via=via.value,
        answered_by=answered_by,
        answered_at=now,
    )
    await store.put_answer(conn, proposal_id, given)
    event = sop_answered(proposal, given, key or now.isoformat(), current_traceparent())
    await add_to_outbox(conn, event)
    log.info(
        "sop proposal answered",
        proposal_id=proposal_id,
        agency_id=agency_id,
        decision=given.decision,
        reason=given.reason,
        via=given.via,
    )
    updated = await store.get_proposal(conn, proposal_id)
    assert updated is not None
    return updated


NATS_ANSWERED_BY = "partner:nats"  # no token: the agency's own nkey published it


async def answer_over_nats(
    conn: Connection, event: CloudEvent, given: SopAnswerGiven, clock: Clock
) -> StoredProposal | None:
    """Record an answer a partner sent on NATS (notify checked who sent it), keyed by its
    event id, so a redelivery records nothing new. One that cannot be recorded changes
    nothing and stages ``sop.answer_refused`` with the reason (notify forwards it to the
    agency's feed); None then. A proposal whose directory does not name the agency is
    answered as one that does not exist, as over HTTP."""
    proposal = await store.get_proposal(conn, given.proposal_id)
    refusal: tuple[SopAnswerRefusal, str] | None = None
    if proposal is None or given.agency_id not in proposal.agency_ids:
        refusal = (
            SopAnswerRefusal.UNKNOWN_PROPOSAL,
            f"usulan {given.proposal_id} tidak ada / no such proposal {given.proposal_id}",
        )
    elif (proposal.sop_id, proposal.district_code, proposal.version) != (
        given.sop_id,
        given.district_code,
        given.sop_version,
    ):
        refusal = (
            SopAnswerRefusal.NOT_VALID,
            f"usulan {proposal.proposal_id} adalah SOP {proposal.sop_id} "
            f"{proposal.district_code} v{proposal.version} / proposal {proposal.proposal_id} "
            f"is SOP {proposal.sop_id} for {proposal.district_code}, version {proposal.version}",
        )
    else:
        try:
            return await answer(
                conn,
                given.proposal_id,
                given.agency_id,
                reason=given.reason,
                note_ref=given.note_ref,
                via=AnswerVia.NATS,
                answered_by=NATS_ANSWERED_BY,
                clock=clock,
                key=event.id,
            )
        except NotAsked:
            refusal = (
                SopAnswerRefusal.NOT_ASKED,
                f"usulan ini tidak meminta persetujuan {given.agency_id} / this proposal does "
                f"not ask {given.agency_id} to sign it off",
            )
        except ProposalClosed as exc:
            refusal = (SopAnswerRefusal.PROPOSAL_CLOSED, str(exc))
    code, reason = refusal
    traceparent = event.traceparent or current_traceparent()
    await add_to_outbox(
        conn, sop_answer_refused(event.id, given, code, reason, clock(), traceparent)
    )
    log.warning("sop answer refused", proposal_id=given.proposal_id,
                agency_id=given.agency_id, refusal=code.value, event_id=event.id)  # fmt: skip
    return None


async def publish(
    conn: Connection,
    sops: SopsInForce,
    proposal_id: str,
    published_by: str,
    clock: Clock,
    *,
    effective_at: datetime | None,
    override: OverrideReason | None,
    districts: Collection[str] | None,
) -> tuple[PublishedSop, StoredProposal]:
    """Publish an open proposal from ``effective_at`` (None: now). Every asked agency must
    have agreed, unless ``override`` says why it binds them anyway: then the reason and the
    agencies that had not agreed are recorded (an override with everyone agreed is not).

    Raises ProposalNotFound (also for a district not served), ProposalClosed,
    BadEffectiveDate, NotAgreed or SopConflict; nothing changes then.
    """
    found = await store.get_proposal(conn, proposal_id)
    if found is None or (districts is not None and found.district_code not in districts):
        raise ProposalNotFound(proposal_id)
    await store.lock_district_sops(conn, found.district_code)
    proposal = await store.get_proposal(conn, proposal_id, lock=True)
    assert proposal is not None
    if proposal.state != "open":
        raise ProposalClosed(proposal)
    now = clock()
    if effective_at is not None and effective_at < now - EFFECTIVE_AT_SLACK:
        raise BadEffectiveDate(
            f"tanggal berlaku {effective_at.isoformat()} sudah lewat / effective_at "
            f"{effective_at.isoformat()} is in the past"
        )
    standing = standing_of(proposal)
    if standing.not_agreed and override is None:
        raise NotAgreed(standing)
    sop = parse_sop(proposal.yaml, origin=f"proposal {proposal_id}", run_examples=example_problems)
    base = await sops.latest_version(conn, sop.district_code, await sops.check_follows(conn, sop))
    if (base.version if base else None) != proposal.base_version:
        raise SopConflict(
            f"SOP {sop.district_code} v{base.version if base else '-'} kini versi terbaru, bukan "
            f"v{proposal.base_version} yang dibandingkan usulan ini: usulkan lagi / SOP "
            f"{sop.district_code} v{base.version if base else '-'} is now the latest version, "
            f"not v{proposal.base_version} this proposal was compared with: propose it again"
        )
    publication = Publication(
        effective_at=effective_at,
        proposal_id=proposal_id,
        override_reason=override if standing.not_agreed else None,
        agencies_not_agreed=tuple(standing.not_agreed),
    )
    published = await sops.store_published(
        conn, sop, proposal.yaml, proposal.sha256, published_by, clock, publication
    )
    await store.close_proposals(
        conn, sop.district_code, "published", at=now, by=published_by, proposal_id=proposal_id
    )
    closed = await store.get_proposal(conn, proposal_id)
    assert closed is not None
    return published, closed


async def withdraw(
    conn: Connection,
    proposal_id: str,
    withdrawn_by: str,
    clock: Clock,
    *,
    districts: Collection[str] | None,
) -> StoredProposal:
    """Withdraw an open proposal and stage ``sop.proposal_withdrawn``. Raises
    ProposalNotFound (also for a district not served) or ProposalClosed."""
    proposal = await store.get_proposal(conn, proposal_id, lock=True)
    if proposal is None or (districts is not None and proposal.district_code not in districts):
        raise ProposalNotFound(proposal_id)
    if proposal.state != "open":
        raise ProposalClosed(proposal)
    now = clock()
    await store.close_proposals(
        conn, proposal.district_code, "withdrawn", at=now, by=withdrawn_by, proposal_id=proposal_id
    )
    await add_to_outbox(
        conn, sop_proposal_withdrawn(proposal, withdrawn_by, now, current_traceparent())
    )
    closed = await store.get_proposal(conn, proposal_id)
    assert closed is not None
    return closed


def rule_diff_of(before: Sop | None, after: Sop) -> dict[str, Any]:
    """The rule-by-rule diff from the version in force (``routing.sop.diff``); a district's
    first version adds every rule and every agency."""
    if before is not None:
        return rule_diff(before, after).to_json()
    return {
        "before": None,
        "after": after.label,
        "unchanged": False,
        "summary": {
            "rules_added": [rule.id for rule in after.rules],
            "agencies_added": [agency.id for agency in after.directory],
        },
    }
