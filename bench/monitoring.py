"""What the rakor's monitoring figures (GET /v1/monitoring, routing.store.monitoring_rows) cost
for one district at a province's five years: 38 districts, 100,000 cases by default, about
450,000 referrals with answers, declines and hand-ons, written straight into routing's tables
(COPY) of a fresh, provisioned database on an embedded PostgreSQL. Sample data only: case ids,
agency ids and times, nothing else.

    nice -n 15 .venv/bin/python bench/monitoring.py [--cases 100000] [--runs 50]

Prints, and writes to bench/results/monitoring-<cases>-<time>.json: p50/p99 of the figures of
one district for a month, a quarter and a year (and, for comparison, the whole province's
year), each statement's plan for the district's year (EXPLAIN ANALYZE: the indexes it read and
its time).
"""

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from routing import store
from routing.monitoring import NOT_A_COMPLAINT, SERVICE_FUNCTIONS
from rujuk_runtime.db import create_pool
from rujuk_runtime.embedded import EmbeddedPostgres
from rujuk_runtime.provision import provision
from rujuk_runtime.roles import SCHEMAS

sys.path.insert(0, str(Path(__file__).parent))
from seed_years import DISTRICTS, YEARS, case_id

RESULTS = Path(__file__).parent / "results"
SERVICES = ["case_management", "health", "police", "shelter", "legal", "psychosocial", "social",
            "mediation"]  # fmt: skip
CHANNELS = ["hotline", "walk_in", "outreach", "sapa_129", "web_form", "partner_agency"]
DECLINES = ["no_capacity", "out_of_mandate", "out_of_area", "survivor_declined", "other"]
DISTRICT = "3514"
ZONE = "Asia/Jakarta"  # routing's default ROUTING_STATS_TIMEZONE
CASE_COLUMNS = ["case_id", "district_code", "sop_id", "sop_version", "rules_fired",
                "reported_at", "routed_at", "violence_types", "channel", "closed_at",
                "close_reason"]  # fmt: skip
REFERRAL_COLUMNS = ["referral_id", "case_id", "agency_id", "service", "priority", "state",
                    "acknowledgement_deadline", "escalation_chain", "escalation_step", "rule_ids",
                    "created_at", "acknowledged_at", "declined_at", "decline_reason",
                    "escalated_at", "escalation_reason", "sop_id", "sop_version",
                    "acknowledge_within", "escalated_from", "root_referral_id"]  # fmt: skip


def history(cases: int, now: datetime, rnd: random.Random) -> tuple[list[Any], list[Any]]:
    """Invented cases and referrals: each case 2-5 referrals, some answered late, declined or
    handed on once."""
    case_rows: list[Any] = []
    referral_rows: list[Any] = []
    for number in range(cases):
        district = DISTRICTS[number % len(DISTRICTS)]
        cid = case_id(district, number)
        reported = now - timedelta(seconds=rnd.uniform(3600, YEARS * 365.25 * 86400))
        closed = rnd.random() < 0.02
        case_rows.append((cid, district, f"sop-{district}", 1, ["rule"], reported, reported,
                          ["physical"], rnd.choice(CHANNELS),
                          reported + timedelta(days=30) if closed else None,
                          "duplicate_report" if closed else None))  # fmt: skip
        services = ["case_management", *rnd.sample(SERVICES[1:], rnd.randint(1, 4))]
        for index, service in enumerate(services):
            rid = f"{cid}-{index + 1:02d}"
            within = timedelta(minutes=rnd.choice([30, 60, 120, 1440]))
            agency = f"{service.replace('_', '-')}-{district}"
            roll = rnd.random()
            answer = reported + timedelta(minutes=rnd.uniform(2, 300))
            acknowledged = answer if roll < 0.85 else None
            declined = roll < 0.08
            handed_on = declined or roll > 0.93
            escalated_at = (answer if declined else reported + within) if handed_on else None
            referral_rows.append((
                rid, cid, agency, service, "urgent", "escalated" if handed_on else "acknowledged",
                reported + within, ["coordinator"], 0, ["rule"], reported, acknowledged,
                answer if declined else None, rnd.choice(DECLINES) if declined else None,
                escalated_at, None, f"sop-{district}", 1, within, None, rid,
            ))  # fmt: skip
            if handed_on:
                assert escalated_at is not None
                referral_rows.append((
                    f"{rid}-e1", cid, f"{agency}-alt", service, "urgent", "acknowledged",
                    escalated_at + within, ["coordinator"], 1, ["rule"], escalated_at,
                    escalated_at + timedelta(minutes=rnd.uniform(2, 300)), None, None, None,
                    "declined" if declined else "deadline_missed", f"sop-{district}", 1, within,
                    rid, rid,
                ))  # fmt: skip
    return case_rows, referral_rows


