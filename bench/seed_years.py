"""A province's five years in rujuk's database: 38 districts, 100,000 cases by default, about
510,000 referrals with their deliveries, replies, escalations and closures, and about three
million ledger entries. Sample data only: the vault holds each case's invented record.

    nice -n 15 .venv/bin/python bench/seed_years.py --database-url ADMIN_URL \\
        --master-keys SPEC [--cases 100000]

Not through the HTTP and bus write paths: at the 20-50 reports a second the services sustain
on two cores that would take hours for five years, and it would measure the write path, which
bench/e2e.py does already. Instead each service's tables get the rows its own store writes for
that history, and the ledger the entries audit's writer would append, made by the same code:
- intake: ``cases``, the vault (sealed by ``intake.vault.Vault``, one data key per case, as
  ``POST /v1/reports``), ``case_referrals`` as its projection leaves them, ``disclosures``;
- routing: ``cases``, ``referrals`` with their answer times and states, ``deadlines`` fired;
- notify: ``deliveries``, ``sends`` and ``delivery_attempts`` (NATS feed and webhook, done);
- each service's inbox (``processed_events``): one row per event it consumed;
- audit: each event made with the contract's own models (``make_event``), chained by
  ``audit.chain.next_entry`` and copied into ``ledger``; then ``audit.tree.ensure_tree``
  builds the Merkle tree over it, as audit does for a ledger from before the tree.
Timestamps spread over five years; the history after the last 90 days is not on the bus (the
stream keeps 90 days, docs/operations.md), so the bus is left empty: bench/years.py says so.
"""

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from audit import chain, store, tree
from audit.chain import GENESIS, Head
from intake.report import Report, identifying_data, triage_of
from intake.vault import Vault, parse_master_keys
from rujuk.samples import SAMPLE_REPORTS
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import (
    CaseClosed,
    CaseDetailsDisclosed,
    CaseReported,
    CaseRouted,
    CloseReason,
    DeclineReason,
    DeliveryChannel,
    DisclosurePurpose,
    EscalationReason,
    EventPayload,
    Priority,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralEscalated,
    ReferralRequested,
    ReferralSummary,
    Service,
)
from rujuk_contracts.triage import ReportChannel

# East Java's 29 regencies and 9 cities (BPS codes): a province's 38 districts.
DISTRICTS = [f"35{n:02d}" for n in range(1, 30)] + [f"35{n:02d}" for n in range(71, 80)]
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
YEARS = 5
CHUNK_CASES = 2_000
AGENCY_OF = {
    Service.CASE_MANAGEMENT: "uptppa",
    Service.HEALTH: "rsud",
    Service.POLICE: "polres-ppa",
    Service.SHELTER: "rumah-aman",
    Service.LEGAL: "lbh",
    Service.PSYCHOSOCIAL: "puspaga",
    Service.SOCIAL: "dinsos",
}
SERVICES = list(AGENCY_OF)
# How a referral ended, and how often (the escalated ones get a referral to the next agency).
OUTCOMES = [("completed", 0.68), ("accepted", 0.10), ("acknowledged", 0.07),
            ("declined", 0.08), ("missed", 0.07)]  # fmt: skip
CLOSED_AFTER = timedelta(days=60)
BENCH_TOKEN_ID = "tok-bench"  # noqa: S105 - an invented token id, in disclosures (no secret)


def case_id(district: str, number: int) -> str:
    return f"{district}-" + "".join(CROCKFORD[(number >> (5 * i)) & 31] for i in range(10))


def agency(service: Service, district: str) -> str:
    return f"{AGENCY_OF[service]}-{district}"


