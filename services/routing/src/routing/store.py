"""Routing's PostgreSQL adapter: cases, referrals, deadlines, published SOPs and their
announcements, unrouted cases, on-call alerts.

The only module that writes SQL.
"""

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from routing.decide import (
    Decision,
    PendingPick,
    ReferralDecision,
    VillageCandidate,
    WithheldReferral,
)
from routing.lifecycle import (
    SETTLED_STATES,
    EscalationStep,
    ReferralState,
    StoredCase,
    StoredPick,
    StoredReferral,
    UnroutedCase,
    UnroutedReason,
)
from routing.monitoring import MonitoringRows
from routing.paging import OnCallAlert, PagePlan
from routing.sop.signoff import StoredAnswer, StoredProposal
from routing.stats import StatsRows, uncovered, whole_months
from rujuk_contracts.events import (
    CloseReason,
    EscalationReason,
    OnCallAckVia,
    OnCallContact,
    Priority,
    Service,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.db import Connection, columns

_REFERRAL_COLUMNS = (
    "referral_id, case_id, agency_id, service, priority, state, acknowledgement_deadline, "
    "escalation_chain, escalation_step, rule_ids, consent_override, sop_id, sop_version, "
    "acknowledge_within, root_referral_id"
)


@dataclass(frozen=True)
class StoredSop:
    district_code: str
    version: int
    sop_id: str
    yaml: str
    sha256: str
    published_by: str
    published_at: datetime
    effective_at: datetime | None = None  # None: when published
    proposal_id: str | None = None
    override_reason: str | None = None
    agencies_not_agreed: list[str] = field(default_factory=list)


async def add_case(
    conn: Connection,
    decision: Decision,
    *,
    district_code: str,
    reported_at: datetime,
    routed_at: datetime,
    violence_types: Sequence[str] = (),
    triage: TriageFacts | None = None,
    channel: str | None = None,
) -> bool:
    """Store a routed case (with its triage facts, which the impact simulation reads, and its
    channel: how the report came in, case.reported's), its referrals and their deadlines;
    False (and nothing stored) if the case was routed before."""
    inserted = await conn.fetchval(
        "INSERT INTO cases (case_id, district_code, sop_id, sop_version, rules_fired, withheld, "
        "reported_at, routed_at, violence_types, triage, channel) VALUES ($1, $2, $3, $4, $5, "
        "$6::jsonb, $7, $8, $9, $10::jsonb, $11) ON CONFLICT (case_id) DO NOTHING RETURNING true",
        decision.case_id,
        district_code,
        decision.sop_id,
        decision.sop_version,
        list(decision.rules_fired),
        json.dumps([_withheld_row(w) for w in decision.withheld]),
        reported_at,
        routed_at,
        list(violence_types),
        None if triage is None else triage.model_dump_json(),
        channel,
    )
    if not inserted:
        return False
    await conn.executemany(
        _ADD_REFERRAL,
        [
            # routed_at: the time the deadline counts from
            _referral_row(decision.case_id, decision.sop_id, decision.sop_version, r, routed_at)
            for r in decision.referrals
        ],
    )
    await conn.executemany(
        "INSERT INTO deadlines (referral_id, due_at) VALUES ($1, $2)",
        [(r.referral_id, r.acknowledgement_deadline) for r in decision.referrals],
    )
    return True


async def add_escalated_referral(
    conn: Connection,
    previous: StoredReferral,
    step: EscalationStep,
    deadline: datetime,
    reason: str,
    created_at: datetime,
) -> bool:
    """The referral that takes over from ``previous``, with its deadline; False if it exists."""
    inserted = await conn.fetchval(
        "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, "
        "acknowledgement_deadline, escalation_chain, escalation_step, rule_ids, "
        "consent_override, sop_id, sop_version, acknowledge_within, escalated_from, "
        "root_referral_id, escalation_reason, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
        "ON CONFLICT (referral_id) DO NOTHING RETURNING true",
        step.referral_id,
        previous.case_id,
        step.agency_id,
        previous.service.value,
        previous.priority.value,
        deadline,
        list(step.chain),
        step.step,
        list(previous.rule_ids),
        previous.consent_override,
        previous.sop_id,
        previous.sop_version,
        previous.acknowledge_within,
        previous.referral_id,
        previous.root_referral_id,
        reason,
        created_at,
    )
    if not inserted:
        return False
    await conn.execute(
        "INSERT INTO deadlines (referral_id, due_at) VALUES ($1, $2)", step.referral_id, deadline
    )
    return True


async def lock_referral(conn: Connection, referral_id: str) -> StoredReferral | None:
    """The referral, locked for the rest of the transaction so transitions do not race."""
    row = await conn.fetchrow(
        f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE referral_id = $1 FOR UPDATE",  # noqa: S608
        referral_id,
    )
    return None if row is None else _referral(row)


async def lock_referrals(conn: Connection, referral_ids: list[str]) -> dict[str, StoredReferral]:
    """Several referrals, locked in referral_id order (two batches cannot deadlock)."""
    rows = await conn.fetch(
        f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE referral_id = ANY($1::text[]) "  # noqa: S608
        "ORDER BY referral_id FOR UPDATE",
        referral_ids,
    )
    return {row["referral_id"]: _referral(row) for row in rows}


async def set_state(conn: Connection, referral_id: str, state: ReferralState) -> None:
    await conn.execute(
        "UPDATE referrals SET state = $2, updated_at = now() WHERE referral_id = $1",
        referral_id,
        state.value,
    )


# The reply -> the column that keeps its time. The earliest of acknowledge, accept and decline
# is also the acknowledgement (the deadline is about the first answer). Earliest by the reply's
# time, not by arrival: each reply kind has its own consumer, so a partner's accept can reach
# routing before the acknowledgement it sent just before.
REPLY_TIME_COLUMNS = {
    "acknowledged": "acknowledged_at",
    "accepted": "accepted_at",
    "declined": "declined_at",
    "completed": "completed_at",
}
ANSWERS = ("acknowledged", "accepted", "declined")


async def record_reply(
    conn: Connection,
    referral_id: str,
    state: ReferralState,
    reply: str,
    at: datetime,
    *,
    decline_reason: str | None = None,
) -> None:
    """Set the state after a partner's reply and keep the reply's time (the earliest of each;
    ``least`` skips a NULL)."""
    column = REPLY_TIME_COLUMNS[reply]
    its_time = "" if column == "acknowledged_at" else f"{column} = least({column}, $3), "
    await conn.execute(
        f"UPDATE referrals SET state = $2, updated_at = now(), {its_time}"  # noqa: S608
        "acknowledged_at = CASE WHEN $4 THEN least(acknowledged_at, $3::timestamptz) "
        "ELSE acknowledged_at END, "
        "decline_reason = coalesce(decline_reason, $5) WHERE referral_id = $1",
        referral_id,
        state.value,
        at,
        reply in ANSWERS,
        decline_reason,
    )


async def mark_escalated(conn: Connection, referral_id: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE referrals SET state = 'escalated', escalated_at = $2, updated_at = now() "
        "WHERE referral_id = $1",
        referral_id,
        at,
    )


async def record_delivery(
    conn: Connection,
    referral_id: str,
    state: ReferralState,
    *,
    attempts: int,
    failure: str | None = None,
) -> None:
    """Set the state after a delivery report, with notify's attempt count and failure reason."""
    await record_deliveries(conn, [(referral_id, state, attempts, failure)])


async def record_deliveries(
    conn: Connection, moves: list[tuple[str, ReferralState, int, str | None]]
) -> None:
    """``record_delivery`` for many referrals (referral id, state, attempts, failure) in one
    statement; each referral at most once."""
    await conn.execute(
        "UPDATE referrals r SET state = m.state, "
        "delivery_attempts = GREATEST(r.delivery_attempts, m.attempts), "
        "last_delivery_failure = COALESCE(m.failure, r.last_delivery_failure), updated_at = now() "
        "FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) "
        "AS m (referral_id, state, attempts, failure) "
        "WHERE r.referral_id = m.referral_id AND r.referral_id = ANY($1::text[])",
        *columns(((rid, state.value, n, failure) for rid, state, n, failure in moves), 4),
    )


async def agencies_holding(conn: Connection, case_id: str, service: Service) -> set[str]:
    """Agencies with an open referral for this service in the case."""
    rows = await conn.fetch(
        "SELECT agency_id FROM referrals WHERE case_id = $1 AND service = $2 "
        "AND state <> ALL($3::text[])",
        case_id,
        service.value,
        [state.value for state in SETTLED_STATES | {ReferralState.DECLINED}],
    )
    return {row["agency_id"] for row in rows}


# --- deadlines ----------------------------------------------------------------------------


async def claim_due_deadlines(
    conn: Connection, now: datetime, limit: int
) -> list[tuple[StoredReferral, datetime]]:
    """Deadlines due by ``now`` that no one else holds, with their referrals, both locked.

    ``SKIP LOCKED`` on the deadline and the referral: two routing replicas never take the same
    deadline, and the watcher never waits for a consumer that holds the referral (it takes the
    deadline on its next round instead), so the two cannot deadlock.
    """
    rows = await conn.fetch(
        f"SELECT d.due_at, {', '.join('r.' + c for c in _REFERRAL_COLUMNS.split(', '))} "  # noqa: S608
        "FROM deadlines d JOIN referrals r USING (referral_id) "
        "WHERE d.fired_at IS NULL AND d.due_at <= $1 ORDER BY d.due_at LIMIT $2 "
        "FOR UPDATE OF d, r SKIP LOCKED",
        now,
        limit,
    )
    return [(_referral(row), row["due_at"]) for row in rows]


async def mark_deadline(
    conn: Connection, referral_id: str, fired_at: datetime, outcome: str
) -> None:
    await conn.execute(
        "UPDATE deadlines SET fired_at = $2, outcome = $3 WHERE referral_id = $1",
        referral_id,
        fired_at,
        outcome,
    )


# --- picks by village ----------------------------------------------------------------------

_PICK_COLUMNS = (
    "question_id, case_id, referral_id, service, priority, acknowledge_within, escalate_to, "
    "coordinator, rule_ids, consent_override, sop_id, sop_version, candidates, none_agency_id, "
    "none_reason, due_at, resolved_at"
)


async def add_village_picks(
    conn: Connection,
    decision: Decision,
    questions: Sequence[tuple[str, PendingPick]],
    *,
    asked_at: datetime,
    due_at: datetime,
) -> None:
    """The decision's pending picks, each under its question id, to be answered by ``due_at``."""
    await conn.executemany(
        f"INSERT INTO village_picks ({_PICK_COLUMNS.replace(', resolved_at', '')}, asked_at) "  # noqa: S608
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, "
        "$17) ON CONFLICT (question_id) DO NOTHING",
        [
            (
                question_id,
                decision.case_id,
                pick.referral_id,
                pick.service.value,
                pick.priority.value,
                pick.acknowledge_within,
                list(pick.escalate_to),
                pick.coordinator,
                list(pick.rule_ids),
                pick.consent_override,
                decision.sop_id,
                decision.sop_version,
                json.dumps(
                    [
                        {"agency_id": c.agency_id, "villages": list(c.villages)}
                        for c in pick.candidates
                    ]
                ),
                pick.none_agency_id,
                pick.none_reason,
                due_at,
                asked_at,
            )
            for question_id, pick in questions
        ],
    )


async def lock_pick(conn: Connection, question_id: str) -> StoredPick | None:
    row = await conn.fetchrow(
        f"SELECT {_PICK_COLUMNS} FROM village_picks WHERE question_id = $1 FOR UPDATE",  # noqa: S608
        question_id,
    )
    return None if row is None else _pick(row)


async def claim_due_picks(conn: Connection, now: datetime, limit: int) -> list[StoredPick]:
    """Open picks past their due time that no one else holds, locked (as deadlines are: two
    replicas never take the same, and the timer never waits for the answer's consumer)."""
    rows = await conn.fetch(
        f"SELECT {_PICK_COLUMNS} FROM village_picks WHERE resolved_at IS NULL AND due_at <= $1 "  # noqa: S608
        "ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_pick(row) for row in rows]


async def resolve_pick(
    conn: Connection, question_id: str, *, at: datetime, agency_id: str, how: str, outcome: str
) -> None:
    await conn.execute(
        "UPDATE village_picks SET resolved_at = $2, resolved_agency_id = $3, resolved_how = $4, "
        "outcome = $5 WHERE question_id = $1",
        question_id,
        at,
        agency_id,
        how,
        outcome,
    )


async def agency_has_service(
    conn: Connection, case_id: str, agency_id: str, service: Service
) -> bool:
    """Whether the agency was referred this service in the case already (in any state)."""
    found = await conn.fetchval(
        "SELECT true FROM referrals WHERE case_id = $1 AND agency_id = $2 AND service = $3 LIMIT 1",
        case_id,
        agency_id,
        service.value,
    )
    return found is True


async def case_closed_at(conn: Connection, case_id: str) -> datetime | None:
    """When the case was closed, the row share-locked until the transaction ends: a close
    under way (it locks the row for update) is waited for and then seen, and none starts
    before a referral made meanwhile is committed (its check of open referrals sees it)."""
    closed: datetime | None = await conn.fetchval(
        "SELECT closed_at FROM cases WHERE case_id = $1 FOR SHARE", case_id
    )
    return closed


_ADD_REFERRAL = (
    "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, "
    "acknowledgement_deadline, escalation_chain, rule_ids, consent_override, sop_id, "
    "sop_version, acknowledge_within, root_referral_id, created_at, picked_by) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $1, $13, $14)"
)


def _referral_row(
    case_id: str,
    sop_id: str,
    sop_version: int,
    referral: ReferralDecision,
    created_at: datetime,
    picked_by: str | None = None,
) -> tuple[object, ...]:
    """A referral's row for ``_ADD_REFERRAL``: its own root (a first referral, not a step)."""
    return (
        referral.referral_id,
        case_id,
        referral.agency_id,
        referral.service.value,
        referral.priority.value,
        referral.acknowledgement_deadline,
        list(referral.escalation_chain),
        list(referral.rule_ids),
        referral.consent_override,
        sop_id,
        sop_version,
        referral.acknowledge_within,
        created_at,
        picked_by,
    )


async def add_picked_referral(
    conn: Connection, pick: StoredPick, referral: ReferralDecision, *, picked_by: str, at: datetime
) -> None:
    """The referral a resolved pick becomes, with its deadline."""
    await conn.execute(
        _ADD_REFERRAL,
        *_referral_row(pick.case_id, pick.sop_id, pick.sop_version, referral, at, picked_by),
    )
    await conn.execute(
        "INSERT INTO deadlines (referral_id, due_at) VALUES ($1, $2)",
        referral.referral_id,
        referral.acknowledgement_deadline,
    )


def _pick(row: asyncpg.Record) -> StoredPick:
    get = row.__getitem__
    candidates = json.loads(get("candidates"))
    return StoredPick(
        question_id=get("question_id"),
        case_id=get("case_id"),
        sop_id=get("sop_id"),
        sop_version=get("sop_version"),
        due_at=get("due_at"),
        resolved_at=get("resolved_at"),
        pending=PendingPick(
            referral_id=get("referral_id"),
            service=Service(get("service")),
            priority=Priority(get("priority")),
            acknowledge_within=get("acknowledge_within"),
            escalate_to=tuple(get("escalate_to")),
            coordinator=get("coordinator"),
            rule_ids=tuple(get("rule_ids")),
            consent_override=get("consent_override"),
            candidates=tuple(
                VillageCandidate(c["agency_id"], tuple(c["villages"])) for c in candidates
            ),
            none_agency_id=get("none_agency_id"),
            none_reason=get("none_reason"),
        ),
    )


# --- cases --------------------------------------------------------------------------------


async def lock_case(
    conn: Connection, case_id: str, districts: list[str] | None
) -> StoredCase | None:
    """The case and its referrals; the case row is locked so two closes do not race. None
    when there is no such case in ``districts`` (None: in any district)."""
    row = await conn.fetchrow(
        "SELECT case_id, closed_at FROM cases WHERE case_id = $1 "
        "AND ($2::text[] IS NULL OR district_code = ANY($2::text[])) FOR UPDATE",
        case_id,
        districts,
    )
    if row is None:
        return None
    referrals = await conn.fetch(
        f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE case_id = $1 "  # noqa: S608
        "ORDER BY referral_id",
        case_id,
    )
    return StoredCase(row["case_id"], row["closed_at"], tuple(map(_referral, referrals)))


async def close_case(
    conn: Connection, case_id: str, *, closed_at: datetime, closed_by: str, reason: CloseReason
) -> None:
    await conn.execute(
        "UPDATE cases SET closed_at = $2, closed_by = $3, close_reason = $4 WHERE case_id = $1",
        case_id,
        closed_at,
        closed_by,
        reason.value,
    )


# --- published SOPs -----------------------------------------------------------------------


async def lock_district_sops(conn: Connection, district_code: str) -> None:
    """One publisher per district at a time: held until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('routing.sops:' || $1))", district_code
    )


async def newest_sop(conn: Connection, district_code: str, now: datetime) -> tuple[int, str] | None:
    """(version, sha256) of the newest published SOP of the district in effect at ``now``."""
    row = await conn.fetchrow(
        "SELECT version, sha256 FROM sops WHERE district_code = $1 AND effective_at <= $2 "
        "ORDER BY version DESC LIMIT 1",
        district_code,
        now,
    )
    return None if row is None else (row["version"], row["sha256"])


async def newest_published_version(conn: Connection, district_code: str) -> int | None:
    """The highest version published for the district, in effect or still to come."""
    version: int | None = await conn.fetchval(
        "SELECT max(version) FROM sops WHERE district_code = $1", district_code
    )
    return version


async def get_sop(conn: Connection, district_code: str, version: int) -> StoredSop | None:
    row = await conn.fetchrow(
        "SELECT * FROM sops WHERE district_code = $1 AND version = $2", district_code, version
    )
    return None if row is None else StoredSop(**dict(row))


async def newest_sops(conn: Connection, now: datetime) -> list[StoredSop]:
    """The newest published SOP of every district, of those in effect at ``now``."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (district_code) * FROM sops WHERE effective_at <= $1 "
        "ORDER BY district_code, version DESC",
        now,
    )
    return [StoredSop(**dict(row)) for row in rows]


async def add_sop(conn: Connection, sop: StoredSop) -> bool:
    """Store a published version; False if that district and version exist already."""
    inserted = await conn.fetchval(
        "INSERT INTO sops (district_code, version, sop_id, yaml, sha256, published_by, "
        "published_at, effective_at, proposal_id, override_reason, agencies_not_agreed) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (district_code, version) DO NOTHING RETURNING true",
        sop.district_code,
        sop.version,
        sop.sop_id,
        sop.yaml,
        sop.sha256,
        sop.published_by,
        sop.published_at,
        sop.effective_at or sop.published_at,
        sop.proposal_id,
        sop.override_reason,
        list(sop.agencies_not_agreed),
    )
    return bool(inserted)


async def add_sop_announcement(
    conn: Connection, district_code: str, version: int, sha256: str, at: datetime
) -> bool:
    """Note that this SOP document was announced as in force; False if it was before."""
    inserted = await conn.fetchval(
        "INSERT INTO sop_announcements (district_code, version, sha256, announced_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        district_code,
        version,
        sha256,
        at,
    )
    return bool(inserted)


# --- unrouted cases -----------------------------------------------------------------------


async def record_unrouted(
    conn: Connection,
    *,
    case_id: str,
    district_code: str,
    reason: str,
    detail: str,
    reported: str,
    reported_at: datetime,
    at: datetime,
) -> None:
    """Keep a case routing could not route (``reported``: the case.reported payload as JSON);
    another attempt on an open one counts and keeps the latest reason. A case closed or routed
    meanwhile stays as it is."""
    await conn.execute(
        "INSERT INTO unrouted_cases (case_id, district_code, reason, detail, reported, "
        "reported_at, since, last_attempt_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $7) "
        "ON CONFLICT (case_id) DO UPDATE SET reason = EXCLUDED.reason, "
        "detail = EXCLUDED.detail, attempts = unrouted_cases.attempts + 1, "
        "last_attempt_at = EXCLUDED.last_attempt_at WHERE unrouted_cases.resolved_at IS NULL",
        case_id,
        district_code,
        reason,
        detail,
        reported,
        reported_at,
        at,
    )


_UNROUTED_COLUMNS = (
    "case_id, district_code, reason, detail, since, attempts, reported, resolved_at, resolution"
)


async def lock_unrouted(conn: Connection, case_id: str) -> UnroutedCase | None:
    """The unrouted case (open or resolved), locked until the transaction ends."""
    row = await conn.fetchrow(
        f"SELECT {_UNROUTED_COLUMNS} FROM unrouted_cases WHERE case_id = $1 FOR UPDATE",  # noqa: S608
        case_id,
    )
    if row is None:
        return None
    return UnroutedCase(
        case_id=row["case_id"],
        district_code=row["district_code"],
        reason=UnroutedReason(row["reason"]),
        detail=row["detail"],
        since=row["since"],
        attempts=row["attempts"],
        reported=json.loads(row["reported"]),
        resolved_at=row["resolved_at"],
        resolution=row["resolution"],
    )


async def resolve_unrouted(
    conn: Connection, case_id: str, *, resolution: str, by: str, at: datetime
) -> None:
    await conn.execute(
        "UPDATE unrouted_cases SET resolved_at = $2, resolution = $3, resolved_by = $4 "
        "WHERE case_id = $1 AND resolved_at IS NULL",
        case_id,
        at,
        resolution,
        by,
    )


async def list_unrouted(
    conn: Connection, *, districts: list[str] | None, limit: int, offset: int
) -> list[dict[str, object]]:
    """Open unrouted cases, oldest first; ``districts`` None: every district."""
    rows = await conn.fetch(
        "SELECT case_id, district_code, reason, detail, since, attempts, last_attempt_at, "
        "reported_at FROM unrouted_cases WHERE resolved_at IS NULL "
        "AND ($1::text[] IS NULL OR district_code = ANY($1::text[])) "
        "ORDER BY since, case_id LIMIT $2 OFFSET $3",
        districts,
        limit,
        offset,
    )
    return [dict(row) for row in rows]


async def unrouted_by_district(conn: Connection) -> list[tuple[str, int]]:
    """(district, open unrouted cases), for the rujuk_cases_unrouted gauge."""
    rows = await conn.fetch(
        "SELECT district_code, count(*) AS n FROM unrouted_cases WHERE resolved_at IS NULL "
        "GROUP BY district_code"
    )
    return [(row["district_code"], row["n"]) for row in rows]


async def routed_case_district(conn: Connection, case_id: str) -> str | None:
    """The district of a case routing routed, or None."""
    district: str | None = await conn.fetchval(
        "SELECT district_code FROM cases WHERE case_id = $1", case_id
    )
    return district


def _referral(row: asyncpg.Record) -> StoredReferral:
    get = row.__getitem__
    return StoredReferral(
        referral_id=get("referral_id"),
        case_id=get("case_id"),
        agency_id=get("agency_id"),
        state=ReferralState(get("state")),
        service=Service(get("service")),
        priority=Priority(get("priority")),
        acknowledgement_deadline=get("acknowledgement_deadline"),
        escalation_chain=tuple(get("escalation_chain")),
        escalation_step=get("escalation_step"),
        rule_ids=tuple(get("rule_ids")),
        consent_override=get("consent_override"),
        sop_id=get("sop_id"),
        sop_version=get("sop_version"),
        acknowledge_within=get("acknowledge_within"),
        root_referral_id=get("root_referral_id"),
    )


def _withheld_row(withheld: WithheldReferral) -> dict[str, object]:
    return {
        "service": withheld.service.value,
        "agency_id": withheld.agency_id,
        "rule_ids": list(withheld.rule_ids),
        "reason": withheld.reason,
    }


# The states the open-referrals gauge counts (routing.lifecycle.OPEN_STATES; a test keeps the
# two equal), written out so that the partial index referrals_open_by_agency serves the count.
GAUGED_STATES = ("requested", "delivered", "delivery_failed", "acknowledged")


async def referrals_by_state_and_agency(conn: Connection) -> list[tuple[str, str, int]]:
    """(state, agency, count) of the open referrals, for the open-referrals metric: read from
    an index of the open ones, so its cost does not grow with the years of closed ones."""
    rows = await conn.fetch(
        "SELECT state, agency_id, count(*) AS n FROM referrals "
        "WHERE state IN ('requested', 'delivered', 'delivery_failed', 'acknowledged') "
        "GROUP BY state, agency_id"
    )
    return [(row["state"], row["agency_id"], row["n"]) for row in rows]


# --- the coordinator's console and monitoring & evaluation --------------------------------

# Nothing more will come of it: done, refused, withdrawn or handed on to the next agency.
_OPEN = "state NOT IN ('completed', 'declined', 'cancelled', 'escalated')"


# The agency's first answer came after the deadline, or none came and the deadline passed
# (or routing handed the referral on before an answer), "now" being parameter ``$now``.
def _missed(now: int) -> str:
    return (
        "CASE WHEN acknowledged_at IS NOT NULL THEN acknowledged_at > acknowledgement_deadline "
        f"ELSE escalated_at IS NOT NULL OR acknowledgement_deadline < ${now} END"
    )


_MET = "coalesce(acknowledged_at <= acknowledgement_deadline, false)"
_PRIORITY_RANK = "CASE priority WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END"
# date_part, not extract: extract gives numeric, and the per-agency median sorts these values
# (a year of a province: 90,000 of them); float8 sorts several times faster.
_MINUTES_TO_ANSWER = "date_part('epoch', acknowledged_at - created_at) / 60"


def _in_districts(parameter: int) -> str:
    """A case in the districts of text[] parameter ``$parameter``, or anywhere when it is
    NULL (province level)."""
    return f"(${parameter}::text[] IS NULL OR district_code = ANY(${parameter}::text[]))"


def _referral_in_districts(parameter: int) -> str:
    """A referral whose case is in the districts of ``$parameter`` (NULL: anywhere)."""
    return (
        f"(${parameter}::text[] IS NULL OR case_id IN "  # noqa: S608 (a number, not input)
        f"(SELECT case_id FROM cases WHERE district_code = ANY(${parameter}::text[])))"
    )


async def list_referrals(
    conn: Connection,
    *,
    now: datetime,
    agency_id: str | None = None,
    states: Sequence[str] = (),
    open_only: bool | None = None,
    case_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    districts: list[str] | None,
) -> list[dict[str, object]]:
    """Referrals for the console: open ones first, most urgent first, then newest. Only
    those of cases in ``districts`` (None: every district)."""
    rows = await conn.fetch(
        "SELECT referral_id, case_id, agency_id, service, priority, state, "  # noqa: S608
        f"{_OPEN} AS open, created_at AS requested_at, acknowledgement_deadline, "
        f"{_missed(1)} AS deadline_missed, escalation_step, escalated_from, escalation_reason, "
        "escalated_at, acknowledged_at, accepted_at, declined_at, decline_reason, completed_at, "
        "picked_by FROM referrals WHERE ($2::text IS NULL OR agency_id = $2) "
        "AND (cardinality($3::text[]) = 0 OR state = ANY($3::text[])) "
        f"AND ($4::boolean IS NULL OR ({_OPEN}) = $4) "
        "AND ($5::text IS NULL OR case_id = $5) "
        f"AND {_referral_in_districts(8)} "
        f"ORDER BY {_OPEN} DESC, {_PRIORITY_RANK}, created_at DESC, referral_id "
        "LIMIT $6 OFFSET $7",
        now,
        agency_id,
        list(states),
        open_only,
        case_id,
        limit,
        offset,
        districts,
    )
    return [dict(row) for row in rows]


async def period_stats(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    timezone: str,
    now: datetime,
    districts: list[str] | None,
    rolled_up: bool = True,
) -> StatsRows:
    """Cases reported and referrals made in [start, end), in one consistent snapshot; only
    cases of ``districts`` and their referrals (None: every district). Whole settled months
    come from their roll-ups (rolled up here first where missing), the rest from the rows;
    with ``rolled_up`` false, all of it from the rows."""
    if rolled_up:
        await _roll_up_period(conn, start, end, timezone, now)
    async with _one_snapshot(conn) as held:
        return await _stats_on(held, start, end, timezone, now, districts, rolled_up)


async def period_stats_shared(
    pool: asyncpg.Pool,
    *,
    start: datetime,
    end: datetime,
    timezone: str,
    now: datetime,
    districts: list[str] | None,
) -> StatsRows:
    """``period_stats`` with its three parts asked at once, on connections that share one
    snapshot (``in_one_snapshot``): a period read from its rows takes about the time of its
    slowest part (the per-agency median) rather than the sum (bench/years.py;
    docs/operations.md)."""
    async with pool.acquire() as conn:
        await _roll_up_period(conn, start, end, timezone, now)
    async with in_one_snapshot(pool, len(_STATS_PARTS)) as held:
        return await _stats_on(held, start, end, timezone, now, districts)


async def _stats_on(
    held: Sequence[Connection],
    start: datetime,
    end: datetime,
    zone: str,
    now: datetime,
    districts: list[str] | None,
    rolled_up: bool = True,
) -> StatsRows:
    """The figures read on connections in one snapshot (``_one_snapshot``, ``in_one_snapshot``)."""
    period = await _period(held[0], start, end, zone, now, districts, rolled_up)
    parts = await run_parts(held, [functools.partial(part, p=period) for part in _STATS_PARTS])
    return _stats_rows(*parts)


async def _roll_up_period(
    conn: Connection, start: datetime, end: datetime, zone: str, now: datetime
) -> None:
    """Roll up the whole months of [start, end) that are settled and not rolled up yet."""
    await roll_up_months(conn, months=whole_months(start, end, zone), zone=zone, now=now)


# A snapshot id as pg_export_snapshot() writes it (SET TRANSACTION SNAPSHOT takes no parameter).
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")
# How long to wait for a spare connection before a part runs on one already held instead.
_SPARE_WAIT_SECONDS = 0.05
# The parts of a set of figures already run at once, each on a connection of its own: on a
# server of two cores, parallel workers within a part only add their start-up (a year's case
# counts: 14 -> 12 ms without them).
_NO_PARALLEL_WORKERS = "SET LOCAL max_parallel_workers_per_gather = 0"


@contextlib.asynccontextmanager
async def _one_snapshot(conn: Connection) -> AsyncIterator[list[Connection]]:
    """``conn`` alone, in the read-only REPEATABLE READ transaction ``in_one_snapshot`` gives
    each of its connections: the parts run one after another on it."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(_NO_PARALLEL_WORKERS)
        yield [conn]


@contextlib.asynccontextmanager
async def in_one_snapshot(pool: asyncpg.Pool, most: int) -> AsyncIterator[list[Connection]]:
    """Up to ``most`` connections of ``pool``, each in a read-only REPEATABLE READ
    transaction, all in one snapshot (``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``), so
    that figures asked on them at once are as consistent as on one. The first is waited for
    as any; another only if the pool has one to spare within 50 ms: never waiting on the pool,
    which the consumers share. Each leaves out parallel workers (``_NO_PARALLEL_WORKERS``)."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(pool.acquire())
        await stack.enter_async_context(
            first.transaction(isolation="repeatable_read", readonly=True)
        )
        await first.execute(_NO_PARALLEL_WORKERS)
        snapshot = await first.fetchval("SELECT pg_export_snapshot()")
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"unexpected snapshot id {snapshot!r}")
        held: list[Connection] = [first]
        for _ in range(most - 1):
            try:
                spare = await stack.enter_async_context(pool.acquire(timeout=_SPARE_WAIT_SECONDS))
            except TimeoutError:
                break
            await stack.enter_async_context(
                spare.transaction(isolation="repeatable_read", readonly=True)
            )
            await spare.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'; {_NO_PARALLEL_WORKERS}")
            held.append(spare)
        yield held