async def figures(
    conn: asyncpg.Connection, days: int, now: datetime, districts: Any, zone: str | None = None
) -> Any:
    """The rakor's figures of the last ``days``; with ``zone`` (and no districts) the whole
    settled months from their roll-ups, as GET /v1/monitoring asks for the province."""
    return await store.monitoring_rows(
        conn,
        zone=zone,
        start=now - timedelta(days=days),
        end=now,
        now=now,
        districts=districts,
        function_of_service={s.value: f.value for s, f in SERVICE_FUNCTIONS.items()},
        not_a_complaint=NOT_A_COMPLAINT,
    )


class Recorder:
    """Stands for a connection: keeps each statement monitoring_rows sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.settings: list[str] = []  # SET LOCAL, applied before each plan

    async def execute(self, sql: str, *args: Any) -> None:
        self.settings.append(sql)

    def transaction(self, **_: Any) -> Any:
        import contextlib

        return contextlib.nullcontext()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.sent.append((sql, args))
        return []

    async def fetchrow(self, sql: str, *args: Any) -> None:
        self.sent.append((sql, args))


async def measure(url: str, runs: int, now: datetime) -> dict[str, Any]:
    pool = await create_pool(url, "routing")
    results: dict[str, Any] = {}
    try:
        async with pool.acquire() as conn:
            for name, days, districts, zone in (
                ("district_month", 30, [DISTRICT], None),
                ("district_quarter", 91, [DISTRICT], None),
                ("district_year", 365, [DISTRICT], None),
                ("province_year", 365, None, None),
                ("province_year_rolled_up", 365, None, ZONE),
            ):
                for _ in range(3):
                    await figures(conn, days, now, districts, zone)
                timings = []
                for _ in range(runs if districts else max(5, runs // 10)):
                    started = time.perf_counter()
                    rows = await figures(conn, days, now, districts, zone)
                    timings.append((time.perf_counter() - started) * 1000)
                timings.sort()
                total = next(r for r in rows.agencies if r["agency_id"] is None)
                results[name] = {
                    "p50_ms": round(statistics.median(timings), 1),
                    "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)], 1),
                    "referrals_counted": total["referrals"],
                    "runs": len(timings),
                }
                print(f"  {name}: {results[name]}")
            recorder = Recorder()
            await figures(recorder, 365, now, [DISTRICT])  # type: ignore[arg-type]
            plans = []
            for sql, args in recorder.sent:
                async with conn.transaction():
                    for setting in recorder.settings:
                        await conn.execute(setting)
                    plan = json.loads(
                        await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
                    )[0]
                plans.append({
                    "statement": sql[:90],
                    "ms": round(plan["Execution Time"], 2),
                    "indexes": sorted(indexes(plan)),
                    "seq_scans": sorted(seq_scans(plan)),
                })  # fmt: skip
                print(f"  plan {plans[-1]}")
            results["district_year_plans"] = plans
    finally:
        await pool.close()
    return results


def indexes(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        found = {f"{plan['Node Type']}: {plan['Index Name']}"} if "Index Name" in plan else set()
        return found.union(*(indexes(v) for v in plan.values()))
    if isinstance(plan, list):
        return set().union(*(indexes(v) for v in plan))
    return set()


def seq_scans(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        found = {plan["Relation Name"]} if plan.get("Node Type") == "Seq Scan" else set()
        return found.union(*(seq_scans(v) for v in plan.values()))
    if isinstance(plan, list):
        return set().union(*(seq_scans(v) for v in plan))
    return set()


async def main(cases: int, runs: int) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="rujuk-bench-monitoring-") as folder:
        server = EmbeddedPostgres(Path(folder) / "postgres").start()
        try:
            passwords = {schema: secrets.token_urlsafe(16) for schema in SCHEMAS}
            await provision(server.url, passwords)
            started = time.monotonic()
            case_rows, referral_rows = history(cases, now, random.Random(1))
            conn = await asyncpg.connect(server.url)
            try:
                await conn.copy_records_to_table(
                    "cases", records=case_rows, columns=CASE_COLUMNS, schema_name="routing"
                )
                await conn.copy_records_to_table(
                    "referrals",
                    records=referral_rows,
                    columns=REFERRAL_COLUMNS,
                    schema_name="routing",
                )
                await conn.execute("VACUUM ANALYZE routing.cases")
                await conn.execute("VACUUM ANALYZE routing.referrals")
            finally:
                await conn.close()
            seeded = round(time.monotonic() - started, 1)
            print(
                f"seeded {len(case_rows):,} cases, {len(referral_rows):,} referrals in {seeded} s"
            )
            results = await measure(server.url, runs, now)
        finally:
            server.stop()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"monitoring-{cases}-{now:%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"cases": cases, "referrals": len(referral_rows),
                               "seed_seconds": seeded, **results}, indent=2))  # fmt: skip
    print(f"written: {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.cases, arguments.runs))
