"""Case replay latency and verify throughput on a large ledger (default 1,000,000 entries).

    .venv/bin/python bench/audit_ledger.py [--entries 1000000] [--queries 2000]

Builds a hash-chained ledger of invented events (10 per case) straight into PostgreSQL with
COPY, then times `store.case_entries` (what `rujuk audit replay` and GET
/v1/cases/{id}/history read) for random cases, and `verify_ledger` over the whole chain.
"""

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg
from audit_common import case_id, event_for, servers

from audit import chain, store
from audit.chain import GENESIS, Head
from audit.cli import verify_ledger
from rujuk_runtime.db import create_pool

CHUNK = 50_000


async def build(database_url: str, entries: int) -> None:
    pool = await create_pool(database_url, "audit")
    await pool.close()
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "audit"})
    head = GENESIS
    recorded = datetime(2026, 6, 1, tzinfo=UTC)
    started = time.perf_counter()
    try:
        for start in range(0, entries, CHUNK):
            rows = []
            for n in range(start, min(start + CHUNK, entries)):
                entry = chain.next_entry(
                    head, event_for(n // 10, n % 10), recorded + timedelta(microseconds=n)
                )
                head = Head(entry.seq, entry.hash)
                rows.append(store._row(entry))
            await conn.copy_records_to_table(
                "ledger",
                records=rows,
                columns=[c.strip() for c in store._COLUMNS.split(",")],
                schema_name="audit",
            )
        await conn.execute("ANALYZE ledger")
    finally:
        await conn.close()
    print(f"built {entries:,} entries in {time.perf_counter() - started:.1f} s")


async def replay_latency(database_url: str, entries: int, queries: int) -> None:
    pool = await create_pool(database_url, "audit")
    cases = entries // 10
    timings = []
    try:
        async with pool.acquire() as conn:
            for _ in range(50):  # warm the connection and the prepared statement
                await store.case_entries(conn, case_id(random.randrange(cases)))
            for _ in range(queries):
                wanted = case_id(random.randrange(cases))
                started = time.perf_counter()
                found = await store.case_entries(conn, wanted)
                timings.append((time.perf_counter() - started) * 1000)
                assert len(found) == 10
    finally:
        await pool.close()
    timings.sort()
    p50 = statistics.median(timings)
    p99 = timings[int(len(timings) * 0.99) - 1]
    print(
        f"case replay over {entries:,} entries ({queries} random cases, 10 entries each): "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {timings[-1]:.2f} ms"
    )


async def verify_throughput(database_url: str, entries: int) -> None:
    started = time.perf_counter()
    result = await verify_ledger(database_url)
    elapsed = time.perf_counter() - started
    assert result.ok
    assert result.entries == entries
    print(f"verify: {entries:,} entries in {elapsed:.1f} s = {entries / elapsed:,.0f} entries/s")


async def run(database_url: str, entries: int, queries: int) -> None:
    await build(database_url, entries)
    await replay_latency(database_url, entries, queries)
    await verify_throughput(database_url, entries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    with servers(need_nats=False) as (_, database_url):
        asyncio.run(run(database_url, args.entries, args.queries))


if __name__ == "__main__":
    main()