async def run_parts(
    held: Sequence[Connection], parts: Sequence[Callable[[Connection], Awaitable[Any]]]
) -> list[Any]:
    """Each part's result, in order: the parts go to the connections held in turn (the first
    connection takes the first, the next the second, ...), and parts sharing a connection run
    one after another on it. A part that fails cancels the others (a task group) before the
    connections go back."""

    async def run(index: int) -> list[Any]:
        return [await part(held[index]) for part in parts[index :: len(held)]]

    async with asyncio.TaskGroup() as group:
        ran = [group.create_task(run(index)) for index in range(min(len(held), len(parts)))]
    results: list[Any] = [None] * len(parts)
    for index, task in enumerate(ran):
        results[index :: len(held)] = task.result()
    return results


@dataclass(frozen=True)
class _Period:
    """A period as its parts read it: the starts of its months read from their roll-ups
    (``rolled``), and the ranges around them read from the rows (``live_starts`` and
    ``live_ends``, pairwise)."""

    zone: str
    now: datetime
    districts: list[str] | None
    rolled: list[datetime]
    live_starts: list[datetime]
    live_ends: list[datetime]


async def _period(
    conn: Connection,
    start: datetime,
    end: datetime,
    zone: str,
    now: datetime,
    districts: list[str] | None,
    rolled_up: bool = True,
) -> _Period:
    """The period's rolled-up months as this transaction's snapshot sees them (settled before
    ``now``; none unless ``rolled_up``), and what is left of it to read live."""
    rows = (
        []
        if not rolled_up
        else await conn.fetch(
            "SELECT starts, ends FROM stats_months WHERE zone = $1 AND starts >= $2 AND ends <= $3 "
            "AND settled_at < $4 ORDER BY starts",
            zone,
            start,
            end,
            now,
        )
    )
    rolled = [(row["starts"], row["ends"]) for row in rows]
    live = uncovered(start, end, rolled)
    return _Period(
        zone=zone,
        now=now,
        districts=districts,
        rolled=[since for since, _ in rolled],
        live_starts=[since for since, _ in live],
        live_ends=[until for _, until in live],
    )


