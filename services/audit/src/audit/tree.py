"""The switch from the hash chain to the Merkle tree: build the tree over the entries recorded
before it, but only after their chain verified against every signed checkpoint.

Runs under the ledger's lock, in one transaction: nothing is appended meanwhile, and a switch
that fails leaves nothing behind. The writer runs it before its first batch; `rujuk audit
migrate-tree` runs it by hand. A ledger whose tree is complete returns at once.
"""

import contextlib
from dataclasses import dataclass

from audit import merkle, signing, store
from audit.chain import ChainVerifier, FailureKind, VerifyFailure
from rujuk_runtime.db import Connection

NODE_CHUNK = 100_000


class TreeSwitchRefused(RuntimeError):
    """The old chain does not verify: the tree is not built over it (that would seal the
    tampering under signed heads). The failure says where."""

    def __init__(self, failure: VerifyFailure) -> None:
        self.failure = failure
        super().__init__(
            f"not building the Merkle tree: the ledger's chain fails at entry {failure.seq} "
            f"({failure.kind}): {failure.detail} / pohon Merkle tidak dibangun: rantai rusak"
        )


@dataclass(frozen=True)
class TreeSwitch:
    built: int  # leaves added now (0: the tree already covered the ledger)
    size: int  # entries in the ledger, all in the tree now
    checkpoints: int  # old signed checkpoints the chain was verified against


async def ensure_tree(conn: Connection, *, public_key: bytes | None = None) -> TreeSwitch:
    """Make the tree cover every entry; TreeSwitchRefused if their chain does not verify.
    ``public_key``: the key old checkpoints must be signed with (else the stored one)."""
    async with conn.transaction():
        await store.lock_ledger(conn)
        covered = await store.tree_size(conn)
        head = await store.head(conn)
        if covered == head.seq:
            return TreeSwitch(0, head.seq, 0)
        checkpoints = await store.checkpoints(conn)
        verifier = ChainVerifier(
            {item.checkpoint.seq: item.checkpoint.hash_bytes() for item in checkpoints},
            labels={
                item.checkpoint.seq: f"the signed checkpoint at entry {item.checkpoint.seq}"
                for item in checkpoints
            },
        )
        leaves: list[bytes] = []

        def feed(rows: list[store.BodyRow]) -> bool:
            if not verifier.feed_bodies(rows):
                return False
            leaves.extend(merkle.leaf_hash(body) for seq, _, _, body in rows if seq > covered)
            return True

        rest = await store.copy_bodies(conn, feed)
        if rest is not None and not verifier.failed:
            chunks = store.cursor_bodies(conn, first_seq=rest)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if not feed(chunk):
                        break
        result = verifier.result()
        if result.failure is not None:
            raise TreeSwitchRefused(result.failure)
        for item in checkpoints:
            problem = signing.check_signature(item.checkpoint, public_key or item.public_key)
            if problem is not None:
                failure = VerifyFailure(item.checkpoint.seq, FailureKind.BAD_CHECKPOINT, problem)
                raise TreeSwitchRefused(failure)
        frontier_nodes = await store.read_nodes(conn, merkle.frontier_keys(covered))
        frontier = [frontier_nodes[key] for key in merkle.frontier_keys(covered)]
        size = covered
        for start in range(0, len(leaves), NODE_CHUNK):
            batch = leaves[start : start + NODE_CHUNK]
            nodes, frontier = merkle.append_leaves(frontier, size, batch)
            await store.insert_nodes(conn, nodes)
            size += len(batch)
        return TreeSwitch(len(leaves), head.seq, len(checkpoints))
