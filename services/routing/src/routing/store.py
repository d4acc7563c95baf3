"""Routing's PostgreSQL adapter: cases, referrals, deadlines, published SOPs.

The only module that writes SQL.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from routing.decide import Decision, WithheldReferral
from routing.lifecycle import SETTLED_STATES, EscalationStep, ReferralState
from rujuk_contracts.events import Priority, Service
from rujuk_runtime.db import Connection

_REFERRAL_COLUMNS = (
    "referral_id, case_id, agency_id, service, priority, state, acknowledgement_deadline, "
    "escalation_chain, escalation_step, rule_ids, consent_override, sop_id, sop_version, "
    "acknowledge_within, root_referral_id"
)


@dataclass(frozen=True)
class StoredReferral:
    referral_id: str
    case_id: str
    agency_id: str
    state: ReferralState
    service: Service
    priority: Priority
    acknowledgement_deadline: datetime
    escalation_chain: tuple[str, ...]
    escalation_step: int
    rule_ids: tuple[str, ...]
    consent_override: str | None
    sop_id: str
    sop_version: int
    acknowledge_within: timedelta
    root_referral_id: str


@dataclass(frozen=True)
class StoredSop:
    district_code: str
    version: int
    sop_id: str
    yaml: str
    sha256: str
    published_by: str
    published_at: datetime


@dataclass(frozen=True)
class StoredCase:
    case_id: str
    closed_at: datetime | None
    referrals: tuple[StoredReferral, ...]

    def open_referrals(self) -> list[StoredReferral]:
        return [r for r in self.referrals if r.state not in SETTLED_STATES]


async def add_case(
    conn: Connection,
    decision: Decision,
    *,
    district_code: str,
    reported_at: datetime,
    routed_at: datetime,
) -> bool:
    """Store a routed case, its referrals and their deadlines; False (and nothing stored) if
    the case was routed before."""
    inserted = await conn.fetchval(
        "INSERT INTO cases (case_id, district_code, sop_id, sop_version, rules_fired, withheld, "
        "reported_at, routed_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8) "
        "ON CONFLICT (case_id) DO NOTHING RETURNING true",
        decision.case_id,
        district_code,
        decision.sop_id,
        decision.sop_version,
        list(decision.rules_fired),
        json.dumps([_withheld_row(w) for w in decision.withheld]),
        reported_at,
        routed_at,
    )
    if not inserted:
        return False
    await conn.executemany(
        "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, "
        "acknowledgement_deadline, escalation_chain, rule_ids, consent_override, sop_id, "
        "sop_version, acknowledge_within, root_referral_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $1)",
        [
            (
                referral.referral_id,
                decision.case_id,
                referral.agency_id,
                referral.service.value,
                referral.priority.value,
                referral.acknowledgement_deadline,
                list(referral.escalation_chain),
                list(referral.rule_ids),
                referral.consent_override,
                decision.sop_id,
                decision.sop_version,
                referral.acknowledge_within,
            )
            for referral in decision.referrals
        ],
    )
    await conn.executemany(
        "INSERT INTO deadlines (referral_id, due_at) VALUES ($1, $2)",
        [(r.referral_id, r.acknowledgement_deadline) for r in decision.referrals],
    )
    return True


async def add_escalated_referral(
    conn: Connection, previous: StoredReferral, step: EscalationStep, deadline: datetime
) -> bool:
    """The referral that takes over from ``previous``, with its deadline; False if it exists."""
    inserted = await conn.fetchval(
        "INSERT INTO referrals (referral_id, case_id, agency_id, service, priority, "
        "acknowledgement_deadline, escalation_chain, escalation_step, rule_ids, "
        "consent_override, sop_id, sop_version, acknowledge_within, escalated_from, "
        "root_referral_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
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


async def set_state(conn: Connection, referral_id: str, state: ReferralState) -> None:
    await conn.execute(
        "UPDATE referrals SET state = $2, updated_at = now() WHERE referral_id = $1",
        referral_id,
        state.value,
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
    await conn.execute(
        "UPDATE referrals SET state = $2, delivery_attempts = GREATEST(delivery_attempts, $3), "
        "last_delivery_failure = COALESCE($4, last_delivery_failure), updated_at = now() "
        "WHERE referral_id = $1",
        referral_id,
        state.value,
        attempts,
        failure,
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


# --- cases --------------------------------------------------------------------------------


async def lock_case(conn: Connection, case_id: str) -> StoredCase | None:
    """The case and its referrals; the case row is locked so two closes do not race."""
    row = await conn.fetchrow(
        "SELECT case_id, closed_at FROM cases WHERE case_id = $1 FOR UPDATE", case_id
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
    conn: Connection, case_id: str, *, closed_at: datetime, closed_by: str, reason: str
) -> None:
    await conn.execute(
        "UPDATE cases SET closed_at = $2, closed_by = $3, close_reason = $4 WHERE case_id = $1",
        case_id,
        closed_at,
        closed_by,
        reason,
    )


# --- published SOPs -----------------------------------------------------------------------


async def newest_sop(conn: Connection, district_code: str) -> tuple[int, str] | None:
    """(version, sha256) of the newest published SOP of the district."""
    row = await conn.fetchrow(
        "SELECT version, sha256 FROM sops WHERE district_code = $1 ORDER BY version DESC LIMIT 1",
        district_code,
    )
    return None if row is None else (row["version"], row["sha256"])


async def get_sop(conn: Connection, district_code: str, version: int) -> StoredSop | None:
    row = await conn.fetchrow(
        "SELECT * FROM sops WHERE district_code = $1 AND version = $2", district_code, version
    )
    return None if row is None else StoredSop(**dict(row))


async def newest_sops(conn: Connection) -> list[StoredSop]:
    """The newest published SOP of every district."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (district_code) * FROM sops ORDER BY district_code, version DESC"
    )
    return [StoredSop(**dict(row)) for row in rows]


async def add_sop(conn: Connection, sop: StoredSop) -> bool:
    """Store a published version; False if that district and version exist already."""
    inserted = await conn.fetchval(
        "INSERT INTO sops (district_code, version, sop_id, yaml, sha256, published_by, "
        "published_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (district_code, version) DO NOTHING RETURNING true",
        sop.district_code,
        sop.version,
        sop.sop_id,
        sop.yaml,
        sop.sha256,
        sop.published_by,
        sop.published_at,
    )
    return bool(inserted)


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


async def referrals_by_state_and_agency(conn: Connection) -> list[tuple[str, str, int]]:
    """(state, agency, count) over every referral, for the open-referrals metric."""
    rows = await conn.fetch(
        "SELECT state, agency_id, count(*) AS n FROM referrals GROUP BY state, agency_id"
    )
    return [(row["state"], row["agency_id"], row["n"]) for row in rows]