# The period's live rows: referrals (or cases) in any of its live ranges, $1 and $2 pairwise.
_LIVE_REFERRALS = (
    "unnest($1::timestamptz[], $2::timestamptz[]) AS live (since, until) "
    "JOIN referrals ON created_at >= live.since AND created_at < live.until"
)
_LIVE_CASES = (
    "unnest($1::timestamptz[], $2::timestamptz[]) AS live (since, until) "
    "JOIN cases ON reported_at >= live.since AND reported_at < live.until"
)
# Roll-up rows of the period's months ($4: zone, $5: their starts) in the districts of $3.
_ROLLED = (
    "zone = $4 AND starts = ANY($5::timestamptz[]) "
    "AND ($3::text[] IS NULL OR district_code = ANY($3::text[]))"
)


def _parameters(p: _Period) -> tuple[Any, ...]:
    """$1/$2 the live ranges, $3 the districts, $4 the zone, $5 the rolled months."""
    return (p.live_starts, p.live_ends, p.districts, p.zone, p.rolled)


@dataclass(frozen=True)
class _CaseFigures:
    total: int
    by_type: list[asyncpg.Record]
    by_month: list[asyncpg.Record]


async def _case_figures(conn: Connection, p: _Period) -> _CaseFigures:
    counted = (
        "SELECT violence_type, sum(cases)::bigint AS cases FROM stats_month_cases "  # noqa: S608
        f"WHERE {_ROLLED} GROUP BY violence_type "
        "UNION ALL SELECT NULL, count(*) "
        f"FROM {_LIVE_CASES} WHERE {_in_districts(3)} "
        "UNION ALL SELECT violence_type, count(*) "
        f"FROM {_LIVE_CASES}, unnest(violence_types) AS violence_type WHERE {_in_districts(3)} "
        "GROUP BY violence_type"
    )
    rows = await conn.fetch(
        "SELECT violence_type, sum(cases)::bigint AS cases "  # noqa: S608
        f"FROM ({counted}) AS counted GROUP BY violence_type "
        "ORDER BY violence_type IS NOT NULL, cases DESC, violence_type",
        *_parameters(p),
    )
    total = rows[0]["cases"] if rows and rows[0]["violence_type"] is None else 0
    by_type = [row for row in rows if row["violence_type"] is not None]
    by_month = await conn.fetch(
        "SELECT month, sum(cases)::bigint AS cases FROM ("  # noqa: S608
        "SELECT m.month, c.cases FROM stats_month_cases c "
        "JOIN stats_months m USING (zone, starts) "
        f"WHERE violence_type IS NULL AND {_ROLLED} "
        "UNION ALL SELECT to_char(reported_at AT TIME ZONE $4, 'YYYY-MM'), 1 "
        f"FROM {_LIVE_CASES} WHERE {_in_districts(3)}"
        ") AS counted GROUP BY month ORDER BY month",
        *_parameters(p),
    )
    return _CaseFigures(total, by_type, by_month)


