"""Proofs from the stored Merkle tree at ten million entries: inclusion proof and consistency
proof latency, as `rujuk audit export` and the witnesses' requests read them.

    .venv/bin/python bench/audit_tree.py [--entries 10000000] [--queries 2000]

Seeds audit.tree_nodes straight with COPY (the leaves are invented hashes: a proof reads only
the tree, never the entries), then times ``store.inclusion_proofs`` for one random leaf at the
full size and ``store.consistency_proof`` between two random sizes, over one connection, each
proof verified against the root (RFC 9162) so that a wrong answer cannot look fast. Seeding ten
million leaves (twenty million nodes) takes minutes and some 2 GB of disk: a bench, never a test.
"""

import argparse
import asyncio
import hashlib
import random
import statistics
import time

import asyncpg
from audit_common import servers

from audit import merkle, store

CHUNK = 1_000_000


def leaf(n: int) -> bytes:
    return hashlib.sha256(b"\x00invented entry " + n.to_bytes(8, "big")).digest()


async def seed(conn: asyncpg.Connection, entries: int) -> dict[int, bytes]:
    """Every node of a tree of ``entries`` invented leaves; the root at a few sizes."""
    started = time.perf_counter()
    frontier: list[bytes] = []
    roots: dict[int, bytes] = {}
    for start in range(0, entries, CHUNK):
        leaves = [leaf(n) for n in range(start, min(start + CHUNK, entries))]
        nodes, frontier = merkle.append_leaves(frontier, start, leaves)
        await conn.copy_records_to_table(
            "tree_nodes",
            records=nodes,
            columns=["level", "node_index", "hash"],
            schema_name="audit",
        )
        roots[start + len(leaves)] = merkle.fold(frontier)
    await conn.execute("VACUUM (ANALYZE) audit.tree_nodes")  # as autovacuum leaves a table
    print(f"seeded {entries:,} leaves in {time.perf_counter() - started:.0f} s")
    return roots


def percentiles(timings: list[float]) -> str:
    timings.sort()
    p50 = statistics.median(timings)
    p99 = timings[max(0, int(len(timings) * 0.99) - 1)]
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {timings[-1]:.2f} ms"


async def run(database_url: str, entries: int, queries: int) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "audit"})
    try:
        roots = await seed(conn, entries)
        root = roots[entries]
        inclusion: list[float] = []
        for round_ in range(queries + 50):  # the first 50 warm the connection and the cache
            index = random.randrange(entries)
            started = time.perf_counter()
            proof = (await store.inclusion_proofs(conn, [index], entries))[index]
            elapsed = (time.perf_counter() - started) * 1000
            assert merkle.verify_inclusion(leaf(index), index, entries, proof, root)
            if round_ >= 50:
                inclusion.append(elapsed)
        print(f"inclusion proof at {entries:,} entries ({queries} random leaves): "
              f"{percentiles(inclusion)}")  # fmt: skip
        consistency: list[float] = []
        sizes = sorted(roots)
        for round_ in range(queries + 50):
            old = random.randrange(1, entries)
            started = time.perf_counter()
            proof = await store.consistency_proof(conn, old, entries)
            elapsed = (time.perf_counter() - started) * 1000
            if old in roots:  # checkable where the old root is known
                assert merkle.verify_consistency(old, entries, proof, roots[old], root)
            if round_ >= 50:
                consistency.append(elapsed)
        checked = [size for size in sizes if size < entries]
        for old in checked:
            proof = await store.consistency_proof(conn, old, entries)
            assert merkle.verify_consistency(old, entries, proof, roots[old], root)
        print(f"consistency proof to {entries:,} from a random size ({queries} sizes): "
              f"{percentiles(consistency)}")  # fmt: skip
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    with servers(need_nats=False) as (_, database_url):
        asyncio.run(run(database_url, args.entries, args.queries))


if __name__ == "__main__":
    main()
