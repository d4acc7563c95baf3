"""Verify the whole ledger in the database: the chain, every signed checkpoint, the parked count."""

import contextlib
import dataclasses
from collections.abc import Mapping

from audit import signing, store
from audit.chain import ChainVerifier, FailureKind, VerifyFailure, VerifyResult
from rujuk_runtime.db import Connection


async def verify_connection(
    conn: Connection,
    anchors: Mapping[int, bytes] | None = None,
    *,
    public_key: bytes | None = None,
) -> VerifyResult:
    """Walk the chain (streamed, one snapshot) against the anchors and every checkpoint.

    Each checkpoint's hash must be the hash of the entry it names (else the chain was
    rewritten), and the ledger must reach it (else the newest entries were removed). Its
    signature is checked with ``public_key`` when given (the key an auditor trusts), else
    only with the key stored beside it, which proves less: whoever can write the table can
    write that key too. ``conn`` must not be in a transaction.
    """
    # Checkpoints first: one signed after the chain snapshot below would seem to be beyond it.
    stored = await store.checkpoints(conn)
    all_anchors: dict[int, bytes] = {}
    labels: dict[int, str] = {}
    for item in stored:
        all_anchors[item.checkpoint.seq] = item.checkpoint.hash_bytes()
        labels[item.checkpoint.seq] = f"the signed checkpoint at entry {item.checkpoint.seq}"
    for seq, digest in (anchors or {}).items():  # an auditor's own anchor wins over the table
        all_anchors[seq] = digest
        labels[seq] = "the anchor given"
    verifier = ChainVerifier(all_anchors, labels=labels)
    # The server builds each entry's canonical body and streams it by COPY (store.copy_bodies);
    # the hash, the links and the anchors are checked here exactly as ChainVerifier.feed
    # checks Entries. From the first row the server cannot build, a cursor takes over.
    async with store.snapshot(conn):
        rest = await store.copy_bodies(conn, verifier.feed_bodies)
        if rest is not None and not verifier.failed:
            async with contextlib.aclosing(store.cursor_bodies(conn, first_seq=rest)) as chunks:
                async for chunk in chunks:
                    if not verifier.feed_bodies(chunk):
                        break
    result = verifier.result()
    failure = result.failure
    good = 0
    for item in stored:
        if failure is not None:
            break
        problem = signing.check_signature(item.checkpoint, public_key or item.public_key)
        if problem is not None:
            failure = VerifyFailure(
                item.checkpoint.seq,
                FailureKind.BAD_CHECKPOINT,
                f"checkpoint at entry {item.checkpoint.seq}: {problem}",
            )
            break
        good += 1
    parked = sum((await store.parked_counts(conn)).values())
    return dataclasses.replace(
        result,
        failure=failure,
        checkpoints=good,
        latest_checkpoint=stored[-1].checkpoint if stored else None,
        parked=parked,
    )
