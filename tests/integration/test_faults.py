"""Faults under load: reports filed over HTTP at a steady rate (at least 1,000, and on until
the faults are over) while every service (the console too) is killed with SIGKILL and started
again, PostgreSQL is restarted and NATS is restarted. Filing retries through intake's absence
with the same Idempotency-Key; only a 202 counts as accepted. Afterwards: every accepted report
is in the ledger as reported and routed, once (intake's projection says routed too), to the agencies
and services its report calls for (routing's decide on the shipped SOPs, worked out apart from
the run); every referral, first or made by escalation, reached the partner it names on the
webhook and on the partner's NATS feed, and no partner saw two different notifications for one
referral (one event per referral, the same on both channels); the ledger holds every event
once, per case 2 + 2 per referral + 1 per escalation (+ its on-call events where a chain ran
out), and verifies; every referral has its
deadline in routing, none is overdue, every escalation routing made is in the ledger, none
twice, and some fired after the faults.

The outcome is checked on a settled system: no case unrouted, nothing undelivered, nothing
overdue; routing is then paused (SIGSTOP) so no deadline fires while it is read.

The test runs its own nats-server and PostgreSQL in its temporary folder (never the session's
servers, which other tests share). ``RUJUK_SOAK=1`` files more reports over a longer run
(5,000 at 40/s, with a per-test timeout to match);
``RUJUK_FAULTS_REPORTS``, ``RUJUK_FAULTS_RATE`` and ``RUJUK_FAULTS_MINUTE_SECONDS`` set the
load and the deadline compression directly.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from audit import store as ledger_store
from audit.cli import verify_ledger
from intake.report import Report, triage_of
from routing.decide import decide
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop_folder
from rujuk.receiver import WebhookReceiver
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_contracts import subjects
from rujuk_runtime.embedded import EmbeddedNats, EmbeddedPostgres

pytestmark = pytest.mark.integration

SOAK = os.environ.get("RUJUK_SOAK") == "1"
REPORTS = int(os.environ.get("RUJUK_FAULTS_REPORTS", "5000" if SOAK else "1000"))
RATE = float(os.environ.get("RUJUK_FAULTS_RATE", "40"))  # reports per second
CLIENTS = 8  # concurrent HTTP clients filing
# One SOP minute lasts 3 s: the 15-minute deadlines of the reports filed before and during the
# faults fall due 45 s later, after the faults, and must fire then (escalating to the next
# agency); longer ones may still be pending at the end, but none may be overdue. Shorter
# minutes escalate nearly every referral within the run and multiply the load.
MINUTE_SECONDS = os.environ.get("RUJUK_FAULTS_MINUTE_SECONDS", "3")
SETTLE_TIMEOUT = float(os.environ.get("RUJUK_FAULTS_SETTLE_SECONDS", "600" if SOAK else "180"))
# pyproject's 300 s per test fits the CI run; a soak gets its filing and settling time on top.
TEST_TIMEOUT = max(300, REPORTS / RATE + SETTLE_TIMEOUT + 120)
OVERDUE_SLACK_SECONDS = 5  # a deadline this far past due and not fired is a failure

REPORTED = "id.rujuk.case.reported.v1"
ROUTED = "id.rujuk.case.routed.v1"
REQUESTED = "id.rujuk.referral.requested.v1"
DELIVERED = "id.rujuk.referral.delivered.v1"
ESCALATED = "id.rujuk.referral.escalated.v1"
VILLAGE_ASKED = "id.rujuk.case.village_agency_asked.v1"
VILLAGE_FOUND = "id.rujuk.case.village_agency_found.v1"
ON_CALL = "id.rujuk.oncall."


@dataclass
class Filing:
    """What the filing clients saw: accepted case ids by idempotency key, and the trouble."""

    accepted: dict[str, str] = field(default_factory=dict)  # key -> case id
    accepted_at: dict[str, float] = field(default_factory=dict)  # key -> time.time()
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)  # answers that are never right


@dataclass
class FaultLog:
    done: list[tuple[str, float, float]] = field(default_factory=list)  # (fault, start, end)

    @property
    def last_end(self) -> float:
        return max(end for _, _, end in self.done)


async def file_one(client: httpx.AsyncClient, url: str, number: int, filing: Filing) -> None:
    """File report ``number`` until intake answers 202, retrying with the same key through
    connection errors, timeouts and 5xx (intake or its servers down)."""
    key = f"faults-{number}"
    body = SAMPLE_REPORTS[number % len(SAMPLE_REPORTS)]
    give_up = time.monotonic() + 90
    while True:
        try:
            response = await client.post(
                f"{url}/v1/reports", json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError as exc:
            filing.errors[type(exc).__name__] += 1
        else:
            if response.status_code == 202:
                case_id = response.json()["case_id"]
                previous = filing.accepted.get(key)
                if previous is not None and previous != case_id:
                    filing.refused.append(f"{key}: two case ids {previous}, {case_id}")
                filing.accepted[key] = case_id
                filing.accepted_at.setdefault(key, time.time())
                return
            if response.status_code < 500:
                filing.refused.append(f"{key}: {response.status_code} {response.text[:200]}")
                return
            filing.errors[f"http {response.status_code}"] += 1
        if time.monotonic() > give_up:
            filing.refused.append(f"{key}: not accepted within 90 s")
            return
        filing.retries += 1
        await asyncio.sleep(0.2)


async def file_reports(
    client: httpx.AsyncClient,
    url: str,
    count: int,
    rate: float,
    filing: Filing,
    faults_done: asyncio.Event,
) -> int:
    """Reports at ``rate`` per second, at most CLIENTS in flight at once, until ``count`` are
    filed and the faults are over (so every fault happens while reports come in); how many."""
    in_flight = asyncio.Semaphore(CLIENTS)
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()

    async def one(number: int) -> None:
        async with in_flight:
            await file_one(client, url, number, filing)

    number = 0
    while number < count or not faults_done.is_set():
        await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(number)))
        number += 1
    await asyncio.gather(*tasks)
    return number


async def inject_faults(
    stack: Stack, nats: EmbeddedNats, postgres: EmbeddedPostgres, spacing: float, log: FaultLog
) -> None:
    """The faults, ``spacing`` seconds apart: two services killed at once and restarted,
    PostgreSQL restarted, the other three services (the console too), NATS. Each step waits
    until every service is healthy again (a service started while its servers are down
    exits, like any process under a supervisor)."""

    async def kill_service(name: str) -> None:
        await asyncio.to_thread(stack.stop_service, name, kill=True)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(stack.start_service, name)
        await asyncio.to_thread(stack.wait_healthy, 60, (name,))

    async def restart_nats() -> None:
        await asyncio.to_thread(nats.stop)
        await asyncio.sleep(1)
        await asyncio.to_thread(nats.start)

    async def restart_postgres() -> None:
        # Fast shutdown (pg_ctl -m fast): SIGTERM would wait for the pools' sessions to end.
        process = postgres.process
        assert process is not None
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.wait, 30)
        postgres.process = None
        await asyncio.sleep(1)
        await asyncio.to_thread(postgres.start)

    async def timed(name: str, fault: Callable[[], Awaitable[None]], delay: float = 0) -> None:
        await asyncio.sleep(delay)
        start = time.time()
        await fault()
        log.done.append((name, start, time.time()))

    await asyncio.sleep(spacing)
    await asyncio.gather(
        timed("kill -9 intake", lambda: kill_service("intake")),
        timed("kill -9 routing", lambda: kill_service("routing"), delay=1),
    )
    await asyncio.sleep(spacing)
    await timed("restart postgres", restart_postgres)
    await asyncio.sleep(spacing)
    await asyncio.gather(
        timed("kill -9 notify", lambda: kill_service("notify")),
        timed("kill -9 audit", lambda: kill_service("audit"), delay=1),
        timed("kill -9 console", lambda: kill_service("console"), delay=2),
    )
    await asyncio.sleep(spacing)
    await timed("restart nats", restart_nats)


@dataclass
class LedgerView:
    rows: list[asyncpg.Record]
    by_type: dict[str, list[dict[str, Any]]]  # event type -> the events' data

    @classmethod
    async def read(cls, database_url: str) -> "LedgerView":
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT event_id, case_id, event_type, recorded_at, event::text AS event "
                "FROM audit.ledger ORDER BY seq"
            )
        finally:
            await conn.close()
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_type[row["event_type"]].append(json.loads(row["event"])["data"])
        return cls(rows, by_type)

    def referral_ids(self, event_type: str) -> set[str]:
        return {data["referral_id"] for data in self.by_type[event_type]}

    def questions(self) -> set[tuple[str, str]]:
        """(case, service) of each pick by village routing asked intake about."""
        return {(d["case_id"], d["service"]) for d in self.by_type[VILLAGE_ASKED]}

    def services_requested(self) -> set[tuple[str, str]]:
        return {(d["case_id"], d["service"]) for d in self.by_type[REQUESTED]}


@dataclass
class Deadlines:
    overdue: int  # due more than OVERDUE_SLACK_SECONDS ago and not fired
    escalated: int  # fired with outcome "escalated"
    fired: int
    pending: int

    @classmethod
    async def read(cls, database_url: str) -> "Deadlines":
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE fired_at IS NULL AND due_at < now() - $1::interval)"
                " AS overdue, count(*) FILTER (WHERE outcome = 'escalated') AS escalated,"
                " count(fired_at) AS fired, count(*) FILTER (WHERE fired_at IS NULL) AS pending"
                " FROM routing.deadlines",
                timedelta(seconds=OVERDUE_SLACK_SECONDS),
            )
        finally:
            await conn.close()
        assert row is not None
        return cls(**dict(row))


def inconsistencies(
    view: "LedgerView", receiver: WebhookReceiver, case_ids: set[str], deadlines: Deadlines
) -> list[str]:
    """Why the system has not settled yet (empty when it has)."""
    problems = []
    routed = {data["case_id"] for data in view.by_type[ROUTED]}
    if not_routed := case_ids - routed:
        problems.append(f"{len(not_routed)} cases not routed")
    requested = view.referral_ids(REQUESTED)
    if undelivered := requested - view.referral_ids(DELIVERED):
        problems.append(f"{len(undelivered)} referrals without referral.delivered")
    if not_received := requested - receiver.referral_ids():
        problems.append(f"{len(not_received)} referrals not at the webhook")
    if deadlines.overdue:
        problems.append(f"{deadlines.overdue} deadlines overdue")
    if deadlines.escalated != len(escalated := view.by_type[ESCALATED]):
        problems.append(
            f"escalations: {deadlines.escalated} in routing, {len(escalated)} in ledger"
        )
    made = {f"{_root(e['referral_id'])}-e{e['step']}" for e in view.by_type[ESCALATED]}
    if made - requested:
        problems.append(f"{len(made - requested)} escalations without their referral.requested")
    if unresolved := view.questions() - view.services_requested():
        problems.append(f"{len(unresolved)} picks by village without their referral")
    return problems


async def wait_until_settled(
    database_url: str, receiver: WebhookReceiver, case_ids: set[str], timeout: float
) -> LedgerView:
    """Until every case is routed, every requested referral delivered (ledger and webhook),
    no deadline overdue and every escalation in the ledger; fails with what is missing."""
    give_up = time.monotonic() + timeout
    while True:
        deadlines = await Deadlines.read(database_url)
        view = await LedgerView.read(database_url)
        problems = inconsistencies(view, receiver, case_ids, deadlines)
        if not problems:
            return view
        if time.monotonic() > give_up:
            pytest.fail(f"not settled after {timeout:.0f}s: {'; '.join(problems)}")
        await asyncio.sleep(1)


async def until_first_deadline_due(database_url: str, faults_end: float) -> None:
    """Wait until the first deadline due after the faults (a report filed as they began, on a
    machine that gets through them fast) is past due: on a machine fast enough to settle
    everything else before it, the outcome would otherwise be read before any deadline pending
    through the faults could fire. Past due and not fired is overdue, which the settle waits
    out and the outcome refuses."""
    conn = await asyncpg.connect(database_url)
    try:
        first_due = await conn.fetchval(
            "SELECT min(due_at) FROM routing.deadlines WHERE due_at > $1",
            datetime.fromtimestamp(faults_end, UTC),
        )
    finally:
        await conn.close()
    assert first_due is not None, "no deadline falls due after the faults"
    wait = first_due.timestamp() + OVERDUE_SLACK_SECONDS + 1 - time.time()
    if wait > 0:
        await asyncio.sleep(wait)


async def settle_and_freeze(
    routing: "subprocess.Popen[bytes]",
    database_url: str,
    receiver: WebhookReceiver,
    case_ids: set[str],
) -> tuple[LedgerView, Deadlines]:
    """Wait until settled, then pause routing (SIGSTOP) so that no deadline escalates while
    the outcome is checked; resume and wait again if an escalation slipped in meanwhile."""
    give_up = time.monotonic() + SETTLE_TIMEOUT
    while True:
        await wait_until_settled(database_url, receiver, case_ids, give_up - time.monotonic())
        routing.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.5)  # what routing published before the pause reaches the ledger
        deadlines = await Deadlines.read(database_url)
        view = await LedgerView.read(database_url)
        if not inconsistencies(view, receiver, case_ids, deadlines):
            return view, deadlines
        routing.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.5)


@pytest.mark.timeout(TEST_TIMEOUT)
async def test_kill_each_service_and_restart_nats_and_postgres_under_load(tmp_path: Path) -> None:
    nats = await asyncio.to_thread(EmbeddedNats(tmp_path / "nats").start)
    postgres = await asyncio.to_thread(EmbeddedPostgres(tmp_path / "postgres").start)
    stack = Stack(
        tmp_path / "stack",
        external_nats_url=nats.ops_url,
        nats_keyring=nats.keyring,
        external_database_url=postgres.url,
        extra_env={
            "ROUTING_MINUTE_SECONDS": MINUTE_SECONDS,
            # Partner backoff must not outlast the test (the webhook itself never fails).
            "NOTIFY_BACKOFF_BASE_SECONDS": "0.2",
            "NOTIFY_BACKOFF_CAP_SECONDS": "2",
            "NOTIFY_BREAKER_COOLDOWN_SECONDS": "2",
        },
    )
    receiver = WebhookReceiver(stack.secrets()["webhook_signing_key"].encode())
    stack.extra_env["NOTIFY_WEBHOOK_BASE_URL"] = receiver.base_url
    filing = Filing()
    faults = FaultLog()
    client = httpx.AsyncClient(
        timeout=10,
        headers=stack.operator_headers(),
        limits=httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS),
    )
    try:
        async with receiver.running(), client:
            await asyncio.to_thread(stack.start, 90)
            try:
                intake = stack.services["intake"].url
                filing_seconds = REPORTS / RATE
                started_at = time.time()
                faults_done = asyncio.Event()
                filer = asyncio.create_task(
                    file_reports(client, intake, REPORTS, RATE, filing, faults_done)
                )
                try:
                    await inject_faults(stack, nats, postgres, filing_seconds / 16, faults)
                finally:
                    faults_done.set()
                filed = await filer
                filed_at = time.time()
                assert filing.refused == []
                # The database away is a 503 to retry, never a 500.
                assert not [e for e in filing.errors if e.startswith("http 500")], filing.errors
                assert len(filing.accepted) == filed >= REPORTS
                case_ids = set(filing.accepted.values())
                assert len(case_ids) == filed  # one case per idempotency key
                routing = stack.services["routing"].process
                assert routing is not None
                await until_first_deadline_due(postgres.url, faults.last_end)
                try:
                    view, deadlines = await settle_and_freeze(
                        routing, postgres.url, receiver, case_ids
                    )
                    settled_at = time.time()
                    assert stack.exited_services() == []
                    out_of_order = await check_outcome(
                        postgres.url, receiver, case_ids, view, deadlines, faults
                    )
                    check_routed_as_planned(view, filing)
                    await check_partner_feed(nats.ops_url, receiver, view)
                    await check_every_referral_has_its_deadline(postgres.url, view)
                    await check_intake_projection(client, intake, case_ids)
                finally:
                    routing.send_signal(signal.SIGCONT)
            finally:
                await asyncio.to_thread(stack.stop)
            summary = {
                "reports": filed,
                "rate": RATE,
                "filing_s": round(filed_at - started_at, 1),
                "faults_end_s": round(faults.last_end - started_at, 1),
                "settle_s": round(settled_at - filed_at, 1),
                "retries": filing.retries,
                "errors": dict(filing.errors),
                "faults": [(n, round(e - s, 1)) for n, s, e in faults.done],
                "ledger": len(view.rows),
                "webhooks": len(receiver.deliveries),
                "escalated": len(view.by_type[ESCALATED]),
                "cases_reported_out_of_order": out_of_order,
            }
            print(f"\nfaults summary: {json.dumps(summary)}")
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(nats.stop)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(postgres.stop)


async def check_outcome(
    database_url: str,
    receiver: WebhookReceiver,
    case_ids: set[str],
    view: LedgerView,
    deadlines: Deadlines,
    faults: FaultLog,
) -> int:
    """Assert the guarantees; return how many cases' ledger history does not begin with
    case.reported."""
    # Every accepted report reached the ledger as reported and routed, and nothing else did.
    reported = {data["case_id"] for data in view.by_type[REPORTED]}
    routed = {data["case_id"] for data in view.by_type[ROUTED]}
    assert reported == case_ids, f"not reported: {sorted(case_ids - reported)[:5]}"
    assert routed == case_ids, f"not routed: {sorted(case_ids - routed)[:5]}"

    # Every referral: the first ones named by case.routed, and those escalation made.
    first = {r["referral_id"]: r["agency_id"] for d in view.by_type[ROUTED] for r in d["referrals"]}
    requested = {d["referral_id"]: d["agency_id"] for d in view.by_type[REQUESTED]}
    escalations = view.by_type[ESCALATED]
    made = {f"{_root(e['referral_id'])}-e{e['step']}": e["to_agency_id"] for e in escalations}
    # ... and those a pick by village made (3513's desa-level Rumah SAE): each question asked
    # once, answered at most once (intake killed: routing's timer picks), and resolved into
    # one referral for the service asked in the case asked about, or none when the case
    # holds that service already.
    asked = view.by_type[VILLAGE_ASKED]
    questions = {d["question_id"]: (d["case_id"], d["service"]) for d in asked}
    assert len(questions) == len(asked) > 0
    answered = [d["question_id"] for d in view.by_type[VILLAGE_FOUND]]
    assert len(answered) == len(set(answered))
    assert set(answered) <= set(questions)
    picked = Counter(
        (d["case_id"], d["service"])
        for d in view.by_type[REQUESTED]
        if d["referral_id"] not in first and d["referral_id"] not in made
    )
    assert set(picked) <= set(questions.values())
    assert max(picked.values()) == 1
    assert set(questions.values()) <= view.services_requested()
    assert {r: a for r, a in requested.items() if r in first or r in made} == first | made

    # ... reached the partner it names, on the webhook, with a verified signature; each partner
    # saw one notification per referral (redelivery only of the very same event).
    assert receiver.rejected == 0
    received: dict[str, set[str]] = defaultdict(set)
    for delivery in receiver.deliveries:
        assert delivery.webhook_id == delivery.event["id"]
        data = delivery.event["data"]
        assert data["agency_id"] == delivery.agency_id == requested.get(data["referral_id"])
        received[data["referral_id"]].add(delivery.event["id"])
    assert set(received) == set(requested), f"missing: {sorted(set(requested) - set(received))[:5]}"
    twice = {referral: ids for referral, ids in received.items() if len(ids) > 1}
    assert twice == {}
    assert view.referral_ids(DELIVERED) == set(requested)

    # The ledger: every event once, per case 2 + 2 per referral + 1 per escalation.
    event_ids = [row["event_id"] for row in view.rows]
    assert len(event_ids) == len(set(event_ids))
    referrals_of: Counter[str] = Counter(d["case_id"] for d in view.by_type[REQUESTED])
    escalations_of: Counter[str] = Counter(d["case_id"] for d in escalations)
    # A chain nobody answers, the coordinator included, pages the on-call list (issue 24):
    # its pages, their reports and acknowledgements are the case's events too.
    oncall_of: Counter[str] = Counter(
        data["case_id"]
        for event_type, found in view.by_type.items()
        if event_type.startswith(ON_CALL)
        for data in found
    )
    out_of_order = 0
    conn = await ledger_store.connect(database_url)  # as `rujuk audit case` reads, once for all
    try:
        histories = {
            case_id: await ledger_store.case_entries(conn, case_id) for case_id in case_ids
        }
    finally:
        await conn.close()
    # A pick by village adds its question and (unless the timer answered) intake's answer.
    picks_of: Counter[str] = Counter(
        d["case_id"] for t in (VILLAGE_ASKED, VILLAGE_FOUND) for d in view.by_type[t]
    )
    for case_id, history in histories.items():
        expected = (
            2
            + 2 * referrals_of[case_id]
            + escalations_of[case_id]
            + oncall_of[case_id]
            + picks_of[case_id]
        )
        types = [e.event_type for e in history]
        assert len(history) == expected, (case_id, types)
        assert len({e.event_id for e in history}) == len(history)
        assert types.count(REPORTED) == types.count(ROUTED) == 1
        # The ledger keeps stream order through the faults: a case's history begins with the
        # report that caused the rest of it.
        out_of_order += types[0] != REPORTED
    assert out_of_order == 0, f"{out_of_order} cases' histories do not begin with case.reported"
    # ... and the stack's three bootstrap tokens (operator, coordinator, auditor), once each
    tokens = [row for row in view.rows if row["event_type"].startswith("id.rujuk.token.")]
    assert len(tokens) == 3
    # ... and the two shipped SOPs routing announced in force at start (3513, 3514), once
    sops = [row for row in view.rows if row["event_type"].startswith("id.rujuk.sop.")]
    assert sorted(row["case_id"] for row in sops) == ["sop-3513", "sop-3514"]
    per_case = sum(
        2 + 2 * referrals_of[c] + escalations_of[c] + oncall_of[c] + picks_of[c] for c in case_ids
    )
    assert len(view.rows) == per_case + len(tokens) + len(sops)
    verdict = await verify_ledger(database_url)
    assert verdict.ok, verdict.failure
    assert verdict.entries == len(view.rows)

    # Deadlines: none overdue, each referral escalated at most once and at each step once,
    # and escalation went on after the faults (deadlines pending through them fired).
    assert deadlines.overdue == 0
    assert deadlines.escalated == len(escalations) > 0
    steps = Counter((_root(e["referral_id"]), e["step"]) for e in escalations)
    assert [key for key, n in steps.items() if n > 1] == []
    assert max(Counter(e["referral_id"] for e in escalations).values()) == 1
    escalated_at = [row["recorded_at"] for row in view.rows if row["event_type"] == ESCALATED]
    after = [at for at in escalated_at if at.timestamp() > faults.last_end]
    assert after, "no deadline fired after the faults"
    return out_of_order


async def check_intake_projection(
    client: httpx.AsyncClient, intake: str, case_ids: set[str]
) -> None:
    """Intake's own view agrees: every accepted case reads back as routed."""
    in_flight = asyncio.Semaphore(CLIENTS)

    async def status(case_id: str) -> str:
        async with in_flight:
            response = await client.get(f"{intake}/v1/cases/{case_id}")
        assert response.status_code == 200, response.text
        value: str = response.json()["status"]
        return value

    statuses = await asyncio.gather(*(status(case_id) for case_id in sorted(case_ids)))
    assert Counter(statuses) == {"routed": len(case_ids)}


