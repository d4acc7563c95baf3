"""Words typed into purposes and close reasons before they were codes are forgotten by the
migrations that made them codes (intake 0007, routing 0005): run on a real database that
holds such rows, as an upgraded deployment's would."""

from pathlib import Path

import asyncpg

from tests.conftest import ProvisionedDatabase

ROOT = Path(__file__).parents[2]
INTAKE_MIGRATION = ROOT / "services/intake/src/intake/migrations/0007_typed_purposes_forgotten.sql"
ROUTING_MIGRATION = (
    ROOT / "services/routing/src/routing/migrations/0005_typed_close_reasons_forgotten.sql"
)
TYPED = "untuk Ibu CONTOH SITI, Jl. Khayalan 9"  # invented, as a tester typed it


async def test_typed_purposes_and_close_reasons_become_codes(
    database: ProvisionedDatabase,
) -> None:
    conn = await asyncpg.connect(database.admin_url)
    try:
        await conn.execute(
            "INSERT INTO intake.cases (case_id, district_code, channel, triage, reported_at) "
            "VALUES ('3514-AAAAAAAAAA', '3514', 'hotline', '{}', now())"
        )
        for event_id, purpose in (("e1", TYPED), ("e2", "medical_care")):
            await conn.execute(
                "INSERT INTO intake.disclosures (event_id, case_id, referral_id, agency_id, "
                "token_id, fields, purpose) VALUES ($1, '3514-AAAAAAAAAA', '3514-AAAAAAAAAA-01', "
                "'rsud-bangil', 'tok-000000000001', '{victim.name}', $2)",
                event_id,
                purpose,
            )
        for case_id, reason in (
            ("3514-BBBBBBBBBB", "every referral completed or cancelled"),
            ("3514-CCCCCCCCCC", TYPED),
            ("3514-DDDDDDDDDD", "duplicate_report"),
            ("3514-EEEEEEEEEE", None),
        ):
            await conn.execute(
                "INSERT INTO routing.cases (case_id, district_code, sop_id, sop_version, "
                "rules_fired, reported_at, routed_at, close_reason) "
                "VALUES ($1, '3514', 'sop-contoh', 1, '{}', now(), now(), $2)",
                case_id,
                reason,
            )
        for migration, schema in ((INTAKE_MIGRATION, "intake"), (ROUTING_MIGRATION, "routing")):
            await conn.execute(f"SET search_path = {schema}")
            await conn.execute(migration.read_text())
        purposes = await conn.fetch("SELECT event_id, purpose FROM intake.disclosures")
        reasons = await conn.fetch("SELECT case_id, close_reason FROM routing.cases")
    finally:
        await conn.close()
    assert dict(map(tuple, purposes)) == {"e1": "other", "e2": "medical_care"}
    assert dict(map(tuple, reasons)) == {
        "3514-BBBBBBBBBB": "services_completed",
        "3514-CCCCCCCCCC": "other",
        "3514-DDDDDDDDDD": "duplicate_report",
        "3514-EEEEEEEEEE": None,
    }