async def _answer_times(conn: Connection, p: _Period) -> list[asyncpg.Record]:
    """Each agency's answers: how many, the median and the longest time to the first one."""
    # The median sorts each agency's answer times: a province's year is about 90,000 of them
    # (7 MB), which the default work_mem (4 MB) would sort on disk.
    await conn.execute("SET LOCAL work_mem = '32MB'")
    return await conn.fetch(
        "SELECT agency_id, count(*) AS acknowledged, "  # noqa: S608
        "round((percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes))::numeric, 2)::float8 "
        "AS median_minutes, round(max(minutes)::numeric, 2)::float8 AS worst_minutes FROM ("
        "SELECT agency_id, unnest(minutes) AS minutes FROM stats_month_answers "
        f"WHERE {_ROLLED} UNION ALL "
        f"SELECT agency_id, {_MINUTES_TO_ANSWER} FROM {_LIVE_REFERRALS} "
        f"WHERE acknowledged_at IS NOT NULL AND {_referral_in_districts(3)}"
        ") AS answered GROUP BY agency_id ORDER BY agency_id",
        *_parameters(p),
    )


async def _referral_groups(conn: Connection, p: _Period) -> list[asyncpg.Record]:
    """Deadlines, open referrals and escalations from one pass over the period's referrals
    (they were three), in groups a province's year has a few thousand of."""
    return await conn.fetch(
        "SELECT agency_id, state, still_open, escalated, reason, sum(met)::bigint AS met, "  # noqa: S608
        "sum(missed)::bigint AS missed, sum(referrals)::bigint AS referrals FROM ("
        "SELECT agency_id, state, still_open, escalated, reason, met, missed, referrals "
        f"FROM stats_month_referrals WHERE {_ROLLED} UNION ALL "
        f"SELECT agency_id, state, {_grouped(6)} "
        f"FROM {_LIVE_REFERRALS} WHERE {_referral_in_districts(3)} GROUP BY 1, 2, 3, 4, 5"
        ") AS counted GROUP BY 1, 2, 3, 4, 5",
        *_parameters(p),
        p.now,
    )


def _grouped(now: int) -> str:
    """A group of referrals' figures (after agency_id and state), "now" being ``$now``."""
    return (
        f"{_OPEN} AS still_open, escalated_from IS NOT NULL AS escalated, "
        "coalesce(escalation_reason, 'unknown') AS reason, "
        f"count(*) FILTER (WHERE {_MET}) AS met, "
        f"count(*) FILTER (WHERE {_missed(now)}) AS missed, count(*) AS referrals"
    )


# With two connections, the slowest (the median) has one to itself: the parts go to the
# connections held in turn, and the first connection takes the first and the third.
_STATS_PARTS = (_referral_groups, _answer_times, _case_figures)


_STATS_LOCK = "hashtext('routing.stats_months')"


# The most months one request rolls up (each 10-20 ms at a province's size).
ROLL_UP_AT_ONCE = 24


async def roll_up_months(
    conn: Connection, *, months: Sequence[tuple[datetime, datetime]], zone: str, now: datetime
) -> int:
    """Roll up each of ``months`` (whole months of ``zone``) not rolled up yet whose every
    acknowledgement deadline has passed by ``now``, each in a transaction of its own
    (migration 0013 says why the figures stay equal to the rows'), the newest first and at
    most ``ROLL_UP_AT_ONCE`` of them: a period of centuries costs one request no more than two
    years of them (the rest is read live, and rolled up by the requests after it). A month
    with a write to it in flight is left to be read live: this never waits on a writer.
    Returns how many it rolled up."""
    months = [(since, until) for since, until in months if until <= now]
    if not months:
        return 0
    have = {
        row["starts"]
        for row in await conn.fetch(
            "SELECT starts FROM stats_months WHERE zone = $1 AND starts = ANY($2::timestamptz[])",
            zone,
            [since for since, _ in months],
        )
    }
    missing = [month for month in reversed(months) if month[0] not in have]
    rolled = 0
    for since, until in missing[:ROLL_UP_AT_ONCE]:
        async with conn.transaction():
            if await _roll_up_month(conn, since, until, zone, now):
                rolled += 1
    return rolled