def routing_plans() -> list[Counter[tuple[str, str]]]:
    """The (agency, service) referrals each sample report gets from the shipped SOPs, as
    routing's own decide makes them, worked out here apart from the run under test."""
    library = load_sop_folder(SHIPPED_SOPS)
    plans = []
    for body in SAMPLE_REPORTS:
        triage = triage_of(Report.model_validate(body))
        sop = library.for_district(triage.district)
        assert sop is not None, triage.district
        decision = decide(sop, "3514-PLAN", triage, datetime.now(UTC))
        plans.append(Counter((r.agency_id, r.service.value) for r in decision.referrals))
    return plans


def check_routed_as_planned(view: LedgerView, filing: Filing) -> None:
    """Every case got the referrals its report calls for: the faults changed none of them
    (not one dropped or added while routing, its database or its bus went away)."""
    plans = routing_plans()
    sample_of = {case_id: int(key.rpartition("-")[2]) for key, case_id in filing.accepted.items()}
    assert len(sample_of) == len(view.by_type[ROUTED])
    wrong = []
    for routed in view.by_type[ROUTED]:
        got = Counter((r["agency_id"], r["service"]) for r in routed["referrals"])
        if got != plans[sample_of[routed["case_id"]] % len(plans)]:
            wrong.append(routed["case_id"])
    assert wrong == [], f"{len(wrong)} cases not routed as their report calls for: {wrong[:5]}"


