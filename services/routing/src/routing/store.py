"""Routing's PostgreSQL adapter: cases and referrals. The only module that writes SQL."""

import json
from dataclasses import dataclass
from datetime import datetime

from routing.decide import Decision, WithheldReferral
from routing.lifecycle import ReferralState
from rujuk_runtime.db import Connection


@dataclass(frozen=True)
class StoredReferral:
    referral_id: str
    case_id: str
    agency_id: str
    state: ReferralState


async def add_case(
    conn: Connection,
    decision: Decision,
    *,
    district_code: str,
    reported_at: datetime,
    routed_at: datetime,
) -> bool:
    """Store a routed case and its referrals; False (and nothing stored) if it was routed before."""
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
        "acknowledgement_deadline, escalation_chain, rule_ids, consent_override) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
            )
            for referral in decision.referrals
        ],
    )
    return True


async def lock_referral(conn: Connection, referral_id: str) -> StoredReferral | None:
    """The referral, locked for the rest of the transaction so transitions do not race."""
    row = await conn.fetchrow(
        "SELECT referral_id, case_id, agency_id, state FROM referrals "
        "WHERE referral_id = $1 FOR UPDATE",
        referral_id,
    )
    if row is None:
        return None
    return StoredReferral(
        referral_id=row["referral_id"],
        case_id=row["case_id"],
        agency_id=row["agency_id"],
        state=ReferralState(row["state"]),
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


def _withheld_row(withheld: WithheldReferral) -> dict[str, object]:
    return {
        "service": withheld.service.value,
        "agency_id": withheld.agency_id,
        "rule_ids": list(withheld.rule_ids),
        "reason": withheld.reason,
    }