async def _roll_up_month(
    conn: Connection, since: datetime, until: datetime, zone: str, now: datetime
) -> bool:
    free = await conn.fetchval(
        f"SELECT pg_try_advisory_xact_lock({_STATS_LOCK}, stats_lock_month($1::timestamptz)) "
        f"AND pg_try_advisory_xact_lock({_STATS_LOCK}, "
        "stats_lock_month($2::timestamptz - interval '1 microsecond'))",
        since,
        until,
    )
    if not free:
        return False
    settled_at = await conn.fetchval(
        "SELECT coalesce(max(acknowledgement_deadline), $1) FROM referrals "
        "WHERE created_at >= $1 AND created_at < $2",
        since,
        until,
    )
    if settled_at >= now:
        return False
    month = since.astimezone(ZoneInfo(zone)).strftime("%Y-%m")
    added = await conn.fetchval(
        "INSERT INTO stats_months (zone, starts, ends, month, settled_at, rolled_at) "
        "VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING RETURNING true",
        zone,
        since,
        until,
        month,
        settled_at,
    )
    if not added:
        return False
    # A group nothing more will come of keeps no agency or state: the figures read those only
    # for open referrals (_referral_figures), and most of an old month's referrals are done.
    await conn.execute(
        "INSERT INTO stats_month_referrals (zone, starts, district_code, agency_id, state, "  # noqa: S608
        "still_open, escalated, reason, met, missed, referrals) "
        "SELECT $4, $2, district_code, CASE WHEN still_open THEN agency_id ELSE '' END, "
        "CASE WHEN still_open THEN state ELSE '' END, still_open, escalated, reason, "
        "sum(met), sum(missed), sum(referrals) FROM ("
        f"SELECT district_code, agency_id, state, {_grouped(1)} "
        "FROM referrals JOIN cases USING (case_id) WHERE created_at >= $2 AND created_at < $3 "
        "GROUP BY 1, 2, 3, 4, 5, 6) AS grouped GROUP BY 3, 4, 5, 6, 7, 8",
        now,
        since,
        until,
        zone,
    )
    await conn.execute(
        "INSERT INTO stats_month_answers (zone, starts, district_code, agency_id, minutes) "  # noqa: S608
        f"SELECT $3, $1, district_code, agency_id, array_agg({_MINUTES_TO_ANSWER}) "
        "FROM referrals JOIN cases USING (case_id) "
        "WHERE created_at >= $1 AND created_at < $2 AND acknowledged_at IS NOT NULL "
        "GROUP BY district_code, agency_id",
        since,
        until,
        zone,
    )
    await conn.execute(
        "INSERT INTO stats_month_agencies (zone, starts, agency_id, referrals, acknowledged, "  # noqa: S608
        "met, missed) "
        "SELECT $4, $2, agency_id, count(*), count(acknowledged_at), "
        f"count(*) FILTER (WHERE {_MET}), count(*) FILTER (WHERE {_missed(1)}) FROM referrals "
        "WHERE created_at >= $2 AND created_at < $3 GROUP BY agency_id",
        now,
        since,
        until,
        zone,
    )
    await conn.execute(
        "INSERT INTO stats_month_deadlines (zone, starts, agency_id, minutes, referrals) "  # noqa: S608
        f"SELECT $3, $1, agency_id, {_DEADLINE_MINUTES}, count(*) FROM referrals "
        "WHERE created_at >= $1 AND created_at < $2 GROUP BY 3, 4",
        since,
        until,
        zone,
    )
    await conn.execute(
        "INSERT INTO stats_month_declines (zone, starts, agency_id, reason, declined) "
        "SELECT $3, $1, agency_id, decline_reason, count(*) FROM referrals "
        "WHERE created_at >= $1 AND created_at < $2 AND decline_reason IS NOT NULL "
        "GROUP BY 3, 4",
        since,
        until,
        zone,
    )
    # The month's cases (by when they were reported) by the services they were ever referred
    # for: what the rakor's cases per service function count (migration 0016).
    await conn.execute(
        "INSERT INTO stats_month_services (zone, starts, services, close_reason, cases) "
        "SELECT $3, $1, services, close_reason, count(*) FROM ("
        "SELECT c.close_reason, array_agg(DISTINCT r.service ORDER BY r.service) AS services "
        "FROM cases c JOIN referrals r USING (case_id) "
        "WHERE c.reported_at >= $1 AND c.reported_at < $2 GROUP BY c.case_id) AS referred "
        "GROUP BY 3, 4",
        since,
        until,
        zone,
    )
    await conn.execute(
        "INSERT INTO stats_month_escalations (zone, starts, agency_id, reason, escalations) "  # noqa: S608
        f"SELECT $3, $1, ({_HANDED_AWAY_FROM}), coalesce(s.escalation_reason, 'unknown'), "
        "count(*) FROM referrals s WHERE s.created_at >= $1 AND s.created_at < $2 "
        "AND s.escalated_from IS NOT NULL GROUP BY 3, 4",
        since,
        until,
        zone,
    )
    await conn.execute(
        "INSERT INTO stats_month_cases (zone, starts, district_code, violence_type, cases) "
        "SELECT $3, $1, district_code, NULL, count(*) FROM cases "
        "WHERE reported_at >= $1 AND reported_at < $2 GROUP BY district_code "
        "UNION ALL SELECT $3, $1, district_code, violence_type, count(*) "
        "FROM cases, unnest(violence_types) AS violence_type "
        "WHERE reported_at >= $1 AND reported_at < $2 GROUP BY district_code, violence_type",
        since,
        until,
        zone,
    )
    return True


def _stats_rows(
    groups: list[asyncpg.Record], answers: list[asyncpg.Record], cases: _CaseFigures
) -> StatsRows:
    deadlines, still_open, escalations = _referral_figures(groups)
    return StatsRows(
        cases_total=cases.total,
        cases_by_violence_type=[dict(r) for r in cases.by_type],
        cases_by_month=[dict(r) for r in cases.by_month],
        acknowledgement_by_agency=[dict(r) for r in answers],
        deadlines=deadlines,
        open_referrals=still_open,
        escalations_by_reason=escalations,
    )


def _referral_figures(
    groups: list[asyncpg.Record],
) -> tuple[dict[str, int], list[dict[str, object]], list[dict[str, object]]]:
    """Deadlines met, missed and pending; referrals still open by agency and state; and
    escalations by reason, folded from the period's referrals counted by agency, state,
    whether escalated and the reason."""
    met = missed = total = 0
    still_open: dict[tuple[str, str], int] = {}
    escalations: dict[str, int] = {}
    for group in groups:
        met += group["met"]
        missed += group["missed"]
        total += group["referrals"]
        if group["still_open"]:
            key = (group["agency_id"], group["state"])
            still_open[key] = still_open.get(key, 0) + group["referrals"]
        if group["escalated"]:
            reason = group["reason"]
            escalations[reason] = escalations.get(reason, 0) + group["referrals"]
    return (
        {"met": met, "missed": missed, "pending": total - met - missed},
        [
            {"agency_id": agency, "state": state, "referrals": count}
            for (agency, state), count in sorted(still_open.items())
        ],
        [{"reason": reason, "escalations": escalations[reason]} for reason in sorted(escalations)],
    )


# --- on-call alerts -----------------------------------------------------------------------

_ALERT_COLUMNS = (
    "alert_id, case_id, district_code, referral_id, agency_id, priority, reason, opened_at, "
    "sop_id, sop_version, contacts, rounds, every_seconds, rounds_paged, next_page_at, "
    "last_paged_at, acknowledged_at, acknowledged_by, acknowledged_via"
)


async def open_alert(conn: Connection, alert: OnCallAlert) -> bool:
    """Open an alert for a referral whose chain ran out, its first round due at once; False
    (and nothing changed) when that referral has one already."""
    opened = await conn.fetchval(
        "INSERT INTO oncall_alerts (alert_id, case_id, district_code, referral_id, agency_id, "
        "priority, reason, opened_at, next_page_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
        "ON CONFLICT DO NOTHING RETURNING true",
        alert.alert_id,
        alert.case_id,
        alert.district_code,
        alert.referral_id,
        alert.agency_id,
        alert.priority.value,
        alert.reason.value,
        alert.opened_at,
    )
    return bool(opened)


async def claim_due_alerts(conn: Connection, now: datetime, limit: int) -> list[OnCallAlert]:
    """Open alerts whose next round is due, locked; ``SKIP LOCKED`` so that two replicas never
    page the same round and an acknowledgement in flight is not waited for."""
    rows = await conn.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM oncall_alerts "  # noqa: S608
        "WHERE acknowledged_at IS NULL AND next_page_at IS NOT NULL AND next_page_at <= $1 "
        "ORDER BY next_page_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_alert(row) for row in rows]


async def record_round(
    conn: Connection,
    alert_id: str,
    plan: PagePlan,
    number: int,
    paged_at: datetime,
    next_at: datetime | None,
) -> None:
    await conn.execute(
        "UPDATE oncall_alerts SET sop_id = $2, sop_version = $3, contacts = $4::jsonb, "
        "rounds = $5, every_seconds = $6, rounds_paged = $7, last_paged_at = $8, "
        "next_page_at = $9 WHERE alert_id = $1",
        alert_id,
        plan.sop_id,
        plan.sop_version,
        json.dumps([contact.model_dump(mode="json") for contact in plan.contacts]),
        plan.rounds,
        plan.every.total_seconds(),
        number,
        paged_at,
        next_at,
    )


async def postpone_alert(conn: Connection, alert_id: str, until: datetime) -> None:
    """No round could be paged now (no SOP in force to read the on-call list from)."""
    await conn.execute(
        "UPDATE oncall_alerts SET next_page_at = $2 WHERE alert_id = $1", alert_id, until
    )


async def lock_alert(conn: Connection, alert_id: str) -> OnCallAlert | None:
    row = await conn.fetchrow(
        f"SELECT {_ALERT_COLUMNS} FROM oncall_alerts WHERE alert_id = $1 FOR UPDATE",  # noqa: S608
        alert_id,
    )
    return _alert(row) if row is not None else None


async def acknowledge_alert(
    conn: Connection, alert_id: str, by: str, via: str, at: datetime
) -> None:
    """The first acknowledgement counts: pages stop (``next_page_at`` cleared)."""
    await conn.execute(
        "UPDATE oncall_alerts SET acknowledged_at = $2, acknowledged_by = $3, "
        "acknowledged_via = $4, next_page_at = NULL WHERE alert_id = $1 "
        "AND acknowledged_at IS NULL",
        alert_id,
        at,
        by,
        via,
    )


async def list_alerts(
    conn: Connection, *, districts: list[str] | None, open_only: bool, limit: int, offset: int
) -> list[OnCallAlert]:
    """Alerts, the open ones first and the oldest of them first; ``districts`` None: all."""
    rows = await conn.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM oncall_alerts "  # noqa: S608
        "WHERE ($1::text[] IS NULL OR district_code = ANY($1)) "
        "AND (NOT $2 OR acknowledged_at IS NULL) "
        "ORDER BY acknowledged_at IS NOT NULL, opened_at, alert_id LIMIT $3 OFFSET $4",
        districts,
        open_only,
        limit,
        offset,
    )
    return [_alert(row) for row in rows]