@dataclass
class Rows:
    """What one chunk of cases adds to each table, and the events for the ledger."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    events: list[CloudEvent] = field(default_factory=list)

    def add(self, table: str, *row: Any) -> None:
        self.tables.setdefault(table, []).append(row)


COLUMNS = {
    "intake.cases": ["case_id", "district_code", "channel", "triage", "reported_at", "status",
                     "request_hash", "updated_at", "closed_at"],
    "intake.vault": ["case_id", "key_id", "wrapped_key", "ciphertext"],
    "intake.case_referrals": ["referral_id", "case_id", "agency_id", "service", "priority",
                              "state", "updated_at"],
    "intake.disclosures": ["event_id", "case_id", "referral_id", "agency_id", "token_id",
                           "fields", "purpose", "disclosed_at"],
    "routing.cases": ["case_id", "district_code", "sop_id", "sop_version", "rules_fired",
                      "reported_at", "routed_at", "violence_types", "closed_at", "closed_by",
                      "close_reason"],
    "routing.referrals": ["referral_id", "case_id", "agency_id", "service", "priority", "state",
                          "acknowledgement_deadline", "escalation_chain", "escalation_step",
                          "rule_ids", "delivery_attempts", "created_at", "updated_at",
                          "acknowledged_at", "accepted_at", "declined_at", "decline_reason",
                          "completed_at", "escalated_at", "escalation_reason", "sop_id",
                          "sop_version", "acknowledge_within", "escalated_from",
                          "root_referral_id"],
    "routing.deadlines": ["referral_id", "due_at", "fired_at", "outcome"],
    "notify.deliveries": ["referral_id", "case_id", "agency_id", "event_id", "event_type",
                          "body", "state", "channels_done", "attempts", "next_attempt_at",
                          "created_at", "finished_at"],
    "notify.sends": ["referral_id", "agency_id", "channel", "state", "attempts",
                     "next_attempt_at", "finished_at"],
    "notify.delivery_attempts": ["referral_id", "channel", "attempt", "ok", "detail", "at"],
    "intake.processed_events": ["event_id", "event_type", "processed_at"],
    "routing.processed_events": ["event_id", "event_type", "processed_at"],
    "notify.processed_events": ["event_id", "event_type", "processed_at"],
}  # fmt: skip
# Which service's inbox records which event type (the consumers each one has).
CONSUMED_BY = {
    "intake": {CaseRouted, ReferralRequested, ReferralDelivered, ReferralAcknowledged,
               ReferralAccepted, ReferralDeclined, ReferralCompleted, ReferralEscalated,
               CaseClosed},
    "routing": {CaseReported, ReferralDelivered, ReferralAcknowledged, ReferralAccepted,
                ReferralDeclined, ReferralCompleted},
    "notify": {ReferralRequested},
}  # fmt: skip


class History:
    """Invented cases, deterministic for a seed."""

    def __init__(self, cases: int, vault: Vault, seed: int, now: datetime) -> None:
        self.cases = cases
        self.vault = vault
        self.random = random.Random(seed)
        self.now = now
        self.reports = [Report.model_validate(sample) for sample in SAMPLE_REPORTS]

    def event(self, payload: EventPayload, source: str, at: datetime) -> CloudEvent:
        return make_event(
            payload,
            source=source,
            time=at,
            event_id=str(uuid.UUID(int=self.random.getrandbits(128), version=4)),
        )

    def chunk(self, first: int, last: int) -> Rows:
        rows = Rows()
        for number in range(first, last):
            self.case(number, rows)
        return rows

    def case(self, number: int, rows: Rows) -> None:
        rnd = self.random
        district = DISTRICTS[number % len(DISTRICTS)]
        cid = case_id(district, number)
        reported_at = self.now - timedelta(seconds=rnd.uniform(3600, YEARS * 365.25 * 86400))
        report = self.reports[number % len(self.reports)]
        triage = triage_of(report, reported_at.date()).model_copy(
            update={"district_code": district}
        )
        sealed = self.vault.seal(cid, identifying_data(report))
        reported = self.event(
            CaseReported(case_id=cid, channel=ReportChannel(report.channel),
                         reported_at=reported_at, triage=triage),
            "/rujuk/intake", reported_at,
        )  # fmt: skip
        closed_at = (
            reported_at + timedelta(days=rnd.uniform(20, 55))
            if self.now - reported_at > CLOSED_AFTER and rnd.random() < 0.92
            else None
        )
        routed_at = reported_at + timedelta(milliseconds=rnd.uniform(20, 200))
        services = rnd.sample(SERVICES[1:], rnd.choice([2, 3, 3, 4, 4, 5]))
        referrals = [Service.CASE_MANAGEMENT, *services]
        summaries, events, final_states = [], [reported], {}
        routing_referrals: list[tuple[Any, ...]] = []
        for index, service in enumerate(referrals):
            rid = f"{cid}-{index + 1:02d}"
            priority = rnd.choice([Priority.EMERGENCY, Priority.URGENT, Priority.URGENT,
                                   Priority.ROUTINE])  # fmt: skip
            deadline = routed_at + timedelta(minutes=rnd.choice([30, 60, 120, 1440]))
            summaries.append(ReferralSummary(referral_id=rid, service=service,
                             agency_id=agency(service, district), priority=priority,
                             acknowledgement_deadline=deadline))  # fmt: skip
            self.referral(cid, rid, district, service, priority, routed_at, deadline, closed_at,
                          rows, events, final_states, routing_referrals)  # fmt: skip
        routed = self.event(
            CaseRouted(case_id=cid, sop_id=f"sop-{district}", sop_version=1,
                       rules_fired=["case-management"], referrals=summaries),
            "/rujuk/routing", routed_at,
        )  # fmt: skip
        events.insert(1, routed)
        status = "routed"
        if closed_at is not None:
            events.append(self.event(
                CaseClosed(case_id=cid, closed_by="coordinator:bench",
                           reason=CloseReason.SERVICES_COMPLETED),
                "/rujuk/routing", closed_at,
            ))  # fmt: skip
            status = "closed"
        request_hash = rnd.getrandbits(256).to_bytes(32, "big")
        updated = closed_at or max(e.time for e in events)
        rows.add("intake.cases", cid, district, report.channel, triage.model_dump_json(),
                 reported_at, status, request_hash, updated, closed_at)  # fmt: skip
        rows.add("intake.vault", cid, sealed.key_id, sealed.wrapped_key, sealed.ciphertext)
        rows.add("routing.cases", cid, district, f"sop-{district}", 1, ["case-management"],
                 reported_at, routed_at, [v.value for v in triage.violence_types], closed_at,
                 "coordinator:bench" if closed_at else None,
                 "services_completed" if closed_at else None)  # fmt: skip
        rows.tables.setdefault("routing.referrals", []).extend(routing_referrals)
        for rid, (agency_id, service, priority, state, at) in final_states.items():
            rows.add("intake.case_referrals", rid, cid, agency_id, service, priority, state, at)
        for event in events:
            rows.events.append(event)
            for service_name, consumed in CONSUMED_BY.items():
                if type_of(event) in consumed:
                    rows.add(f"{service_name}.processed_events", event.id, event.type,
                             event.time)  # fmt: skip

    def referral(
        self, cid: str, rid: str, district: str, service: Service, priority: Priority,
        made_at: datetime, deadline: datetime, closed_at: datetime | None, rows: Rows,
        events: list[CloudEvent], final_states: dict[str, tuple[Any, ...]],
        routing_referrals: list[tuple[Any, ...]], step: int = 0, parent: str | None = None,
    ) -> None:  # fmt: skip
        rnd = self.random
        agency_id = agency(service, district)
        if step:
            agency_id = f"{agency_id}-alt{step}"
        requested = self.event(
            ReferralRequested(case_id=cid, referral_id=rid, agency_id=agency_id,
                              service=service, priority=priority,
                              acknowledgement_deadline=deadline,
                              escalation_chain=[f"dp3ap2kb-{district}"],
                              sop_id=f"sop-{district}", sop_version=1,
                              rule_ids=["case-management"]),
            "/rujuk/routing", made_at,
        )  # fmt: skip
        delivered_at = made_at + timedelta(milliseconds=rnd.uniform(30, 400))
        delivered = self.event(
            ReferralDelivered(case_id=cid, referral_id=rid, agency_id=agency_id,
                              channels=[DeliveryChannel.NATS, DeliveryChannel.WEBHOOK],
                              attempts=1),
            "/rujuk/notify", delivered_at,
        )  # fmt: skip
        events += [requested, delivered]
        outcome = pick(rnd, OUTCOMES)
        horizon = closed_at or self.now
        answer = min(made_at + timedelta(minutes=rnd.uniform(5, 300)), horizon)
        times: dict[str, datetime | None] = dict.fromkeys(
            ("acknowledged", "accepted", "declined", "completed", "escalated")
        )
        state, decline_reason, escalation_reason = "delivered", None, None
        partner = f"/rujuk/partners/{agency_id}"
        if outcome in ("acknowledged", "accepted", "completed"):
            times["acknowledged"] = answer
            events.append(self.event(ReferralAcknowledged(case_id=cid, referral_id=rid,
                          agency_id=agency_id), partner, answer))  # fmt: skip
            state = "acknowledged"
        if outcome in ("accepted", "completed"):
            times["accepted"] = answer + timedelta(minutes=rnd.uniform(1, 120))
            events.append(self.event(ReferralAccepted(case_id=cid, referral_id=rid,
                          agency_id=agency_id), partner, times["accepted"]))  # fmt: skip
            state = "accepted"
            self.disclose(cid, rid, agency_id, times["accepted"], rows, events)
        if outcome == "completed":
            times["completed"] = min(times["accepted"] + timedelta(days=rnd.uniform(1, 20)),
                                     horizon)  # fmt: skip
            events.append(self.event(ReferralCompleted(case_id=cid, referral_id=rid,
                          agency_id=agency_id), partner, times["completed"]))  # fmt: skip
            state = "completed"
        if outcome in ("declined", "missed") and step < 2:
            if outcome == "declined":
                times["declined"] = answer
                decline_reason = DeclineReason.NO_CAPACITY.value
                events.append(self.event(ReferralDeclined(case_id=cid, referral_id=rid,
                              agency_id=agency_id, reason=DeclineReason.NO_CAPACITY),
                              partner, answer))  # fmt: skip
            escalated_at = answer if outcome == "declined" else deadline
            times["escalated"] = escalated_at
            escalation_reason = (EscalationReason.DECLINED if outcome == "declined"
                                 else EscalationReason.DEADLINE_MISSED)  # fmt: skip
            state = "escalated"
            next_rid = f"{rid}-e{step + 1}"
            events.append(self.event(
                ReferralEscalated(case_id=cid, referral_id=next_rid, from_agency_id=agency_id,
                                  to_agency_id=f"{agency(service, district)}-alt{step + 1}",
                                  reason=escalation_reason, step=step + 1),
                "/rujuk/routing", escalated_at,
            ))  # fmt: skip
            self.referral(cid, next_rid, district, service, priority, escalated_at,
                          escalated_at + (deadline - made_at), closed_at, rows, events,
                          final_states, routing_referrals, step + 1, rid)  # fmt: skip
        updated = max(t for t in [delivered_at, *times.values()] if t is not None)
        routing_referrals.append((
            rid, cid, agency_id, service.value, priority.value, state, deadline,
            [f"dp3ap2kb-{district}"], step, ["case-management"], 1, made_at, updated,
            times["acknowledged"], times["accepted"], times["declined"], decline_reason,
            times["completed"], times["escalated"],
            escalation_reason.value if escalation_reason else None, f"sop-{district}", 1,
            deadline - made_at, parent, rid.split("-e")[0],
        ))  # fmt: skip
        final_states[rid] = (agency_id, service.value, priority.value, state, updated)
        met = times["acknowledged"] is not None and times["acknowledged"] <= deadline
        rows.add("routing.deadlines", rid, deadline, min(deadline, updated) if met else deadline,
                 "met" if met else ("escalated" if state == "escalated" else "met"))  # fmt: skip
        body = requested.to_bytes()
        rows.add("notify.deliveries", rid, cid, agency_id, requested.id, requested.type, body,
                 "delivered", ["nats", "webhook"], 1, made_at, made_at, delivered_at)  # fmt: skip
        for channel in ("nats", "webhook"):
            rows.add("notify.sends", rid, agency_id, channel, "done", 1, made_at, delivered_at)
            rows.add("notify.delivery_attempts", rid, channel, 1, True, channel, delivered_at)

    def disclose(
        self, cid: str, rid: str, agency_id: str, at: datetime, rows: Rows,
        events: list[CloudEvent],
    ) -> None:  # fmt: skip
        fields = ["victim.name", "victim.phone", "victim.address"]
        disclosed = self.event(
            CaseDetailsDisclosed(case_id=cid, agency_id=agency_id, referral_id=rid,
                                 fields=fields, purpose=DisclosurePurpose.FIRST_CONTACT,
                                 token_id=BENCH_TOKEN_ID),
            "/rujuk/intake", at,
        )  # fmt: skip
        events.append(disclosed)
        rows.add("intake.disclosures", disclosed.id, cid, rid, agency_id, BENCH_TOKEN_ID, fields,
                 DisclosurePurpose.FIRST_CONTACT.value, at)  # fmt: skip


def type_of(event: CloudEvent) -> type[EventPayload] | None:
    from rujuk_contracts.events import model_for_type

    return model_for_type(event.type)


def pick(rnd: random.Random, weighted: list[tuple[str, float]]) -> str:
    roll, total = rnd.random(), 0.0
    for value, weight in weighted:
        total += weight
        if roll < total:
            return value
    return weighted[-1][0]


def chunks(cases: int) -> Iterator[tuple[int, int]]:
    for first in range(0, cases, CHUNK_CASES):
        yield first, min(first + CHUNK_CASES, cases)


async def seed(database_url: str, master_keys: str, cases: int, *, seed_value: int = 1,
               say: Any = print) -> dict[str, Any]:  # fmt: skip
    """Seed ``cases`` cases into a provisioned, empty database; return what was made."""
    vault = Vault(parse_master_keys(master_keys))
    history = History(cases, vault, seed_value, datetime.now(UTC))
    conn = await asyncpg.connect(database_url)
    head, counts, started = GENESIS, dict.fromkeys(COLUMNS, 0), time.monotonic()
    ledger_columns = [c.strip() for c in store._COLUMNS.split(",")]
    try:
        for first, last in chunks(cases):
            rows = history.chunk(first, last)
            # The ledger in the order audit would append it: by event time (stream order).
            rows.events.sort(key=lambda e: e.time)
            entries = []
            for event in rows.events:
                entry = chain.next_entry(head, event, event.time + timedelta(milliseconds=5))
                head = Head(entry.seq, entry.hash)
                entries.append(store._row(entry))
            async with conn.transaction():
                for table in COLUMNS:  # in the order the foreign keys need
                    records = rows.tables.get(table, [])
                    schema, name = table.split(".")
                    await conn.copy_records_to_table(
                        name, records=records, columns=COLUMNS[table], schema_name=schema
                    )
                    counts[table] += len(records)
                await conn.copy_records_to_table(
                    "ledger", records=entries, columns=ledger_columns, schema_name="audit"
                )
            if last % (CHUNK_CASES * 10) == 0 or last == cases:
                say(f"  {last:,} cases, ledger {head.seq:,} entries, "
                    f"{time.monotonic() - started:.0f} s")  # fmt: skip
        await conn.execute("SET search_path = audit")
        tree_started = time.monotonic()
        await tree.ensure_tree(conn)
        tree_seconds = time.monotonic() - tree_started
        # What autovacuum has done many times over five years: statistics, and the visibility
        # map without which an index-only scan (a period's figures) visits the table anyway.
        vacuum_started = time.monotonic()
        await conn.execute("VACUUM (ANALYZE)")
        vacuum_seconds = time.monotonic() - vacuum_started
    finally:
        await conn.close()
    return {
        "cases": cases,
        "ledger_entries": head.seq,
        "rows": {k: v for k, v in counts.items() if v},
        "seconds": round(time.monotonic() - started, 1),
        "tree_seconds": round(tree_seconds, 1),
        "vacuum_seconds": round(vacuum_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="The administrator's URL")
    parser.add_argument("--master-keys", required=True, help="INTAKE_MASTER_KEYS of the stack")
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    made = asyncio.run(seed(args.database_url, args.master_keys, args.cases))
    print(json.dumps(made, indent=2))


if __name__ == "__main__":
    main()
