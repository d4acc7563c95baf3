"""What five years of a province cost: rujuk on a database seeded by bench/seed_years.py, at a
size and (run again) at another, so the growth shows. Never part of `make test`; heavy: run it
niced, on a machine where nothing else is measured.

    nice -n 15 .venv/bin/python bench/years.py [--cases 100000] [--requests 200] [--keep]
    nice -n 15 .venv/bin/python bench/years.py --cases 100000 --reuse /tmp/rujuk-years-XXXX

Each run starts its own NATS and PostgreSQL in a temporary folder, provisions and seeds the
database, then measures and prints (and writes bench/results/years-<cases>-<time>.json):
- migrating (provisioning) the seeded database, and starting the stack on it;
- p50 and p99 of the coordinator's and partners' APIs and the console's pages: referral
  lists, stats and CSV for a month and a year, a case, its ledger history and bundle, the
  partner's inbox; each asked ``--requests`` times, one at a time, after a warm-up;
- intake at a fixed rate (``--rate`` reports/s for ``--seconds``, default 20/s for 60 s) while
  the history is there: accept latency (the 202) and first delivery (to a webhook partner,
  bench/e2e.py's receiver) p50/p99, and whether every case completed;
- `rujuk audit verify` over the whole ledger;
- the deadline watcher's poll: its claim of due deadlines, and the open-referrals gauge it
  refreshes every 25 polls;
- database size per case, by schema; NATS's store (empty of history: see seed_years.py);
- resident memory of each process;
- `rujuk backup`, and `rujuk restore` into fresh servers.
"""

import argparse
import asyncio
import contextlib
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from e2e import Tracker, fixed_rate, quantiles, start_receiver
from procs import CpuMeter
from seed_years import DISTRICTS, case_id, seed

from audit.cli import verify_ledger
from intake import store as intake_store
from intake.auth import Role
from routing import store as routing_store
from rujuk.backup import restore_backup, take_backup
from rujuk.stack import SERVICES, Stack
from rujuk_runtime.embedded import EmbeddedNats, EmbeddedPostgres
from rujuk_runtime.roles import SCHEMAS

RESULTS = Path(__file__).parent / "results"


def percentiles(timings: list[float]) -> dict[str, float]:
    """p50, p99 and the slowest; with fewer than 100 samples, p99 is the slowest."""
    timings = sorted(timings)
    return {
        "p50_ms": round(statistics.median(timings), 1),
        # Nearest rank: the ceil(0.99 n)-th (it was the int(0.99 n)-th, the second slowest of
        # 20 to 100 samples, against what this says).
        "p99_ms": round(timings[max(0, math.ceil(len(timings) * 0.99) - 1)], 1),
        "max_ms": round(timings[-1], 1),
    }


BUDGET_SECONDS = 90.0  # per endpoint: a slow one is asked fewer times (at least 10)


async def timed(
    ask: Callable[[], Awaitable[httpx.Response]], requests: int, meter: CpuMeter | None = None
) -> dict[str, Any]:
    """Percentiles of ``requests`` answers; one that fails is said, with how long it took.
    With ``meter``, also the CPU each metered process spent per answer: on a machine shared
    with other work, wall-clock percentiles move with its load, CPU per answer much less."""
    try:
        found = await _timed(ask, requests, meter)
    except httpx.HTTPError as exc:
        return {"error": str(exc).splitlines()[0]}
    return found


async def _timed(
    ask: Callable[[], Awaitable[httpx.Response]], requests: int, meter: CpuMeter | None
) -> dict[str, Any]:
    for _ in range(min(3, requests)):  # warm-up: connections, plans, caches
        started = time.perf_counter()
        response = await ask()
        if response.is_error:
            seconds = time.perf_counter() - started
            return {"error": f"{response.status_code} after {seconds:.1f} s"}
    if meter is not None:
        meter.start()
    timings: list[float] = []
    give_up = time.monotonic() + BUDGET_SECONDS
    while len(timings) < requests and (len(timings) < 10 or time.monotonic() < give_up):
        started = time.perf_counter()
        response = await ask()
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    found: dict[str, Any] = {**percentiles(timings), "n": len(timings)}
    if meter is not None:
        spent = meter.spent_ms(len(timings))
        found["cpu_ms_per_request"] = {name: round(ms, 2) for name, ms in spent.items() if ms}
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def partner_token(stack: Stack, agency_id: str) -> str:
    conn = await asyncpg.connect(stack.service_database_url("intake"),
                                 server_settings={"search_path": "intake"})  # fmt: skip
    try:
        _, secret = await intake_store.create_token(conn, Role.PARTNER, agency_id=agency_id)
    finally:
        await conn.close()
    return secret


