"""The ledger's Merkle tree on a real PostgreSQL: built as entries are appended, built over a
ledger from before it only after its chain verified, and read back as proofs."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from audit import chain, merkle, store, tree
from audit.chain import FailureKind
from rujuk_runtime.db import create_pool
from tests.integration.test_audit_checkpoints import (
    behind_the_triggers,
    checkpoint_head,
    interleaved,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "audit")
    yield pool
    await pool.close()


async def leaves_of(conn: asyncpg.Connection) -> list[bytes]:
    return [merkle.leaf_hash(chain.body_of(e)) for e in await store.entries_between(conn, 1, 10**9)]


async def test_appends_build_the_tree_whose_root_and_proofs_are_rfc_9162s(
    pool: asyncpg.Pool,
) -> None:
    events = interleaved()
    async with pool.acquire() as conn:
        for start in range(0, len(events), 3):  # batches of 3 over 10 entries: odd frontiers
            await store.append_batch(conn, events[start : start + 3])
        size, root = await store.tree_head(conn)
        leaves = await leaves_of(conn)
        proofs = await store.inclusion_proofs(conn, range(size), size)
        consistency = await store.consistency_proof(conn, 6, size)
        stored = await conn.fetchval("SELECT count(*) FROM tree_nodes")

    assert (size, root) == (10, merkle.root_of(leaves))
    assert stored == 10 + 5 + 2 + 1  # every complete subtree of 10 leaves, once
    for index, proof in proofs.items():
        assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
    assert merkle.verify_consistency(6, size, consistency, merkle.root_of(leaves[:6]), root)


async def test_a_ledger_from_before_the_tree_gets_it_once_its_chain_verifies(
    pool: asyncpg.Pool,
) -> None:
    events = interleaved()
    async with pool.acquire() as conn:
        await store.append_batch(conn, events[:7])
        await checkpoint_head(pool)  # an old-style signed checkpoint at entry 7
        expected = await store.tree_head(conn)
    await behind_the_triggers(pool, "DELETE FROM tree_nodes")  # as before migration 0004
    async with pool.acquire() as conn:
        with pytest.raises(store.TreeNotBuilt):
            await store.append_batch(conn, events[7:])
        switch = await tree.ensure_tree(conn)
        again = await tree.ensure_tree(conn)
        rebuilt = await store.tree_head(conn)
        await store.append_batch(conn, events[7:])
        size, root = await store.tree_head(conn)
        leaves = await leaves_of(conn)

    assert (switch.built, switch.size, switch.checkpoints) == (7, 7, 1)
    assert again.built == 0
    assert rebuilt == expected
    assert (size, root) == (10, merkle.root_of(leaves))


async def test_the_tree_is_not_built_over_a_chain_that_does_not_verify(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await store.append_batch(conn, interleaved())
    await behind_the_triggers(
        pool,
        "DELETE FROM tree_nodes; UPDATE ledger SET actor = '/rujuk/forger' WHERE seq = 4",
    )
    async with pool.acquire() as conn:
        with pytest.raises(tree.TreeSwitchRefused, match="entry 4") as refused:
            await tree.ensure_tree(conn)
        built = await store.tree_size(conn)

    assert refused.value.failure.kind == FailureKind.HASH_MISMATCH
    assert built == 0
