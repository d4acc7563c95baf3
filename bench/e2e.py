"""End to end: reports filed over HTTP until each case's referrals reached a local webhook
partner and every event of the case is in the audit ledger; then the null pipeline
(bench/null_pipeline.py) for the same shape of JetStream traffic, and our ratio of it.

    .venv/bin/python bench/e2e.py [--rates 20,50] [--seconds 30] [--burst 3000] [--out PATH]
                                  [--statements N] [--profile DIR]

Starts embedded NATS and PostgreSQL and the four services (intake, routing, notify, audit) as
processes (rujuk.stack.Stack, default settings), and a signature-verifying webhook receiver
in a process of its own to which notify delivers every referral. Phases:
0. warm-up: --warmup reports at 40/s, then ANALYZE (see ``analyze``), not measured;
1. fixed rate (open loop: each report leaves at its scheduled time) for each of --rates:
   latency from report accepted (the 202 at the client) to the first referral's webhook
   arriving, and to the case's last event recorded in the ledger (its ``recorded_at``);
2. a burst of --burst reports filed by --concurrency clients as fast as intake takes them:
   end-to-end throughput = reports fully processed (every referral delivered, every event in
   the ledger) / seconds from the first filed to the last fully processed;
3. the null pipeline with this run's referral counts and mean event size: the issue's shape
   (the ratio the target is about), and again with every reader the services have.
Every time is wall-clock epoch (time.time(), PostgreSQL's timestamps) on one machine.

Prints the figures, the CPU of each process idle (per second) and per report (and the Python
services' sum against PostgreSQL's plus NATS's: the issue's ratio, target <= 1), the peak memory
(VmHWM) of each, the load average, what PostgreSQL and NATS alone would allow, and with
--statements the N costliest PostgreSQL statements per report, with --profile DIR each
service's top functions by CPU under cProfile (its CPU figures then include the profiler's
cost); writes JSON and a PNG of latency over time (default bench/results/e2e-<time>.*).
Targets (issue 9): >= 150 reports/s end to end, >= 0.5 of the null pipeline, p99 < 100 ms
at 50 reports/s.
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import uvloop
from latency import percentile
from null_pipeline import describe, run_null_pipeline
from procs import CpuMeter, peak_memory_bytes

from audit.cli import verify_ledger
from rujuk.receiver import WebhookReceiver
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_contracts import subjects
from rujuk_runtime.embedded import free_port

SERVICES = ("intake", "routing", "notify", "audit")
ROUTED = "id.rujuk.case.routed.v1"
REQUESTED = "id.rujuk.referral.requested.v1"
DELIVERED = "id.rujuk.referral.delivered.v1"
ASKED = "id.rujuk.case.village_agency_asked.v1"  # a pick by village (3513): maybe one referral more
FOUND = "id.rujuk.case.village_agency_found.v1"  # intake's answer to it
BODIES = [json.dumps(report).encode() for report in SAMPLE_REPORTS]  # both districts
RESULTS = Path(__file__).parent / "results"
POLL_SECONDS = 0.1


# -- the partner's side: a receiver process that timestamps each arrival ----------------------


class ArrivalReceiver(WebhookReceiver):
    """Keeps (referral id, case id, arrival time) of each verified delivery and serves them at
    GET /arrivals?from=N, so the bench can follow without sharing the receiver's CPU."""

    arrivals: list[tuple[str, str, float]]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            start = int(scope["query_string"].decode().removeprefix("from=") or 0)
            body = json.dumps({"arrivals": self.arrivals[start:], "rejected": self.rejected})
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await super().__call__(scope, receive, send)

    def _handle(self, scope: dict[str, Any], body: bytes) -> int:
        status = super()._handle(scope, body)
        if status == 204:
            data = self.deliveries[-1].event["data"]
            self.arrivals.append((data["referral_id"], data["case_id"], time.time()))
        return status


async def serve_receiver(signing_key: bytes, port: int) -> None:
    receiver = ArrivalReceiver(signing_key, port=port)
    receiver.arrivals = []
    async with receiver.running():
        await asyncio.Event().wait()


def run_receiver(signing_key: bytes, port: int) -> None:
    uvloop.run(serve_receiver(signing_key, port))


# -- following each case through the receiver and the ledger ----------------------------------


