"""Accept latency and throughput of intake's door, over HTTP, against a real process.

Starts embedded NATS and PostgreSQL and intake as a process (rujuk.stack.Stack), then
1. files reports at a fixed rate (open loop: each request leaves at its scheduled time),
2. files reports as fast as the door takes them (closed loop, N concurrent clients),
and prints p50/p99 accept latency and throughput. Targets: p99 < 25 ms at 100/s, ≥ 500/s.

    .venv/bin/python bench/intake_accept.py [--rate 100] [--seconds 10] [--burst 3000]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from intake import auth
from intake.auth import Role
from intake.cli import connect
from rujuk.stack import Stack

REPORT = {
    "channel": "hotline",
    "district_code": "3514",
    "kecamatan": "Bangil",
    "victim": {"name": "CONTOH Korban Bench", "age_years": 30, "sex": "female"},
    "reporter": {"relationship": "self"},
    "incident": {"violence_types": ["physical"], "narrative": "CONTOH narasi bench"},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def file_one(client: httpx.AsyncClient, url: str, latencies: list[float]) -> None:
    started = time.perf_counter()
    response = await client.post(url, json=REPORT)
    latencies.append(time.perf_counter() - started)
    if response.status_code != 202:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")


async def fixed_rate(client: httpx.AsyncClient, url: str, rate: float, seconds: float) -> None:
    latencies: list[float] = []
    tasks = []
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(file_one(client, url, latencies)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    report("fixed rate", rate, len(latencies), elapsed, latencies)


async def burst(client: httpx.AsyncClient, url: str, total: int, concurrency: int) -> None:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await file_one(client, url, latencies)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    report(f"as fast as possible ({concurrency} clients)", None, len(latencies), elapsed, latencies)


def report(name: str, rate: float | None, count: int, elapsed: float, lat: list[float]) -> None:
    target = f" target {rate:.0f}/s," if rate else ""
    print(
        f"{name}:{target} {count} reports in {elapsed:.1f} s = {count / elapsed:.0f}/s; "
        f"accept latency p50 {1000 * statistics.median(lat):.1f} ms, "
        f"p99 {1000 * percentile(lat, 0.99):.1f} ms, max {1000 * max(lat):.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rujuk-bench-"))
    stack = Stack(folder, external_nats_url=None, external_database_url=None)
    stack.start_servers()
    try:
        conn = await connect(stack.database_url)
        try:
            _, secret = await auth.create_token(conn, Role.OPERATOR, label="bench")
        finally:
            await conn.close()
        stack.start_service("intake")
        await asyncio.to_thread(stack.wait_healthy, 60, ("intake",))
        url = f"{stack.services['intake'].url}/v1/reports"
        limits = httpx.Limits(max_connections=args.concurrency * 2)
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as client:
            for _ in range(50):  # warm up connections and the pool
                await file_one(client, url, [])
            await fixed_rate(client, url, args.rate, args.seconds)
            await burst(client, url, args.burst, args.concurrency)
    finally:
        stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