async def open_alerts_by_district(conn: Connection) -> list[tuple[str, int]]:
    rows = await conn.fetch(
        "SELECT district_code, count(*) AS n FROM oncall_alerts "
        "WHERE acknowledged_at IS NULL GROUP BY district_code"
    )
    return [(row["district_code"], row["n"]) for row in rows]


def _alert(row: asyncpg.Record) -> OnCallAlert:
    plan = None
    if row["contacts"] is not None:
        plan = PagePlan(
            sop_id=row["sop_id"],
            sop_version=row["sop_version"],
            contacts=tuple(
                OnCallContact.model_validate(contact) for contact in json.loads(row["contacts"])
            ),
            rounds=row["rounds"],
            every=timedelta(seconds=row["every_seconds"]),
        )
    return OnCallAlert(
        alert_id=row["alert_id"],
        case_id=row["case_id"],
        district_code=row["district_code"],
        referral_id=row["referral_id"],
        agency_id=row["agency_id"],
        priority=Priority(row["priority"]),
        reason=EscalationReason(row["reason"]),
        opened_at=row["opened_at"],
        plan=plan,
        rounds_paged=row["rounds_paged"],
        next_page_at=row["next_page_at"],
        last_paged_at=row["last_paged_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_via=OnCallAckVia(row["acknowledged_via"]) if row["acknowledged_via"] else None,
    )


async def postpone_alert_forever(conn: Connection, alert_id: str) -> None:
    """Every round was paged: nothing more is due; the alert stays open until acknowledged."""
    await conn.execute("UPDATE oncall_alerts SET next_page_at = NULL WHERE alert_id = $1", alert_id)


# --- SOP proposals --------------------------------------------------------------------------


_PROPOSAL_COLUMNS = (
    "proposal_id, district_code, sop_id, version, yaml, sha256, base_version, proposed_by, "
    "proposed_at, state, agency_ids, closed_at, closed_by"
)


async def add_proposal(conn: Connection, proposal: StoredProposal) -> None:
    """Store an open proposal and the agencies it asks."""
    await conn.execute(
        f"INSERT INTO sop_proposals ({_PROPOSAL_COLUMNS}) "  # noqa: S608
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        proposal.proposal_id,
        proposal.district_code,
        proposal.sop_id,
        proposal.version,
        proposal.yaml,
        proposal.sha256,
        proposal.base_version,
        proposal.proposed_by,
        proposal.proposed_at,
        proposal.state,
        proposal.agency_ids,
        proposal.closed_at,
        proposal.closed_by,
    )
    await conn.executemany(
        "INSERT INTO sop_proposal_asked (proposal_id, agency_id, duty_changes) VALUES ($1, $2, $3)",
        [(proposal.proposal_id, agency, codes) for agency, codes in proposal.asked.items()],
    )


async def open_proposal(conn: Connection, district_code: str) -> StoredProposal | None:
    """The district's open proposal, if any (there is at most one)."""
    proposal_id = await conn.fetchval(
        "SELECT proposal_id FROM sop_proposals WHERE district_code = $1 AND state = 'open'",
        district_code,
    )
    return None if proposal_id is None else await get_proposal(conn, proposal_id)


async def close_proposals(
    conn: Connection,
    district_code: str,
    state: str,
    *,
    at: datetime,
    by: str,
    proposal_id: str | None = None,
) -> list[str]:
    """Close the district's open proposal (only ``proposal_id``, when given) in ``state``;
    the ids closed."""
    rows = await conn.fetch(
        "UPDATE sop_proposals SET state = $2, closed_at = $3, closed_by = $4 "
        "WHERE district_code = $1 AND state = 'open' AND ($5::text IS NULL OR proposal_id = $5) "
        "RETURNING proposal_id",
        district_code,
        state,
        at,
        by,
        proposal_id,
    )
    return [row["proposal_id"] for row in rows]


async def get_proposal(
    conn: Connection, proposal_id: str, *, lock: bool = False
) -> StoredProposal | None:
    """A proposal with its asked agencies and their current answers; ``lock``: the row is
    held until the transaction ends, so answers and publication do not race."""
    row = await conn.fetchrow(
        f"SELECT {_PROPOSAL_COLUMNS} FROM sop_proposals WHERE proposal_id = $1"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
        proposal_id,
    )
    if row is None:
        return None
    return (await _with_answers(conn, [row]))[0]


async def list_proposals(
    conn: Connection,
    *,
    districts: list[str] | None,
    agency_id: str | None,
    states: Sequence[str],
    limit: int,
    offset: int,
) -> list[StoredProposal]:
    """Proposals, newest first: of ``districts`` (None: every district), naming ``agency_id``
    (None: any), in ``states`` (empty: any)."""
    rows = await conn.fetch(
        f"SELECT {_PROPOSAL_COLUMNS} FROM sop_proposals "  # noqa: S608
        "WHERE ($1::text[] IS NULL OR district_code = ANY($1)) "
        "AND ($2::text IS NULL OR agency_ids @> ARRAY[$2::text]) "
        "AND (cardinality($3::text[]) = 0 OR state = ANY($3)) "
        "ORDER BY proposed_at DESC, proposal_id LIMIT $4 OFFSET $5",
        districts,
        agency_id,
        list(states),
        limit,
        offset,
    )
    return await _with_answers(conn, rows)


async def _with_answers(conn: Connection, rows: Sequence[asyncpg.Record]) -> list[StoredProposal]:
    ids = [row["proposal_id"] for row in rows]
    asked: dict[str, dict[str, list[str]]] = {i: {} for i in ids}
    answers: dict[str, dict[str, StoredAnswer]] = {i: {} for i in ids}
    for a in await conn.fetch(
        "SELECT proposal_id, agency_id, duty_changes FROM sop_proposal_asked "
        "WHERE proposal_id = ANY($1::text[]) ORDER BY agency_id",
        ids,
    ):
        asked[a["proposal_id"]][a["agency_id"]] = list(a["duty_changes"])
    for a in await conn.fetch(
        "SELECT proposal_id, agency_id, decision, reason, note_ref, via, answered_by, "
        "answered_at FROM sop_proposal_answers WHERE proposal_id = ANY($1::text[]) "
        "ORDER BY agency_id",
        ids,
    ):
        answers[a["proposal_id"]][a["agency_id"]] = StoredAnswer(
            **{k: a[k] for k in StoredAnswer.__dataclass_fields__}
        )
    return [
        StoredProposal(
            **dict(row), asked=asked[row["proposal_id"]], answers=answers[row["proposal_id"]]
        )
        for row in rows
    ]


async def put_answer(conn: Connection, proposal_id: str, answer: StoredAnswer) -> None:
    """An asked agency's answer; it replaces the agency's earlier one."""
    await conn.execute(
        "INSERT INTO sop_proposal_answers (proposal_id, agency_id, decision, reason, note_ref, "
        "via, answered_by, answered_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (proposal_id, agency_id) DO UPDATE SET decision = EXCLUDED.decision, "
        "reason = EXCLUDED.reason, note_ref = EXCLUDED.note_ref, via = EXCLUDED.via, "
        "answered_by = EXCLUDED.answered_by, answered_at = EXCLUDED.answered_at",
        proposal_id,
        answer.agency_id,
        answer.decision,
        answer.reason,
        answer.note_ref,
        answer.via,
        answer.answered_by,
        answer.answered_at,
    )


# --- impact simulation (routing.simulations) ----------------------------------------------

_SIMULATION_LOCK = "hashtext('routing.sop_simulations:' || $1)"
_SIMULATION_COLUMNS = (
    "simulation_id, district_code, base_version, base_origin, base_sha256, base_yaml, "
    "candidate_version, candidate_sha256, candidate_yaml, period_from, period_to, state, "
    "cases_done, cases_total, diff::text AS diff, result::text AS result, failure, "
    "requested_by, requested_at, started_at, finished_at"
)


@dataclass(frozen=True)
class SimulationJob:
    """A simulation job as stored; ``diff`` and ``result`` as JSON text."""

    simulation_id: str
    district_code: str
    base_version: int
    base_origin: str
    base_sha256: str
    base_yaml: str
    candidate_version: int
    candidate_sha256: str
    candidate_yaml: str
    period_from: datetime
    period_to: datetime
    state: str
    cases_done: int
    cases_total: int | None
    diff: str
    result: str | None
    failure: str | None
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


async def add_simulation(conn: Connection, job: SimulationJob) -> None:
    await conn.execute(
        "INSERT INTO sop_simulations (simulation_id, district_code, base_version, base_origin, "
        "base_sha256, base_yaml, candidate_version, candidate_sha256, candidate_yaml, "
        "period_from, period_to, state, diff, requested_by, requested_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $12::jsonb, $13, $14)",
        job.simulation_id,
        job.district_code,
        job.base_version,
        job.base_origin,
        job.base_sha256,
        job.base_yaml,
        job.candidate_version,
        job.candidate_sha256,
        job.candidate_yaml,
        job.period_from,
        job.period_to,
        job.diff,
        job.requested_by,
        job.requested_at,
    )


async def get_simulation(
    conn: Connection, simulation_id: str, districts: list[str] | None
) -> SimulationJob | None:
    """The job, if it is of one of ``districts`` (None: any district)."""
    row = await conn.fetchrow(
        f"SELECT {_SIMULATION_COLUMNS} FROM sop_simulations WHERE simulation_id = $1 "  # noqa: S608
        "AND ($2::text[] IS NULL OR district_code = ANY($2::text[]))",
        simulation_id,
        districts,
    )
    return None if row is None else SimulationJob(**dict(row))


async def claim_queued_simulation(conn: Connection, at: datetime) -> SimulationJob | None:
    """The oldest queued job, now running under this connection's session lock on it (held
    until ``release_simulation``, or until the connection dies with its routing: then
    ``fail_orphaned_simulations`` finds the job). Call inside a transaction."""
    row = await conn.fetchrow(
        "SELECT simulation_id FROM sop_simulations WHERE state = 'queued' "
        "ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    )
    if row is None:
        return None
    simulation_id = row["simulation_id"]
    # Taken before the state says running (and kept after the commit: a session lock), so a
    # running job without its lock is always one whose runner died.
    await conn.execute(f"SELECT pg_advisory_lock({_SIMULATION_LOCK})", simulation_id)
    await conn.execute(
        "UPDATE sop_simulations SET state = 'running', started_at = $2 WHERE simulation_id = $1",
        simulation_id,
        at,
    )
    return await get_simulation(conn, simulation_id, None)


async def release_simulation(conn: Connection, simulation_id: str) -> None:
    await conn.execute(f"SELECT pg_advisory_unlock({_SIMULATION_LOCK})", simulation_id)


async def fail_orphaned_simulations(
    conn: Connection, reason: str, at: datetime, *, simulation_id: str | None = None
) -> list[str]:
    """Mark failed the running jobs (or the one named) whose runner's lock is free: the
    routing that ran them died. Returns their ids. Call inside a transaction."""
    rows = await conn.fetch(
        "SELECT simulation_id FROM sop_simulations WHERE state = 'running' "
        "AND ($1::text IS NULL OR simulation_id = $1) FOR UPDATE SKIP LOCKED",
        simulation_id,
    )
    orphans = []
    for row in rows:
        if await conn.fetchval(
            f"SELECT pg_try_advisory_xact_lock({_SIMULATION_LOCK})", row["simulation_id"]
        ):
            orphans.append(row["simulation_id"])
    if orphans:
        await conn.execute(
            "UPDATE sop_simulations SET state = 'failed', failure = $2, finished_at = $3 "
            "WHERE simulation_id = ANY($1::text[])",
            orphans,
            reason,
            at,
        )
    return orphans


async def count_simulated_cases(
    conn: Connection, district_code: str, period_from: datetime, period_to: datetime
) -> int:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM cases WHERE district_code = $1 AND reported_at >= $2 "
        "AND reported_at < $3",
        district_code,
        period_from,
        period_to,
    )
    return total


async def simulated_cases_chunk(
    conn: Connection,
    district_code: str,
    period_from: datetime,
    period_to: datetime,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[tuple[str, datetime, str | None]]:
    """(case id, reported at, triage facts as JSON text or None) of the district's cases in
    [from, to), in (reported_at, case_id) order, from just after ``after`` (keyset)."""
    since, last_case = after if after is not None else (period_from, "")
    rows = await conn.fetch(
        "SELECT case_id, reported_at, triage::text AS triage FROM cases "
        "WHERE district_code = $1 AND (reported_at, case_id) > ($2, $3) "
        "AND reported_at >= $4 AND reported_at < $5 "
        "ORDER BY reported_at, case_id LIMIT $6",
        district_code,
        since,
        last_case,
        period_from,
        period_to,
        limit,
    )
    return [(row["case_id"], row["reported_at"], row["triage"]) for row in rows]


async def record_simulation_progress(
    conn: Connection, simulation_id: str, done: int, total: int
) -> None:
    await conn.execute(
        "UPDATE sop_simulations SET cases_done = $2, cases_total = $3 WHERE simulation_id = $1",
        simulation_id,
        done,
        total,
    )


async def finish_simulation(
    conn: Connection, simulation_id: str, result: str, done: int, total: int, at: datetime
) -> None:
    await conn.execute(
        "UPDATE sop_simulations SET state = 'done', result = $2::jsonb, cases_done = $3, "
        "cases_total = $4, finished_at = $5 WHERE simulation_id = $1",
        simulation_id,
        result,
        done,
        total,
        at,
    )


async def fail_simulation(conn: Connection, simulation_id: str, reason: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE sop_simulations SET state = 'failed', failure = $2, finished_at = $3 "
        "WHERE simulation_id = $1",
        simulation_id,
        reason,
        at,
    )


# --- the rakor's monitoring page ----------------------------------------------------------

# A referral's minutes to its first answer, and its own deadline (the SOP's acknowledge_within).
# date_part (float8), not extract (numeric): a province's year sorts 106,000 of these.
_DEADLINE_MINUTES = "date_part('epoch', acknowledge_within) / 60"


def _referral_of_districts(parameter: int | None, table: str = "") -> str:
    """A referral of a case in the districts of ``$parameter`` (None: anywhere), by its case
    id's first four characters, as the index ``referrals_by_district_created`` is keyed."""
    if parameter is None:
        return "true"
    return f"left({table}case_id, 4) = ANY(${parameter}::text[])"


def _case_of_districts(parameter: int | None, table: str = "") -> str:
    return "true" if parameter is None else f"{table}district_code = ANY(${parameter}::text[])"


async def monitoring_rows(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    districts: list[str] | None,
    function_of_service: dict[str, str],
    not_a_complaint: Sequence[str],
    zone: str | None = None,
) -> MonitoringRows:
    """The counts behind the monitoring page, in one consistent snapshot: referrals made in
    [start, end) per agency and all together, escalations in it by the agency handed away from,
    declines; cases reported in it (routed or still waiting, ``not_a_complaint`` close reasons
    left out) and, per function, the cases referred for one of its services. Only cases of
    ``districts`` and their referrals (None: every district). Every district's (the province)
    with ``zone`` (the stats time zone): the per-agency figures and the escalations of its whole
    settled months from their roll-ups, as ``period_stats`` reads its figures."""
    if zone is not None and districts is None:
        await _roll_up_period(conn, start, end, zone, now)
    async with _one_snapshot(conn) as held:
        return await _monitoring_on(
            held, start, end, now, districts, function_of_service, not_a_complaint, zone
        )


async def monitoring_rows_shared(
    pool: asyncpg.Pool,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    districts: list[str] | None,
    function_of_service: dict[str, str],
    not_a_complaint: Sequence[str],
    zone: str | None = None,
) -> MonitoringRows:
    """``monitoring_rows`` with its parts asked at once on connections sharing one snapshot
    (``in_one_snapshot``): a province's year took 410 ms one after another."""
    if zone is not None and districts is None:
        async with pool.acquire() as conn:
            await _roll_up_period(conn, start, end, zone, now)
    async with in_one_snapshot(pool, 3) as held:
        return await _monitoring_on(
            held, start, end, now, districts, function_of_service, not_a_complaint, zone
        )


async def _monitoring_on(
    held: Sequence[Connection],
    start: datetime,
    end: datetime,
    now: datetime,
    districts: list[str] | None,
    function_of_service: dict[str, str],
    not_a_complaint: Sequence[str],
    zone: str | None,
) -> MonitoringRows:
    """The figures read on connections in one snapshot (``_one_snapshot``, ``in_one_snapshot``)."""
    rolled = await _rolled_province(held[0], start, end, now, districts, zone)
    parts = _monitoring_parts(
        start, end, now, districts, function_of_service, list(not_a_complaint), rolled
    )
    return _monitoring(await run_parts(held, parts))


async def _rolled_province(
    conn: Connection,
    start: datetime,
    end: datetime,
    now: datetime,
    districts: list[str] | None,
    zone: str | None,
) -> _Period | None:
    """The province's period as its roll-ups and rows hold it; None for a district's, which
    reads its rows (its referrals are the district's by their case ids' prefix, as the index it
    reads is keyed, and a roll-up's by their case's district: a moved case differs)."""
    if zone is None or districts is not None:
        return None
    return await _period(conn, start, end, zone, now, None)


def _monitoring(
    found: list[Any],
) -> MonitoringRows:
    agencies, escalations, by_function, unrouted, declines, cases = found
    return MonitoringRows(
        agencies=[dict(row) for row in agencies],
        escalations=[dict(row) for row in escalations],
        declines=[dict(row) for row in declines],
        cases={**dict(cases or {}), **dict(unrouted or {})},
        function_cases={row["function"]: row["cases"] for row in by_function},
    )


def _monitoring_parts(
    start: datetime,
    end: datetime,
    now: datetime,
    districts: list[str] | None,
    function_of_service: dict[str, str],
    not_a_complaint: list[str],
    rolled: _Period | None = None,
) -> list[Callable[[Connection], Awaitable[Any]]]:
    """The monitoring page's statements, heaviest first (on three connections: the agencies'
    percentiles with the unrouted cases, the escalations with the declines, the functions
    with the cases)."""
    # $1 start, $2 end, $3 the districts when there are some, then each query's own.
    period: list[object] = [start, end]
    at = None
    if districts is not None:
        period.append(districts)
        at = len(period)
    following = len(period) + 1
    made_in_period = "created_at >= $1 AND created_at < $2"
    counted_cases = (
        "reported_at >= $1 AND reported_at < $2 "
        f"AND coalesce(close_reason, '') <> ALL(${following}::text[])"
    )
    missed = _missed(following)
    services, functions = zip(*sorted(function_of_service.items()), strict=True)

    # Both percentiles from one sort of each agency's answer times (PostgreSQL computes the
    # one aggregate once, however often it is named).
    answer_percentiles = (
        f"percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {_MINUTES_TO_ANSWER})"
    )

    async def agencies(conn: Connection) -> list[asyncpg.Record]:
        # Three per-agency percentiles over a province's year (106,000 referrals) sort in
        # memory: the default 4 MB spilled them to disk.
        await conn.execute("SET LOCAL work_mem = '32MB'")
        return await conn.fetch(
            "SELECT agency_id, count(*) AS referrals, "  # noqa: S608 (numbers, not input)
            "count(acknowledged_at) AS acknowledged, "
            f"({answer_percentiles})[1] AS p50_minutes, ({answer_percentiles})[2] AS p90_minutes, "
            f"percentile_disc(0.5) WITHIN GROUP (ORDER BY {_DEADLINE_MINUTES}) "
            "AS deadline_minutes, "
            f"count(*) FILTER (WHERE {_MET}) AS met, "
            f"count(*) FILTER (WHERE {missed}) AS missed, "
            f"count(*) FILTER (WHERE NOT {_MET} AND NOT ({missed})) AS pending "
            f"FROM referrals WHERE {made_in_period} AND {_referral_of_districts(at)} "
            "GROUP BY GROUPING SETS ((agency_id), ()) ORDER BY agency_id NULLS LAST",
            *period,
            now,
        )

    async def escalations(conn: Connection) -> list[asyncpg.Record]:
        # The agency handed away from, looked up by key for each of the period's escalations
        # (a join hashed all 527,000 referrals of five years to find 15,000 of them).
        return await conn.fetch(
            f"SELECT ({_HANDED_AWAY_FROM}) AS agency_id, "  # noqa: S608
            "coalesce(s.escalation_reason, 'unknown') AS reason, "
            "count(*) AS escalations FROM referrals s "
            "WHERE s.escalated_from IS NOT NULL AND s.created_at >= $1 AND s.created_at < $2 "
            f"AND {_referral_of_districts(at, 's.')} GROUP BY 1, 2 ORDER BY 1, 2",
            *period,
        )

    async def declines(conn: Connection) -> list[asyncpg.Record]:
        return await conn.fetch(
            "SELECT agency_id, decline_reason AS reason, count(*) AS declined "  # noqa: S608
            f"FROM referrals WHERE {made_in_period} AND {_referral_of_districts(at)} "
            "AND decline_reason IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            *period,
        )

    async def cases(conn: Connection) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT count(*) AS routed, "  # noqa: S608
            "count(*) FILTER (WHERE channel = 'outreach') AS routed_outreach, "
            "count(*) FILTER (WHERE channel IS NULL) AS channel_unknown "
            f"FROM cases WHERE {counted_cases} AND {_case_of_districts(at)}",
            *period,
            not_a_complaint,
        )

    async def unrouted(conn: Connection) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT count(*) AS unrouted, "  # noqa: S608
            "count(*) FILTER (WHERE reported ->> 'channel' = 'outreach') AS unrouted_outreach "
            "FROM unrouted_cases WHERE resolved_at IS NULL AND reported_at >= $1 "
            f"AND reported_at < $2 AND {_case_of_districts(at)}",
            *period,
        )

    async def by_function(conn: Connection) -> list[asyncpg.Record]:
        # The period's cases first (from their district's index), then each one's referrals
        # by its id, whenever they were made: not from $1 on, as if a referral always came
        # after its case was reported. Intake stamps reported_at by its clock, routing
        # created_at by its own, and with routing's behind, a case reported on the first
        # second of the period has its referrals made before it (and the roll-ups count the
        # case's every referral). Each function's cases are made distinct by hashing, then
        # counted: count(DISTINCT) sorted all 106,000 referrals of a province's year, on disk.
        return await conn.fetch(
            "WITH period_cases AS MATERIALIZED (SELECT case_id FROM cases "  # noqa: S608
            f"WHERE {counted_cases} AND {_case_of_districts(at)}) "
            "SELECT function, count(*) AS cases FROM (SELECT DISTINCT f.function, p.case_id "
            "FROM period_cases p CROSS JOIN LATERAL (SELECT r.service FROM referrals r "
            f"WHERE r.case_id = p.case_id AND {_referral_of_districts(at, 'r.')}) AS r "
            f"JOIN unnest(${following + 1}::text[], ${following + 2}::text[]) "
            "AS f (service, function) ON f.service = r.service"
            ") AS referred GROUP BY function",
            *period,
            not_a_complaint,
            list(services),
            list(functions),
        )

    if rolled is not None:
        rolled_functions = functools.partial(
            _rolled_functions,
            p=rolled,
            not_a_complaint=not_a_complaint,
            services=list(services),
            functions=list(functions),
        )
        return [
            functools.partial(_rolled_agencies, p=rolled),
            functools.partial(_rolled_escalations, p=rolled),
            rolled_functions,
            unrouted,
            functools.partial(_rolled_declines, p=rolled),
            cases,
        ]
    return [agencies, escalations, by_function, unrouted, declines, cases]


