"""Accept latency and throughput of intake's door, over HTTP, against a real process.

Starts embedded NATS and PostgreSQL and intake as a process (rujuk.stack.Stack), then
1. files reports at a fixed rate (open loop: each request leaves at its scheduled time),
2. files reports as fast as the door takes them (closed loop, N concurrent clients),
and prints p50/p99 accept latency, throughput, the CPU each process spent per report (so the
figures can be read on a busy machine) and how long the outbox relay took to publish the
burst to JetStream. Targets: p99 < 25 ms at 100/s, ≥ 500/s.

    .venv/bin/python bench/intake_accept.py [--rate 100] [--seconds 10] [--burst 3000]
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
from latency import percentile
from procs import CpuMeter

from intake import store
from intake.auth import Role
from intake.cli import connect
from routing.events import sop_in_force
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop_folder
from rujuk.stack import Stack
from rujuk_contracts import parse_event
from rujuk_contracts.events import SopInForce, SopOrigin

REPORT = {
    "channel": "hotline",
    "district_code": "3514",
    "kecamatan": "Bangil",
    "victim": {"name": "CONTOH Korban Bench", "age_years": 30, "sex": "female"},
    "reporter": {"relationship": "self"},
    "incident": {"violence_types": ["physical"], "narrative": "CONTOH narasi bench"},
}


BODY = json.dumps(REPORT).encode()


async def file_one(client: aiohttp.ClientSession, url: str, latencies: list[float]) -> None:
    started = time.perf_counter()
    async with client.post(url, data=BODY) as response:
        answer = await response.read()
    latencies.append(time.perf_counter() - started)
    if response.status != 202:
        raise RuntimeError(f"{response.status}: {answer[:200]!r}")


async def fixed_rate(
    client: aiohttp.ClientSession, url: str, rate: float, seconds: float, cpu: CpuMeter
) -> None:
    latencies: list[float] = []
    tasks = []
    cpu.start()
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(file_one(client, url, latencies)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    report("fixed rate", rate, len(latencies), elapsed, latencies, cpu.per(len(latencies)))


async def outbox_drained(database_url: str, since: float) -> float:
    """Seconds from ``since`` until intake's relay has published every staged event to
    JetStream (acked) and emptied the outbox."""
    conn = await connect(database_url)
    try:
        while await conn.fetchval("SELECT count(*) FROM intake.outbox"):
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    return time.perf_counter() - since


async def burst(
    client: aiohttp.ClientSession,
    url: str,
    total: int,
    concurrency: int,
    cpu: CpuMeter,
    database_url: str,
) -> None:
    latencies: list[float] = []
    remaining = total
    cpu.start()

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await file_one(client, url, latencies)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    drained = await outbox_drained(database_url, start + elapsed)
    name = f"as fast as possible ({concurrency} clients)"
    report(name, None, len(latencies), elapsed, latencies, cpu.per(len(latencies)))
    print(f"  ... and every one of them on JetStream {drained:.2f} s after the last accept")


def report(
    name: str, rate: float | None, count: int, elapsed: float, lat: list[float], cpu: str
) -> None:
    target = f" target {rate:.0f}/s," if rate else ""
    print(
        f"{name}:{target} {count} reports in {elapsed:.1f} s = {count / elapsed:.0f}/s; "
        f"accept latency p50 {1000 * statistics.median(lat):.1f} ms, "
        f"p99 {1000 * percentile(lat, 0.99):.1f} ms, max {1000 * max(lat):.1f} ms; "
        f"CPU per report: {cpu}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


async def shipped_sops_in_force(conn: asyncpg.Connection) -> None:
    """Intake files reports only for districts with an SOP in force, which it learns from
    routing's ``sop.in_force``; with intake alone, put the shipped SOPs' into its projection."""
    library = load_sop_folder(SHIPPED_SOPS)
    for district, sop in library.sops.items():
        event = sop_in_force(sop, library.sha256[district], SopOrigin.FILE, datetime.now(UTC), None)
        _, payload = parse_event(event.to_bytes())
        assert isinstance(payload, SopInForce)
        await store.put_sop_in_force(conn, payload, event.time)


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rujuk-bench-"))
    stack = Stack(folder, external_nats_url=None, external_database_url=None)
    stack.start_servers()
    try:
        stack.provision_database()  # as `rujuk db provision`: roles, schemas, migrations
        conn = await connect(stack.database_url)
        try:
            _, secret = await store.create_token(conn, Role.OPERATOR, label="bench")
            await shipped_sops_in_force(conn)  # what intake learns from routing, not started
        finally:
            await conn.close()
        stack.start_service("intake")
        await asyncio.to_thread(stack.wait_healthy, 60, ("intake",))
        url = f"{stack.services['intake'].url}/v1/reports"
        # aiohttp, not httpx: the load generator shares the two cores with what it measures,
        # and httpx spent more CPU per request (~3 ms) than intake itself.
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=30),
            connector=aiohttp.TCPConnector(limit=args.concurrency * 2),
        ) as client:
            for _ in range(50):  # warm up connections and the pool
                await file_one(client, url, [])
            cpu = CpuMeter(
                {
                    "intake": (stack.services["intake"].process.pid, False),  # type: ignore[union-attr]
                    "postgres": (stack.postgres.process.pid, True),  # type: ignore[union-attr]
                    "nats": (stack.nats.process.pid, False),  # type: ignore[union-attr]
                    "load client": (os.getpid(), False),
                }
            )
            await fixed_rate(client, url, args.rate, args.seconds, cpu)
            await burst(client, url, args.burst, args.concurrency, cpu, stack.database_url)
    finally:
        stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