async def check_partner_feed(nats_url: str, receiver: WebhookReceiver, view: LedgerView) -> None:
    """On the partners' NATS feeds too, each referral reached the agency it names once: one
    notification, the very event its webhook carried."""
    requested = {d["referral_id"]: d["agency_id"] for d in view.by_type[REQUESTED]}
    on_webhook = {d.event["data"]["referral_id"]: d.event["id"] for d in receiver.deliveries}
    on_feed: dict[str, set[tuple[str, str]]] = defaultdict(set)  # referral -> (agency, event)
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        feeds = await js.pull_subscribe(
            f"{subjects.PREFIX}.partner.*.out.>",
            durable=None,
            stream=subjects.PARTNER_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        while True:
            try:
                messages = await feeds.fetch(1000, timeout=2)
            except TimeoutError:  # nats' own, or asyncio's when fetch's deadline ran out
                break
            for message in messages:
                event = json.loads(message.data)
                agency = message.subject.split(".")[2]
                on_feed[event["data"]["referral_id"]].add((agency, event["id"]))
    finally:
        await connection.close()
    assert set(on_feed) == set(requested), f"missing: {sorted(set(requested) - set(on_feed))[:5]}"
    wrong = {
        referral: seen
        for referral, seen in on_feed.items()
        if seen != {(requested[referral], on_webhook[referral])}
    }
    assert wrong == {}, f"{len(wrong)} referrals: {list(wrong.items())[:3]}"


async def check_every_referral_has_its_deadline(database_url: str, view: LedgerView) -> None:
    """Each referral, those requested before a fault and those made during one, has its
    acknowledgement deadline in routing (none lost with a crash): with none overdue, every
    deadline that fell due has fired."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT referral_id FROM routing.deadlines")
    finally:
        await conn.close()
    with_deadline = [row["referral_id"] for row in rows]
    assert len(with_deadline) == len(set(with_deadline))
    assert set(with_deadline) == view.referral_ids(REQUESTED)


def _root(referral_id: str) -> str:
    """The original referral an escalated one descends from (``<root>-e<step>``)."""
    root, sep, step = referral_id.rpartition("-e")
    return root if sep and step.isdigit() else referral_id