# A province's period for the rakor: $1/$2 its live ranges, $3 the zone, $4 its rolled-up
# months' starts, $5 "now".
_ROLLED_MONTHS = "zone = $3 AND starts = ANY($4::timestamptz[])"
_LIVE_MONITORED = (
    "unnest($1::timestamptz[], $2::timestamptz[]) AS live (since, until) "
    "JOIN referrals s ON s.created_at >= live.since AND s.created_at < live.until"
)


def _province(p: _Period) -> tuple[Any, ...]:
    return (p.live_starts, p.live_ends, p.zone, p.rolled, p.now)


async def _rolled_agencies(conn: Connection, p: _Period) -> list[asyncpg.Record]:
    """The per-agency figures (and all together) as ``_monitoring_parts``' ``agencies``
    counts them, from the period's rolled-up months and the rest of its rows: counts summed,
    answer times unnested for their percentiles, the deadlines' median from their counts (a
    settled month has nothing pending)."""
    await conn.execute("SET LOCAL work_mem = '32MB'")
    # Joined by a key that hashes ("all agencies" as ''): IS NOT DISTINCT FROM compared every
    # agency's row with every other's, 630,000 times for a province (110 ms).
    key = "coalesce(agency_id, '') AS agency_key"
    live = (
        f"SELECT agency_id, acknowledged_at, {_MINUTES_TO_ANSWER} AS answer, "  # noqa: S608
        f"{_DEADLINE_MINUTES} AS deadline, {_MET} AS met, {_missed(5)} AS missed "
        f"FROM {_LIVE_MONITORED}"
    )
    every = "GROUP BY GROUPING SETS ((agency_id), ())"
    return await conn.fetch(
        f"WITH live AS MATERIALIZED ({live}), "  # noqa: S608
        "counted AS (SELECT agency_id, referrals, acknowledged, met, missed, 0 AS pending "
        f"FROM stats_month_agencies WHERE {_ROLLED_MONTHS} UNION ALL "
        "SELECT agency_id, count(*), count(acknowledged_at), count(*) FILTER (WHERE met), "
        "count(*) FILTER (WHERE missed), count(*) FILTER (WHERE NOT met AND NOT missed) "
        "FROM live GROUP BY agency_id), "
        "answered AS (SELECT agency_id, unnest(minutes) AS minutes FROM stats_month_answers "
        f"WHERE {_ROLLED_MONTHS} UNION ALL SELECT agency_id, answer FROM live "
        "WHERE acknowledged_at IS NOT NULL), "
        "deadlines AS (SELECT agency_id, minutes, referrals FROM stats_month_deadlines "
        f"WHERE {_ROLLED_MONTHS} UNION ALL SELECT agency_id, deadline, count(*) FROM live "
        "GROUP BY 1, 2), "
        # The median from counts per deadline, as percentile_disc(0.5) finds it: the least
        # deadline that at least half of the referrals' deadlines are at or under.
        "by_deadline AS (SELECT agency_id, minutes, sum(referrals) AS referrals FROM deadlines "
        "GROUP BY GROUPING SETS ((agency_id, minutes), (minutes))), "
        f"walked AS (SELECT {key}, minutes, "
        "sum(referrals) OVER (PARTITION BY agency_id ORDER BY minutes) AS at_or_under, "
        "sum(referrals) OVER (PARTITION BY agency_id) AS referrals FROM by_deadline) "
        "SELECT c.agency_id, c.referrals, c.acknowledged, (a.percentiles)[1] AS p50_minutes, "
        "(a.percentiles)[2] AS p90_minutes, d.deadline_minutes, c.met, c.missed, c.pending "
        "FROM (SELECT agency_id, coalesce(sum(referrals), 0)::bigint AS referrals, "
        "coalesce(sum(acknowledged), 0)::bigint AS acknowledged, "
        "coalesce(sum(met), 0)::bigint AS met, coalesce(sum(missed), 0)::bigint AS missed, "
        f"coalesce(sum(pending), 0)::bigint AS pending FROM counted {every}) AS c "
        f"LEFT JOIN (SELECT {key}, percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP "
        f"(ORDER BY minutes) AS percentiles FROM answered {every}) AS a "
        "ON a.agency_key = coalesce(c.agency_id, '') "
        "LEFT JOIN (SELECT agency_key, min(minutes) FILTER (WHERE at_or_under >= referrals * 0.5) "
        "AS deadline_minutes FROM walked GROUP BY agency_key) AS d "
        "ON d.agency_key = coalesce(c.agency_id, '') "
        "ORDER BY c.agency_id NULLS LAST",
        *_province(p),
    )