@dataclass
class Journey:
    case_id: str
    phase: str = ""
    sent: float = 0.0
    accepted: float | None = None
    referrals: int | None = None  # from the case's `routed` event in the ledger
    picked: int | None = None  # referrals its picks by village made, once all are resolved
    ledger: Counter[str] = field(default_factory=Counter)
    ledger_last: float = 0.0
    arrivals: dict[str, float] = field(default_factory=dict)  # referral id -> first arrival
    duplicates: int = 0
    routed_at: float | None = None  # the `routed` event's time: routing handled the report
    first_reported_delivered: float | None = None  # the first `delivered` event's time

    @property
    def all_referrals(self) -> int:
        """Those `routed` named, and those its picks by village made."""
        return (self.referrals or 0) + (self.picked or 0)

    @property
    def complete(self) -> bool:
        if self.referrals is None or (self.ledger[ASKED] and self.picked is None):
            return False
        n = self.referrals + (self.picked or 0)
        return (
            self.accepted is not None
            and len(self.arrivals) == n
            and self.ledger[ROUTED] == 1
            and self.ledger[REQUESTED] == n
            and self.ledger[DELIVERED] == n
            and self.ledger.total() >= 2 + 2 * n
        )

    @property
    def first_delivery_ms(self) -> float | None:
        if not self.arrivals or self.accepted is None:
            return None
        return 1000 * (min(self.arrivals.values()) - self.accepted)

    def stages_ms(self) -> tuple[float, float, float] | None:
        """Where the time to the first delivery went: accepted -> routed (intake's relay,
        routing's consumer and transaction), routed -> first webhook arrival (routing's relay,
        notify's consumer and worker, the HTTP post), that arrival -> notify's `delivered`
        event (its settle)."""
        accepted, routed, reported = self.accepted, self.routed_at, self.first_reported_delivered
        if accepted is None or routed is None or reported is None or not self.arrivals:
            return None
        first = min(self.arrivals.values())
        return 1000 * (routed - accepted), 1000 * (first - routed), 1000 * (reported - first)

    @property
    def audit_ms(self) -> float:
        assert self.accepted is not None
        return 1000 * (self.ledger_last - self.accepted)

    @property
    def done_at(self) -> float:
        return max([self.ledger_last, *self.arrivals.values()])