async def console_session(console: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=console, timeout=30, follow_redirects=False)
    response = await client.post("/signin", data={"token": token}, headers={"Origin": console})
    assert response.status_code == 303, response.text
    return client


async def measure_requests(stack: Stack, cases: int, requests: int) -> dict[str, Any]:
    keys = stack.secrets()
    coordinator = {"Authorization": f"Bearer {keys['coordinator_token']}"}
    auditor = {"Authorization": f"Bearer {keys['auditor_token']}"}
    feed_agency = f"uptppa-{DISTRICTS[0]}"
    partner_secret = await partner_token(stack, feed_agency)
    partner = {"Authorization": f"Bearer {partner_secret}"}
    url = {name: service.url for name, service in stack.services.items()}
    today = date.today()
    month = {"from": str(today - timedelta(days=30)), "to": str(today)}
    year = {"from": str(today - timedelta(days=365)), "to": str(today)}
    rnd = random.Random(7)

    def some_case() -> str:
        number = rnd.randrange(cases)
        return case_id(DISTRICTS[number % len(DISTRICTS)], number)

    found: dict[str, Any] = {}
    meter = CpuMeter(server_pids(stack))
    async with httpx.AsyncClient(timeout=60) as http:
        for where, headers in ((f"{url['routing']}/v1/referrals?limit=1", partner),
                               (f"{url['routing']}/v1/referrals?limit=1", coordinator),
                               (f"{url['audit']}/v1/parked", auditor),
                               (f"{url['intake']}/v1/whoami", coordinator)):  # fmt: skip
            await wait_until_known(http, where, headers)
        api: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "routing GET /v1/referrals (coordinator, first page)":
                lambda: http.get(f"{url['routing']}/v1/referrals", headers=coordinator),
            "routing GET /v1/referrals?open=true (coordinator)":
                lambda: http.get(f"{url['routing']}/v1/referrals", headers=coordinator,
                                 params={"open": "true"}),
            "routing GET /v1/referrals (partner inbox)":
                lambda: http.get(f"{url['routing']}/v1/referrals", headers=partner,
                                 params={"open": "true"}),
            "routing GET /v1/stats (a month)":
                lambda: http.get(f"{url['routing']}/v1/stats", headers=coordinator, params=month),
            "routing GET /v1/stats (a year)":
                lambda: http.get(f"{url['routing']}/v1/stats", headers=coordinator, params=year),
            "routing GET /v1/stats.csv (a year)":
                lambda: http.get(f"{url['routing']}/v1/stats.csv", headers=coordinator,
                                 params=year),
            "routing GET /v1/monitoring (a year)":
                lambda: http.get(f"{url['routing']}/v1/monitoring", headers=coordinator,
                                 params=year),
            "routing GET /v1/monitoring (a district's year)":
                lambda: http.get(f"{url['routing']}/v1/monitoring", headers=coordinator,
                                 params={**year, "district": DISTRICTS[0]}),
            "intake GET /v1/cases/{id}":
                lambda: http.get(f"{url['intake']}/v1/cases/{some_case()}", headers=coordinator),
            "audit GET /v1/cases/{id}/history (replay)":
                lambda: http.get(f"{url['audit']}/v1/cases/{some_case()}/history",
                                 headers=auditor),
            "audit GET /v1/cases/{id}/bundle (export)":
                lambda: http.get(f"{url['audit']}/v1/cases/{some_case()}/bundle",
                                 headers=auditor),
        }  # fmt: skip
        for name, ask in api.items():
            found[name] = await timed(ask, requests, meter)
            print(f"  {name:<58} {found[name]}", flush=True)
    pages = await console_pages(url["console"], keys, partner_secret, some_case, month, year)
    for name, ask in pages.items():
        found[name] = await timed(ask, max(20, requests // 4), meter)
        print(f"  {name:<58} {found[name]}", flush=True)
    return found


def server_pids(stack: Stack) -> dict[str, tuple[int, bool]]:
    """Each service's process, and PostgreSQL's (with its backends) and NATS's."""
    pids = {n: (s.process.pid, False) for n, s in stack.services.items() if s.process is not None}
    if stack.postgres is not None and stack.postgres.process is not None:
        pids["postgres"] = (stack.postgres.process.pid, True)
    if stack.nats is not None and stack.nats.process is not None:
        pids["nats"] = (stack.nats.process.pid, False)
    return pids


async def wait_until_known(http: httpx.AsyncClient, where: str, headers: dict[str, str]) -> None:
    """Until the service has learnt of the token (from the bus)."""
    deadline = time.monotonic() + 60
    while (await http.get(where, headers=headers)).status_code == 401:
        assert time.monotonic() < deadline, f"{where}: the token is still unknown"
        await asyncio.sleep(0.2)


async def console_pages(
    console: str, keys: dict[str, str], partner_secret: str, some_case: Callable[[], str],
    month: dict[str, str], year: dict[str, str],
) -> dict[str, Callable[[], Awaitable[httpx.Response]]]:  # fmt: skip
    coordinator = await console_session(console, keys["coordinator_token"])
    auditor = await console_session(console, keys["auditor_token"])
    partner = await console_session(console, partner_secret)
    return {
        "console GET /coordinator (a month)": lambda: coordinator.get("/coordinator", params=month),
        "console GET /coordinator (a year)": lambda: coordinator.get("/coordinator", params=year),
        "console GET /coordinator/stats.csv (a year)":
            lambda: coordinator.get("/coordinator/stats.csv", params=year),
        # The rakor's page is about one district (the first the token serves, unless asked).
        "console GET /coordinator/monitoring (a district's month)":
            lambda: coordinator.get("/coordinator/monitoring", params={"period": "month"}),
        "console GET /coordinator/monitoring (a district's year)":
            lambda: coordinator.get("/coordinator/monitoring",
                                    params={"period": "custom", **year}),
        "console GET /cases/{id}": lambda: coordinator.get(f"/cases/{some_case()}"),
        "console GET /audit/cases/{id}": lambda: auditor.get(f"/audit/cases/{some_case()}"),
        "console GET /inbox (partner)": lambda: partner.get("/inbox"),
    }  # fmt: skip


async def intake_at_rate(
    stack: Stack, arrivals_url: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Reports filed at ``rate`` a second (open loop) for ``seconds`` on top of the history:
    accept latency and first delivery to the webhook partner, as bench/e2e.py measures them."""
    await asyncio.to_thread(stack.wait_sops_known, 90)
    tracker = Tracker(stack.database_url, arrivals_url)
    db = await asyncpg.connect(stack.database_url)
    try:  # follow the ledger from its end, not through the years of history
        tracker.last_seq = await db.fetchval("SELECT coalesce(max(seq), 0) FROM audit.ledger")
    finally:
        await db.close()
    url = f"{stack.services['intake'].url}/v1/reports"
    headers = {**stack.operator_headers(), "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as client:
        following = tracker.following = asyncio.create_task(tracker.follow(client))
        try:
            await fixed_rate(client, url, tracker, "rate", rate, int(rate * seconds))
            complete = await tracker.wait_complete("rate", 120)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
    journeys = tracker.phase("rate")
    accept = [1000 * (j.accepted - j.sent) for j in journeys if j.accepted is not None]
    first = [ms for j in journeys if (ms := j.first_delivery_ms) is not None]

    def rounded(values: list[float]) -> dict[str, float | None]:
        return {k: None if v is None else round(v, 1) for k, v in quantiles(values).items()}

    return {
        "offered_per_second": rate,
        "seconds": seconds,
        "reports": len(journeys),
        "all_complete": complete,
        "duplicates": sum(j.duplicates for j in journeys),
        "accept_ms": rounded(accept),
        "first_delivery_ms": rounded(first),
    }


async def watcher_poll(stack: Stack, polls: int = 50) -> dict[str, Any]:
    """The deadline watcher's two queries, as routing's role runs them."""
    conn = await asyncpg.connect(stack.service_database_url("routing"),
                                 server_settings={"search_path": "routing"})  # fmt: skip
    claim, gauge = [], []
    try:
        for _ in range(polls):
            started = time.perf_counter()
            async with conn.transaction():
                await routing_store.claim_due_deadlines(conn, datetime.now(UTC), 100)
            claim.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await routing_store.referrals_by_state_and_agency(conn)
            gauge.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return {"claim_due_deadlines": percentiles(claim),
            "open_referrals_gauge (every 25 polls)": percentiles(gauge)}  # fmt: skip


async def database_sizes(database_url: str, cases: int) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        total = await conn.fetchval("SELECT pg_database_size(current_database())")
        by_schema = await conn.fetch(
            "SELECT n.nspname AS schema, sum(pg_total_relation_size(c.oid)) AS bytes "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm') AND n.nspname = ANY($1::text[]) GROUP BY 1",
            list(SCHEMAS),
        )
    finally:
        await conn.close()
    return {
        "database_bytes": total,
        "bytes_per_case": round(total / cases),
        "by_schema_bytes": {row["schema"]: int(row["bytes"]) for row in by_schema},
    }


async def backup_and_restore(stack: Stack, folder: Path) -> dict[str, Any]:
    backup = folder / "backup"
    started = time.monotonic()
    manifest = await take_backup(stack.database_url, stack.nats_url, backup)
    backed_up = time.monotonic() - started
    fresh = folder / "restored"
    nats_server = EmbeddedNats(fresh / "nats").start()
    postgres = EmbeddedPostgres(fresh / "postgres").start()
    try:
        passwords = {s: stack.secrets()[f"database_password_{s}"] for s in SCHEMAS}
        started = time.monotonic()
        report = await restore_backup(backup, postgres.url, nats_server.ops_url, passwords)
        restored = time.monotonic() - started
    finally:
        postgres.stop()
        nats_server.stop()
    return {
        "backup_seconds": round(backed_up, 1),
        "backup_bytes": folder_bytes(backup),
        "dump_bytes": manifest["database"]["bytes"],
        "restore_seconds": round(restored, 1),
        "restore_detail_seconds": {k: round(v, 1) for k, v in report.seconds.items()},
    }


async def run(
    cases: int,
    requests: int,
    folder: Path,
    rate: float,
    seconds: float,
    backup: bool = True,
    reuse: bool = False,
) -> dict[str, Any]:
    result: dict[str, Any] = {"cases": cases, "at": datetime.now(UTC).isoformat()}
    stack = Stack(folder / "stack", external_nats_url=None, external_database_url=None)
    receiver, port = start_receiver(stack)  # notify delivers webhooks to it (intake_at_rate)
    await asyncio.to_thread(stack.start_servers)
    try:
        started = time.monotonic()
        await asyncio.to_thread(stack.provision_database)
        result["provision_empty_seconds"] = round(time.monotonic() - started, 2)
        if reuse:  # a folder an earlier run kept (--keep): its history is there already
            result["seed"] = "reused"
        else:
            print(f"seeding {cases:,} cases ...", flush=True)
            result["seed"] = await seed(stack.database_url, stack.secrets()["master_keys"], cases)
        started = time.monotonic()
        await asyncio.to_thread(stack.provision_database)
        result["provision_seeded_seconds"] = round(time.monotonic() - started, 2)
        started = time.monotonic()
        for name in SERVICES:
            stack.start_service(name)
        await asyncio.to_thread(stack.wait_healthy, 600)
        result["start_seconds"] = round(time.monotonic() - started, 2)
        print(f"stack started in {result['start_seconds']} s", flush=True)
        result["requests"] = await measure_requests(stack, cases, requests)
        if rate > 0:
            arrivals = f"http://127.0.0.1:{port}/arrivals"
            result["intake_at_rate"] = await intake_at_rate(stack, arrivals, rate, seconds)
            print(f"intake at {rate:g}/s: {result['intake_at_rate']}", flush=True)
        started = time.monotonic()
        verdict = await verify_ledger(stack.database_url)
        result["verify"] = {"seconds": round(time.monotonic() - started, 1),
                            "entries": verdict.entries, "ok": verdict.ok}  # fmt: skip
        print(f"verify: {result['verify']}", flush=True)
        result["deadline_watcher"] = await watcher_poll(stack)
        print(f"watcher: {result['deadline_watcher']}", flush=True)
        result["rss_mb"] = {n: rss_mb(s.process.pid) for n, s in stack.services.items()
                            if s.process is not None}  # fmt: skip
        assert stack.nats is not None
        assert stack.postgres is not None
        for name, server in (("nats", stack.nats), ("postgres", stack.postgres)):
            if server.process is not None:
                result["rss_mb"][name] = rss_mb(server.process.pid)
        result["database"] = await database_sizes(stack.database_url, cases)
        nats_bytes = folder_bytes(stack.nats.folder / "jetstream")
        result["nats"] = {"store_bytes": nats_bytes, "bytes_per_case": round(nats_bytes / cases)}
        for name in reversed(SERVICES):
            stack.stop_service(name)
        try:  # a failed backup is a finding, not the end of the run's other figures
            if backup:
                result["backup"] = await backup_and_restore(stack, folder)
        except Exception as exc:
            result["backup"] = {"error": f"{type(exc).__name__}: {exc}"}
        if "backup" in result:
            print(f"backup: {result['backup']}", flush=True)
    finally:
        await asyncio.to_thread(stack.stop)
        receiver.terminate()
        receiver.join(10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="Reports a second filed while the history is there (0: none)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="...for this long")
    parser.add_argument("--no-backup", action="store_true", help="Skip backup and restore")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder")
    parser.add_argument(
        "--reuse",
        type=Path,
        help="Measure again on a folder a run kept (--keep), without seeding; --cases must "
        "say what it holds",
    )
    args = parser.parse_args()
    folder = args.reuse or Path(tempfile.mkdtemp(prefix="rujuk-years-"))
    folder.chmod(0o755)  # PostgreSQL may run as its own user
    try:
        result = asyncio.run(
            run(
                args.cases,
                args.requests,
                folder,
                args.rate,
                args.seconds,
                not args.no_backup,
                reuse=args.reuse is not None,
            )
        )
    finally:
        if not args.keep and args.reuse is None:
            shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"years-{args.cases}-{stamp}-{commit}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