async def _rolled_escalations(conn: Connection, p: _Period) -> list[asyncpg.Record]:
    """The escalations by the agency handed away from and reason, from the period's rolled-up
    months and the rest of its rows."""
    return await conn.fetch(
        "SELECT agency_id, reason, sum(escalations)::bigint AS escalations FROM ("  # noqa: S608
        "SELECT agency_id, reason, escalations FROM stats_month_escalations "
        f"WHERE {_ROLLED_MONTHS} UNION ALL "
        f"SELECT ({_HANDED_AWAY_FROM}), coalesce(s.escalation_reason, 'unknown'), count(*) "
        f"FROM {_LIVE_MONITORED} WHERE s.escalated_from IS NOT NULL "
        "GROUP BY 1, 2) AS counted GROUP BY 1, 2 ORDER BY 1, 2",
        *_province(p)[:4],
    )


async def _rolled_declines(conn: Connection, p: _Period) -> list[asyncpg.Record]:
    """The declines by agency and reason, from the period's rolled-up months and the rest of
    its rows."""
    return await conn.fetch(
        "SELECT agency_id, reason, sum(declined)::bigint AS declined FROM ("  # noqa: S608
        f"SELECT agency_id, reason, declined FROM stats_month_declines WHERE {_ROLLED_MONTHS} "
        "UNION ALL SELECT s.agency_id, s.decline_reason, count(*) "
        f"FROM {_LIVE_MONITORED} WHERE s.decline_reason IS NOT NULL GROUP BY 1, 2"
        ") AS counted GROUP BY 1, 2 ORDER BY 1, 2",
        *_province(p)[:4],
    )


async def _rolled_functions(
    conn: Connection,
    p: _Period,
    not_a_complaint: list[str],
    services: list[str],
    functions: list[str],
) -> list[asyncpg.Record]:
    """The cases per service function, from the period's rolled-up months (their cases by the
    services they were referred for) and the rest of its cases, counted the same way: each
    case once per function of any of its services, a case that is not a complaint left out."""
    # Each live case's services looked up by its id (a join hashed all the referrals).
    live = (
        "SELECT c.close_reason, referred.services "
        "FROM unnest($1::timestamptz[], $2::timestamptz[]) AS live (since, until) "
        "JOIN cases c ON c.reported_at >= live.since AND c.reported_at < live.until "
        "CROSS JOIN LATERAL (SELECT array_agg(DISTINCT r.service) AS services "
        "FROM referrals r WHERE r.case_id = c.case_id) AS referred "
        "WHERE referred.services IS NOT NULL"
    )
    return await conn.fetch(
        "SELECT f.function, sum(counted.cases)::bigint AS cases FROM ("  # noqa: S608
        "SELECT services, close_reason, cases FROM stats_month_services "
        f"WHERE {_ROLLED_MONTHS} UNION ALL "
        f"SELECT services, close_reason, count(*) FROM ({live}) AS referred GROUP BY 1, 2"
        ") AS counted CROSS JOIN LATERAL (SELECT DISTINCT m.function "
        "FROM unnest($6::text[], $7::text[]) AS m (service, function) "
        "WHERE m.service = ANY(counted.services)) AS f "
        "WHERE coalesce(counted.close_reason, '') <> ALL($5::text[]) GROUP BY f.function",
        *_province(p)[:4],
        not_a_complaint,
        services,
        functions,
    )


# The agency a referral ``s`` was handed away from, looked up by key.
_HANDED_AWAY_FROM = (
    "SELECT away.agency_id FROM referrals away WHERE away.referral_id = s.escalated_from"
)