class Tracker:
    """Every case filed, updated from the ledger (new rows since the last seen seq) and the
    receiver (new arrivals since the last seen index)."""

    def __init__(self, database_url: str, receiver_url: str) -> None:
        self.database_url = database_url
        self.receiver_url = receiver_url
        self.journeys: dict[str, Journey] = {}
        self.last_seq = 0
        self.arrivals_seen = 0
        self.rejected = 0
        self.following: asyncio.Task[None] | None = None

    def journey(self, case_id: str) -> Journey:
        return self.journeys.setdefault(case_id, Journey(case_id))

    def accepted(self, case_id: str, phase: str, sent: float, accepted: float) -> None:
        journey = self.journey(case_id)
        journey.phase, journey.sent, journey.accepted = phase, sent, accepted

    async def follow(self, session: aiohttp.ClientSession) -> None:
        db = await asyncpg.connect(self.database_url)
        try:
            while True:
                await self._read_ledger(db)
                await self._read_picks(db)
                await self._read_arrivals(session)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await db.close()

    async def _read_ledger(self, db: asyncpg.Connection) -> None:
        rows = await db.fetch(
            "SELECT seq, case_id, event_type, recorded_at, event_time, CASE WHEN event_type = $2 "
            "THEN json_array_length(event->'data'->'referrals') END AS referrals "
            "FROM audit.ledger WHERE seq > $1 ORDER BY seq LIMIT 50000",
            self.last_seq,
            ROUTED,
        )
        for row in rows:
            journey = self.journey(row["case_id"])
            journey.ledger[row["event_type"]] += 1
            journey.ledger_last = max(journey.ledger_last, row["recorded_at"].timestamp())
            if row["referrals"] is not None:
                journey.referrals = row["referrals"]
                journey.routed_at = row["event_time"].timestamp()
            elif row["event_type"] == DELIVERED:
                at = row["event_time"].timestamp()
                first = journey.first_reported_delivered
                journey.first_reported_delivered = at if first is None else min(first, at)
            self.last_seq = row["seq"]

    async def _read_picks(self, db: asyncpg.Connection) -> None:
        """How many referrals the picks by village of each case that asked made, once routing
        has resolved them all (a pick whose agency holds the service already makes none)."""
        asking = [c for c, j in self.journeys.items() if j.ledger[ASKED] and j.picked is None]
        if not asking:
            return
        rows = await db.fetch(
            "SELECT case_id, count(*) FILTER (WHERE outcome = 'referred') AS referred "
            "FROM routing.village_picks WHERE case_id = ANY($1) GROUP BY case_id "
            "HAVING count(*) FILTER (WHERE resolved_at IS NULL) = 0",
            asking,
        )
        for row in rows:
            self.journeys[row["case_id"]].picked = row["referred"]

    async def _read_arrivals(self, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{self.receiver_url}?from={self.arrivals_seen}") as response:
            answer = json.loads(await response.read())
        self.rejected = answer["rejected"]
        for referral_id, case_id, arrived in answer["arrivals"]:
            journey = self.journey(case_id)
            if referral_id in journey.arrivals:
                journey.duplicates += 1
            else:
                journey.arrivals[referral_id] = arrived
        self.arrivals_seen += len(answer["arrivals"])

    def phase(self, name: str) -> list[Journey]:
        return [j for j in self.journeys.values() if j.phase == name]

    async def wait_complete(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not all(j.complete for j in self.phase(name)):
            if self.following is not None and self.following.done():
                self.following.result()  # raises what stopped it
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True


# -- filing reports ---------------------------------------------------------------------------


async def file_report(
    client: aiohttp.ClientSession, url: str, number: int, tracker: Tracker, phase: str
) -> None:
    sent = time.time()
    async with client.post(url, data=BODIES[number % len(BODIES)]) as response:
        answer = await response.read()
    accepted = time.time()
    if response.status != 202:
        raise RuntimeError(f"{response.status}: {answer[:200]!r}")
    tracker.accepted(json.loads(answer)["case_id"], phase, sent, accepted)


async def fixed_rate(
    client: aiohttp.ClientSession, url: str, tracker: Tracker, phase: str, rate: float, count: int
) -> None:
    tasks = []
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(file_report(client, url, n, tracker, phase)))
    await asyncio.gather(*tasks)


async def burst(
    client: aiohttp.ClientSession, url: str, tracker: Tracker, phase: str, count: int, clients: int
) -> None:
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await file_report(client, url, n, tracker, phase)

    await asyncio.gather(*(worker() for _ in range(clients)))


# -- figures ----------------------------------------------------------------------------------


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def phase_figures(
    name: str, offered: float | None, journeys: list[Journey], cpu: dict[str, float]
) -> dict[str, Any]:
    complete = [j for j in journeys if j.complete]
    started = min(j.sent for j in journeys)
    finished = max(j.done_at for j in complete) if complete else started
    filed_for = max(j.accepted or 0 for j in journeys) - started
    referrals = sum(j.all_referrals for j in complete)
    return {
        "phase": name,
        "offered_per_second": offered,
        "reports": len(journeys),
        "complete": len(complete),
        "filed_per_second": len(journeys) / filed_for if filed_for else None,
        "throughput_per_second": len(complete) / (finished - started),
        "seconds_to_last_complete": finished - started,
        "referrals": referrals,
        "referrals_delivered": sum(len(j.arrivals) for j in complete),
        "duplicate_deliveries": sum(j.duplicates for j in journeys),
        "ledger_entries": sum(j.ledger.total() for j in complete),
        "ledger_entries_expected": sum(
            2 + 2 * j.all_referrals + j.ledger[ASKED] + j.ledger[FOUND] for j in complete
        ),
        "ledger_event_types": dict(sum((j.ledger for j in complete), Counter())),
        "accept_ms": quantiles([1000 * (j.accepted - j.sent) for j in complete if j.accepted]),
        "first_delivery_ms": quantiles(
            [ms for j in complete if (ms := j.first_delivery_ms) is not None]
        ),
        "audit_committed_ms": quantiles([j.audit_ms for j in complete]),
        "stages_p50_ms": stage_medians(complete),
        "cpu_ms_per_report": cpu,
        "services_vs_servers": services_vs_servers(cpu),
        "load_average": os.getloadavg()[0],
    }


PYTHON_SERVICES = ("intake", "routing", "notify", "audit")


def services_vs_servers(cpu_ms_per_report: dict[str, float]) -> dict[str, float | None]:
    """The issue's ratio: the Python services' CPU per report against PostgreSQL's plus
    NATS's for the same work (target: no more than 1)."""
    services = sum(cpu_ms_per_report.get(name, 0.0) for name in PYTHON_SERVICES)
    servers = cpu_ms_per_report.get("postgres", 0.0) + cpu_ms_per_report.get("nats", 0.0)
    return {
        "services_ms": services,
        "servers_ms": servers,
        "ratio": services / servers if servers else None,
    }


STAGES = ("accepted -> routed", "routed -> first arrival", "arrival -> delivered event")


def stage_medians(journeys: list[Journey]) -> dict[str, float | None]:
    stages = [s for j in journeys if (s := j.stages_ms()) is not None]
    return {
        name: percentile([s[n] for s in stages], 0.5) if stages else None
        for n, name in enumerate(STAGES)
    }


def servers_ceiling(cpu_ms_per_report: dict[str, float], null_per_second: float) -> dict[str, Any]:
    """What the database and the broker alone allow: the CPU PostgreSQL and NATS spent per
    report, and the throughput and ratio to the null pipeline the machine's cores would give
    if the services, the client and the receiver cost nothing (for the statements and messages
    the services make now)."""
    cores = os.cpu_count() or 1
    ms = cpu_ms_per_report["postgres"] + cpu_ms_per_report["nats"]
    per_second = 1000 * cores / ms if ms else None
    return {
        "cores": cores,
        "ms_per_report": ms,
        "reports_per_second": per_second,
        "ratio_to_null_pipeline": per_second / null_per_second if per_second else None,
    }


def print_phase(figures: dict[str, Any]) -> None:
    def q(name: str) -> str:
        values = figures[name]
        if values["p50"] is None:
            return "none"
        return "p50 {p50:.1f}, p95 {p95:.1f}, p99 {p99:.1f}, max {max:.1f} ms".format(**values)

    print(
        f"{figures['phase']}: {figures['reports']} reports, {figures['complete']} fully "
        f"processed in {figures['seconds_to_last_complete']:.1f} s = "
        f"{figures['throughput_per_second']:.1f} reports/s end to end "
        f"(filed at {figures['filed_per_second']:.1f}/s); "
        f"load average {figures['load_average']:.2f} on {os.cpu_count()} cores, "
        f"{100 * figures['other_processes_cpu_share']:.0f}% of them taken by other processes"
    )
    print(f"  accept (HTTP 202)             {q('accept_ms')}")
    print(f"  accepted -> first delivery    {q('first_delivery_ms')}")
    print(f"  accepted -> audit committed   {q('audit_committed_ms')}")
    stages = figures["stages_p50_ms"]
    print(
        "  first delivery, median of each stage: "
        + ", ".join(f"{k} {'none' if v is None else f'{v:.1f}'} ms" for k, v in stages.items())
    )
    types = ", ".join(f"{t.split('.')[-2]} {n}" for t, n in figures["ledger_event_types"].items())
    print(
        f"  {figures['referrals']} referrals, {figures['referrals_delivered']} delivered, "
        f"{figures['duplicate_deliveries']} duplicates; ledger entries "
        f"{figures['ledger_entries']} of {figures['ledger_entries_expected']} expected ({types})"
    )
    cpu = figures["cpu_ms_per_report"]
    print(
        f"  CPU per report: {', '.join(f'{k} {v:.2f} ms' for k, v in cpu.items())}; "
        f"sum {sum(cpu.values()):.1f} ms"
    )
    versus = figures["services_vs_servers"]
    ratio = "none" if versus["ratio"] is None else f"{versus['ratio']:.2f}"
    print(
        f"  Python services {versus['services_ms']:.2f} ms of CPU per report against "
        f"PostgreSQL + NATS {versus['servers_ms']:.2f} ms: ratio {ratio} (target <= 1)"
    )


def rounded(value: Any) -> Any:
    """Figures to 3 decimals: measurement noise is far larger, and 16-digit float tails read
    like identifiers."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def compact_rows(text: str) -> str:
    """Indented JSON with each innermost list (a case's row) on one line."""
    return re.sub(
        r"\[\n\s*([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s*", ", ", m[1]) + "]", text
    )


def source_version() -> dict[str, Any]:
    """The commit the services ran from, and whether their sources differed from it."""
    root = Path(__file__).parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = git("status", "--porcelain", "--", "contracts", "runtime", "services", "src")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(changed)}


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def targets(
    fixed: list[dict[str, Any]], high: dict[str, Any] | None, ratio: float | None
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    at_50 = next((f for f in fixed if f["offered_per_second"] == 50), None)
    if at_50:
        for name in ("first_delivery_ms", "audit_committed_ms"):
            p99 = at_50[name]["p99"]
            found[f"p99 {name} at 50/s < 100 ms"] = {
                "value": p99,
                "met": p99 is not None and p99 < 100,
            }
    if high:
        value = high["throughput_per_second"]
        found[">= 150 reports/s end to end"] = {"value": value, "met": value >= 150}
    if ratio is not None:
        found[">= 0.5 of the null pipeline"] = {"value": ratio, "met": ratio >= 0.5}
    return found


def plot(path: Path, journeys: list[Journey], phases: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [j for j in journeys if j.complete and j.phase != "warm-up"]
    origin = min(j.sent for j in measured)
    figure, latency = plt.subplots(figsize=(11, 5.5))
    delivered = [
        (j.accepted - origin, j.first_delivery_ms) for j in measured if j.first_delivery_ms
    ]
    latency.scatter(
        *zip(*delivered, strict=True), s=3, alpha=0.5, label="accepted → first referral delivered"
    )
    audited = [(j.accepted - origin, j.audit_ms) for j in measured]
    latency.scatter(
        *zip(*audited, strict=True), s=3, alpha=0.5, label="accepted → every event in the ledger"
    )
    latency.set_yscale("log")
    latency.set_xlabel("report accepted at (s since the first measured report)")
    latency.set_ylabel("latency (ms, log scale)")
    latency.axhline(
        100, color="grey", linestyle=":", linewidth=1, label="100 ms (p99 target at 50/s)"
    )
    throughput = latency.twinx()
    done = Counter(int(j.done_at - origin) for j in measured)
    seconds = range(max(done) + 1)
    window = 5  # seconds averaged: a batch completing at once makes single seconds spiky
    throughput.plot(
        seconds,
        [sum(done[t] for t in range(s - window + 1, s + 1)) / window for s in seconds],
        color="black",
        linewidth=1,
        label="reports fully processed per second (5 s average)",
    )
    throughput.set_ylabel("reports fully processed per second")
    for figures in phases:
        members = [j for j in measured if j.phase == figures["phase"]]
        start = min(j.sent for j in members) - origin
        latency.axvline(start, color="grey", linewidth=0.8)
        latency.annotate(
            f"{figures['phase']} (load average {figures['load_average']:.1f} at its end)",
            (start, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
        )
    handles = [*latency.get_legend_handles_labels()[0], *throughput.get_legend_handles_labels()[0]]
    latency.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(0, 0.93), fontsize=8, markerscale=4
    )
    latency.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- the run ----------------------------------------------------------------------------------


async def stream_messages(js: Any) -> int:
    total = 0
    for stream in (subjects.EVENTS_STREAM, subjects.PARTNER_STREAM):
        total += (await js.stream_info(stream)).state.messages
    return total


def start_receiver(stack: Stack) -> tuple[Any, int]:
    """The receiver in a process of its own, the stack's notify told to deliver to it (before
    notify starts); the process and its port (GET /arrivals there)."""
    port = free_port()
    stack.extra_env["NOTIFY_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{port}/webhooks"
    signing_key = stack.secrets()["webhook_signing_key"].encode()
    receiver = multiprocessing.get_context("spawn").Process(
        target=run_receiver, args=(signing_key, port)
    )
    receiver.start()
    return receiver, port


@contextlib.asynccontextmanager
async def running_stack(
    folder: Path, *, statements: bool = False, profile: Path | None = None
) -> AsyncIterator[tuple[Stack, str, Any]]:
    stack = Stack(folder, external_nats_url=None, external_database_url=None)
    if statements:
        stack.postgres_settings = STATEMENT_SETTINGS
    if profile is not None:  # each service under cProfile, written out when it stops
        stack.extra_env["RUJUK_PROFILE_DIR"] = str(profile)
    receiver, port = start_receiver(stack)
    try:
        stack.start_servers()
        for name in SERVICES:
            stack.start_service(name)
        await asyncio.to_thread(stack.wait_healthy, 90, SERVICES)
        await asyncio.to_thread(stack.wait_sops_known, 90)
        yield stack, f"http://127.0.0.1:{port}/arrivals", receiver
    finally:
        await asyncio.to_thread(stack.stop)
        receiver.terminate()
        receiver.join(10)


async def measure_stack(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    async with running_stack(folder, statements=bool(args.statements), profile=args.profile) as (
        stack,
        arrivals_url,
        receiver,
    ):
        tracker = Tracker(stack.database_url, arrivals_url)
        url = f"{stack.services['intake'].url}/v1/reports"
        headers = {**stack.operator_headers(), "Content-Type": "application/json"}
        pids = {name: (stack.services[name].process.pid, False) for name in SERVICES}  # type: ignore[union-attr]
        pids |= {
            "nats": (stack.nats.process.pid, False),  # type: ignore[union-attr]
            "postgres": (stack.postgres.process.pid, True),  # type: ignore[union-attr]
            "bench client": (os.getpid(), False),
            "webhook receiver": (receiver.pid, False),
        }
        nats_connection = await nats.connect(stack.nats_url)
        js = nats_connection.jetstream()
        # aiohttp, not httpx: the client shares the two cores with what it measures.
        async with aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=max(64, args.concurrency * 2)),
        ) as client:
            follower = tracker.following = asyncio.create_task(tracker.follow(client))
            try:
                await fixed_rate(client, url, tracker, "warm-up", 40, args.warmup)
                if not await tracker.wait_complete("warm-up", 90):
                    raise RuntimeError("warm-up reports did not complete in 90 s")
                await analyze(stack.database_url)
                idle = await idle_cpu(pids, args.idle_seconds)
                if args.statements:
                    await reset_statements(stack.database_url)
                measure = Phases(tracker, js, pids, args.timeout)
                for rate in args.rates:
                    name = f"{rate:g}/s for {args.seconds:g} s"
                    count = int(rate * args.seconds)
                    await measure.run(
                        name, rate, fixed_rate(client, url, tracker, name, rate, count)
                    )
                if args.burst:
                    name = f"burst of {args.burst}"
                    filing = burst(client, url, tracker, name, args.burst, args.concurrency)
                    await measure.run(name, None, filing)
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
                await nats_connection.close()
        measured = sum(figures["reports"] for figures in measure.figures)
        top = await top_statements(stack.database_url, args.statements, measured)
        verdict = await verify_ledger(stack.database_url)
        db = await asyncpg.connect(stack.database_url)
        try:
            event_size = await db.fetchval(
                "SELECT avg(octet_length(event::text)) FROM audit.ledger"
            )
        finally:
            await db.close()
        memory = {
            name: peak_memory_bytes(pid, tree=tree) / 2**20 for name, (pid, tree) in pids.items()
        }
    return {
        "tracker": tracker,
        "idle_cpu_ms_per_second": idle,
        "phases": measure.figures,
        "ledger_verified": verdict.ok,
        "ledger_entries_total": verdict.entries,
        "signatures_rejected": tracker.rejected,
        "mean_event_bytes": float(event_size),
        "peak_memory_mib": memory,
        "statements": top,
    }


async def analyze(database_url: str) -> None:
    """Statistics for tables that hold the warm-up's rows, as autovacuum keeps them in a
    system that has run for a while (it looks once a minute). Without them the services'
    prepared statements keep the generic plans made for the empty tables of a new database
    (sequential scans), and the measured phases, inside the first minute, would pay for them
    on tables growing to thousands of rows."""
    db = await asyncpg.connect(database_url)
    try:
        await db.execute("ANALYZE")
    finally:
        await db.close()
    print("warm-up done; tables analyzed, as autovacuum would have", flush=True)


async def reset_statements(database_url: str) -> None:
    """pg_stat_statements and the tables' scan counts start from zero for the measured phases."""
    db = await asyncpg.connect(database_url)
    try:
        await db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await db.execute("SELECT pg_stat_statements_reset()")
        await db.execute("SELECT pg_stat_reset()")
    finally:
        await db.close()


# pg_stat_statements (shipped with the embedded PostgreSQL), loaded only for --statements: it
# costs a little on every statement.
STATEMENT_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_planning": "on",
}


async def top_statements(database_url: str, count: int, reports: int) -> list[dict[str, Any]]:
    """The ``count`` statements that took the most execution time over the measured phases,
    per report: calls, rows, milliseconds executing and planning; printed, and kept in the
    JSON; and the tables read by sequential scans, printed."""
    if not count:
        return []
    db = await asyncpg.connect(database_url)
    try:
        # The bench's own queries name audit.ledger with its schema (the services' never do:
        # their search_path does) and are left out, as are pg_stat_statements' own.
        rows = await db.fetch(
            "SELECT toplevel, calls, rows, total_exec_time AS ms, total_plan_time AS plan_ms, "
            "plans, wal_bytes, shared_blks_hit + shared_blks_read AS blocks, "
            "regexp_replace(query, '\\s+', ' ', 'g') AS query FROM pg_stat_statements "
            "WHERE query NOT LIKE '%pg_stat_%' AND query NOT LIKE '%audit.ledger%' "
            "ORDER BY total_exec_time DESC"
        )
        scanned = await db.fetch(
            "SELECT schemaname || '.' || relname AS name, seq_scan, seq_tup_read, n_live_tup "
            "FROM pg_stat_user_tables WHERE seq_scan > 0 ORDER BY seq_tup_read DESC"
        )
    finally:
        await db.close()
    reports = max(reports, 1)
    # Totals from the statements the services sent: a nested one (a foreign key's check, run
    # by PostgreSQL for an inserted row) is already inside its statement's time.
    sent = [row for row in rows if row["toplevel"]]
    nested = [row for row in rows if not row["toplevel"]]
    print(
        f"PostgreSQL statements over the measured phases ({reports} reports): "
        f"{sum(row['calls'] for row in sent) / reports:.1f} per report, "
        f"{sum(row['ms'] for row in sent) / reports:.2f} ms of execution and "
        f"{sum(row['plan_ms'] for row in sent) / reports:.2f} ms of planning "
        f"({sum(row['plans'] for row in sent) / reports:.1f} plans) per report, and "
        f"{sum(row['calls'] for row in nested) / reports:.1f} nested statements per report "
        f"(within those); the {count} costliest:"
    )
    top = [
        {
            "calls_per_report": row["calls"] / reports,
            "rows_per_report": row["rows"] / reports,
            "ms_per_report": row["ms"] / reports,
            "planning_ms_per_report": row["plan_ms"] / reports,
            "plans_per_report": row["plans"] / reports,
            "wal_bytes_per_report": float(row["wal_bytes"]) / reports,
            "blocks_per_call": row["blocks"] / max(row["calls"], 1),  # planning's included
            "nested": not row["toplevel"],
            "query": row["query"],
        }
        for row in rows[:count]
    ]
    for entry in top:
        print(
            f"  {entry['ms_per_report']:.3f} ms (planning {entry['planning_ms_per_report']:.3f} "
            f"ms), {entry['calls_per_report']:.2f} calls, "
            f"{entry['rows_per_report']:.1f} rows per report, {entry['blocks_per_call']:.0f} "
            f"blocks a call{' (nested)' if entry['nested'] else ''}: {entry['query'][:110]}"
        )
    # A hot statement whose plan reads a growing table in full shows here.
    print(
        "tables read by sequential scan: "
        + (
            ", ".join(
                f"{t['name']} {t['seq_scan']} scans, {t['seq_tup_read'] / reports:.0f} rows per "
                f"report (it holds {t['n_live_tup']})"
                for t in scanned
            )
            or "none"
        )
    )
    return top


async def idle_cpu(pids: dict[str, tuple[int, bool]], seconds: float) -> dict[str, float]:
    """CPU each process spends per second with nothing filed: pollers, timers and the bench's
    own following of the ledger and the receiver, paid whatever the rate."""
    cpu = CpuMeter(pids)
    cpu.start()
    await asyncio.sleep(seconds)
    spent = cpu.spent_ms(1)
    per_second = {name: ms / seconds for name, ms in spent.items()}
    others = 1000 * cpu.others_seconds() / seconds
    print(
        f"idle for {seconds:g} s, CPU per second: "
        f"{', '.join(f'{name} {ms:.1f} ms' for name, ms in per_second.items())}; "
        f"sum {sum(per_second.values()):.0f} ms; other processes {others:.0f} ms; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return per_second


@dataclass
class Phases:
    """Runs each phase: files its reports, waits until every one is fully processed, and
    keeps its figures (CPU per report of each process, JetStream messages per report)."""

    tracker: Tracker
    js: Any
    pids: dict[str, tuple[int, bool]]
    timeout: float
    figures: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, name: str, rate: float | None, filing: Awaitable[None]) -> None:
        cpu = CpuMeter(self.pids)
        before = await stream_messages(self.js)
        cpu.start()
        started = time.monotonic()
        await filing
        finished = await self.tracker.wait_complete(name, self.timeout)
        journeys = self.tracker.phase(name)
        figures = phase_figures(name, rate, journeys, cpu.spent_ms(len(journeys)))
        figures["other_processes_cpu_share"] = cpu.others_seconds() / (
            (time.monotonic() - started) * (os.cpu_count() or 1)
        )
        figures["timed_out"] = not finished
        messages = (await stream_messages(self.js) - before) / len(journeys)
        figures["jetstream_messages_per_report"] = messages
        print_phase(figures)
        unfinished = "" if finished else f"; NOT ALL COMPLETE after {self.timeout:g} s"
        print(f"  JetStream messages per report: {messages:.2f}{unfinished}", flush=True)
        self.figures.append(figures)


def print_profiles(folder: Path, entries: int = 15) -> None:
    """Each service's costliest functions by their own time (tottime), from its profile."""
    for path in sorted(folder.glob("*.prof")):
        stats = pstats.Stats(str(path))
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"profile {path.stem}: {total:.1f} s of CPU under the profiler; top by own time:")
        rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
        for (file, line, function), (_, calls, own, cumulative, _) in rows[:entries]:
            where = f"{Path(file).name}:{line}" if line else file
            print(
                f"  {100 * own / total:5.1f}% own {own:7.2f} s, cumulative {cumulative:7.2f} s, "
                f"{calls:>8} calls  {function} ({where})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",")],
        default=[20.0, 50.0],
        help="fixed rates, reports/s, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=30, help="length of each fixed rate")
    parser.add_argument("--burst", type=int, default=3000, help="reports as fast as taken; 0: none")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in the burst")
    parser.add_argument("--warmup", type=int, default=200, help="reports before measuring")
    parser.add_argument("--idle-seconds", type=float, default=5, help="CPU with nothing filed")
    parser.add_argument("--null-reports", type=int, default=6000)
    parser.add_argument("--timeout", type=float, default=180, help="for a phase to complete")
    parser.add_argument("--out", type=Path, help="JSON path; the PNG goes beside it")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run each service under cProfile (RUJUK_PROFILE_DIR) and write its profile to "
        "this folder; the top entries per service are printed (CPU figures then include "
        "the profiler's cost, about twice)",
    )
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        help="print the N costliest PostgreSQL statements (pg_stat_statements; off: 0)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile = args.profile.resolve()  # the services run elsewhere
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or RESULTS / f"e2e-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    source = source_version()  # before the services start from it
    with tempfile.TemporaryDirectory(prefix="rujuk-e2e-") as folder:
        Path(folder).chmod(0o755)  # PostgreSQL may run as its own user (never as root)
        stack = uvloop.run(measure_stack(args, Path(folder) / "stack"))
    if args.profile is not None:
        print_profiles(args.profile)
    tracker: Tracker = stack.pop("tracker")
    phases = stack["phases"]

    # The null pipeline, with the referral counts the burst (or last phase) saw, per report.
    sample = [j.all_referrals for j in tracker.phase(phases[-1]["phase"]) if j.complete]
    referrals = [sample[n % len(sample)] for n in range(args.null_reports)]
    size = round(stack["mean_event_bytes"])
    null = run_null_pipeline(referrals, size)
    print(describe(null))
    null_all_readers = run_null_pipeline(referrals, size, all_readers=True)
    print(describe(null_all_readers))
    high = next((p for p in phases if p["offered_per_second"] is None), None)
    ratio = high["throughput_per_second"] / null.reports_per_second if high else None
    ceiling = None
    if high:
        ratio_all = high["throughput_per_second"] / null_all_readers.reports_per_second
        print(
            f"end to end / null pipeline: {ratio:.3f} (with every reader the services have: "
            f"{ratio_all:.3f})"
        )
        ceiling = servers_ceiling(high["cpu_ms_per_report"], null.reports_per_second)
    if ceiling and ceiling["reports_per_second"]:
        print(
            f"PostgreSQL and NATS alone: {ceiling['ms_per_report']:.2f} ms of CPU per report in "
            f"the burst; were every other process free, {ceiling['cores']} cores would carry at "
            f"most {ceiling['reports_per_second']:.0f} reports/s = "
            f"{ceiling['ratio_to_null_pipeline']:.3f} of the null pipeline"
        )
    print(
        "peak memory (VmHWM, MiB): "
        + ", ".join(f"{name} {mib:.0f}" for name, mib in stack["peak_memory_mib"].items())
    )
    print(
        f"ledger verifies: {stack['ledger_verified']} ({stack['ledger_entries_total']} entries); "
        f"webhook signatures rejected: {stack['signatures_rejected']}"
    )
    found = targets([p for p in phases if p["offered_per_second"]], high, ratio)
    for name, verdict in found.items():
        value = verdict["value"]
        shown = "none" if value is None else f"{value:.3g}"
        print(f"target {name}: {shown} — {'met' if verdict['met'] else 'NOT MET'}")

    about = machine()
    title = (
        f"rujuk end to end, {about['cores']} cores {about['cpu_model']}, "
        f"{about['memory_gib']} GiB, {stamp}"
    )
    plot(out.with_suffix(".png"), list(tracker.journeys.values()), phases, title)
    measured = [j for j in tracker.journeys.values() if j.complete and j.phase != "warm-up"]
    origin = min(j.sent for j in measured)
    document = {
        "command": " ".join([".venv/bin/python bench/e2e.py", *sys.argv[1:]]),
        "when": stamp,
        "machine": about,
        "source": source,
        **stack,
        "null_pipeline": asdict(null),
        "null_pipeline_all_readers": asdict(null_all_readers),
        "ratio_to_null_pipeline": ratio,
        "servers_only_ceiling": ceiling,
        "targets": found,
        "cases_columns": ["accepted_s", "referrals", "first_delivery_ms", "audit_ms"],
        "cases": {
            figures["phase"]: [
                [
                    round(j.accepted - origin, 3),
                    j.referrals,
                    None if j.first_delivery_ms is None else round(j.first_delivery_ms, 1),
                    round(j.audit_ms, 1),
                ]
                for j in tracker.phase(figures["phase"])
                if j.complete
            ]
            for figures in phases
        },
    }
    out.write_text(compact_rows(json.dumps(rounded(document), indent=1)) + "\n")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
