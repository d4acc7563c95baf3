"""Append throughput through audit's real consumer path: events already on RUJUK_EVENTS
(real NATS JetStream), audit started, time until every one is chained in PostgreSQL.

    .venv/bin/python bench/audit_append.py [--events 20000] [--batch-size 100] [--per-event]

Prints the sustained rate (from the first to the last entry's recorded_at) and the wall time
from the service's start. ``--per-event`` uses the generic idempotent consumer instead of
audit's batched writer, for comparison.
"""

import argparse
import asyncio
import time

import asyncpg
import nats
from audit_common import event_for, servers

from audit.bootstrap import create_runtime
from audit.settings import AuditSettings
from rujuk_contracts import model_for_type
from rujuk_runtime.bus import ensure_streams, event_headers


async def publish(nats_url: str, count: int) -> None:
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    await ensure_streams(js)
    events = [event_for(n // 10, n % 10) for n in range(count)]
    for start in range(0, count, 500):
        chunk = events[start : start + 500]
        await asyncio.gather(
            *(
                js.publish(
                    model_for_type(e.type).subject(),  # type: ignore[union-attr]
                    e.to_bytes(),
                    headers=event_headers(e.id, None),
                )
                for e in chunk
            )
        )
    await connection.close()


async def run(nats_url: str, database_url: str, count: int, batch_size: int, batched: bool) -> None:
    await publish(nats_url, count)
    settings = AuditSettings(
        nats_url=nats_url,
        database_url=database_url,
        batch_size=batch_size,
        signing_key="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        log_level="WARNING",
    )
    runtime = create_runtime(settings, batch_append=batched)
    started = time.perf_counter()
    async with runtime.running():
        while await runtime.pool.fetchval("SELECT count(*) FROM ledger") < count:
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - started
    conn = await asyncpg.connect(database_url)
    span = await conn.fetchval(
        "SELECT extract(epoch FROM max(recorded_at) - min(recorded_at)) FROM audit.ledger"
    )
    await conn.close()
    path = "batched writer" if batched else "per-event consumer"
    print(f"append ({path}, batch size {batch_size}): {count} events")
    rate = count / float(span)
    print(f"  sustained: {rate:,.0f} events/s (first to last recorded_at, {float(span):.2f} s)")
    print(f"  wall from service start: {count / wall:,.0f} events/s ({wall:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--per-event", action="store_true")
    args = parser.parse_args()
    with servers() as (nats_url, database_url):
        assert nats_url is not None
        asyncio.run(run(nats_url, database_url, args.events, args.batch_size, not args.per_event))


if __name__ == "__main__":
    main()
