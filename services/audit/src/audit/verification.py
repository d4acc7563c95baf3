"""Verify the whole ledger in the database: the chain, its Merkle tree, every signed head from
every place it is kept, every old signed checkpoint, and the parked count."""

import contextlib
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from audit import heads, merkle, note, signing, store
from audit.chain import ChainVerifier, FailureKind, HeadSummary, VerifyFailure, VerifyResult
from rujuk_runtime.db import Connection

# Which failure is named first when several are found: the entry-level ones (the chain), then
# what the witnesses and the copies outside the database say, then the rest.
PRIORITY = [
    FailureKind.GAP,
    FailureKind.OUT_OF_ORDER,
    FailureKind.BROKEN_LINK,
    FailureKind.HASH_MISMATCH,
    FailureKind.ANCHOR_MISMATCH,
    FailureKind.NOT_WITNESSED,
    FailureKind.INCONSISTENT_HEADS,
    FailureKind.HEAD_MISMATCH,
    FailureKind.HEAD_MISSING,
    FailureKind.TRUNCATED,
    FailureKind.BAD_HEAD,
    FailureKind.BAD_CHECKPOINT,
    FailureKind.TREE_MISMATCH,
    FailureKind.STALE_HEAD,
]


@dataclass(frozen=True)
class HeadPolicy:
    """What heads to read besides the database's, and what to require of them."""

    copies: Sequence[heads.HeadCopy] = ()  # from the stream, witnesses, an auditor's files
    sources: Sequence[str] = ()  # where those copies were looked for (for the report)
    origin: str | None = None  # the log's origin; else the database's heads'
    witnesses: Sequence[note.Verifier] = ()
    quorum: int = 0  # 0: every named witness
    interval: timedelta | None = None  # heads are due this often while entries arrive
    now: datetime | None = None


class _Tree:
    """Recomputes the tree from the entries as they stream by: the root at each size asked.

    ``merkle.CompactRange`` inlined: this runs once per entry on verify's hot path."""

    def __init__(self, sizes: set[int]) -> None:
        self.stack: list[bytes] = []
        self.size = 0
        self.sizes = sizes
        self.roots: dict[int, bytes] = {}

    def feed(self, rows: list[store.BodyRow]) -> None:
        stack, size, sizes, sha256 = self.stack, self.size, self.sizes, hashlib.sha256
        leaf, node = merkle.LEAF_PREFIX, merkle.NODE_PREFIX
        for _, _, _, body in rows:
            current = sha256(leaf + body).digest()
            pending = size
            while pending & 1:
                current = sha256(node + stack.pop() + current).digest()
                pending >>= 1
            stack.append(current)
            size += 1
            if size in sizes:
                self.roots[size] = merkle.fold(stack)
        self.size = size


async def verify_connection(
    conn: Connection,
    anchors: Mapping[int, bytes] | None = None,
    *,
    public_key: bytes | None = None,
    policy: HeadPolicy | None = None,
) -> VerifyResult:
    """Walk the chain (streamed, one snapshot), recompute its Merkle tree, and judge every
    signed head (audit.heads) and every old checkpoint against it.

    Heads and checkpoints are checked with ``public_key`` when given (the key an auditor
    trusts), else only with the key stored beside them, which proves less: whoever can write
    the table can write that key too. ``conn`` must not be in a transaction.
    """
    policy = policy or HeadPolicy()
    # Heads and checkpoints first: one signed after the snapshot would seem beyond the ledger.
    stored = await store.checkpoints(conn)
    stored_heads = await store.heads(conn)
    verifier = _chain_verifier(stored, anchors)
    copies = [*_database_copies(stored_heads), *policy.copies]
    tree = _Tree({heads_size for heads_size in map(_copy_size, copies) if heads_size})
    async with store.snapshot(conn):
        ledger_size = (await store.head(conn)).seq
        tree.sizes.add(ledger_size)

        def sink(rows: list[store.BodyRow]) -> bool:
            if not verifier.feed_bodies(rows):
                return False
            tree.feed(rows)
            return True

        rest = await store.copy_bodies(conn, sink)
        if rest is not None and not verifier.failed:
            async with contextlib.aclosing(store.cursor_bodies(conn, first_seq=rest)) as chunks:
                async for chunk in chunks:
                    if not sink(chunk):
                        break
        stored_root = await _stored_root(conn)
        newest = stored_heads[-1].size if stored_heads else 0
        first_uncovered = await store.entries_since(conn, newest)
    result = verifier.result()
    problems = [] if result.failure is None else [result.failure]
    problems += _checkpoint_problems(stored, public_key, result.failure is None)
    log_keys = _log_keys(stored_heads, copies, public_key, policy.origin)
    verdict = heads.judge(
        copies,
        log_keys=log_keys,
        roots=tree.roots,
        ledger_size=ledger_size,
        witnesses=policy.witnesses,
        quorum=policy.quorum,
        now=policy.now or datetime.now(UTC),
        interval=policy.interval,
        first_uncovered_at=first_uncovered,
    )
    problems += verdict.failures
    if stored_root is not None and tree.roots.get(ledger_size) not in (None, stored_root):
        problems.append(
            VerifyFailure(
                ledger_size,
                FailureKind.TREE_MISMATCH,
                "the stored tree nodes are not the tree of the entries: proofs served from "
                "them will not verify",
            )
        )
    problems.sort(key=lambda failure: (PRIORITY.index(failure.kind), failure.seq))
    newest_head = verdict.newest
    return dataclasses.replace(
        result,
        failure=problems[0] if problems else None,
        problems=tuple(problems),
        checkpoints=_good_checkpoints(stored, problems),
        latest_checkpoint=stored[-1].checkpoint if stored else None,
        parked=sum((await store.parked_counts(conn)).values()),
        heads=len(verdict.heads),
        latest_head=None
        if newest_head is None
        else HeadSummary(
            newest_head.size,
            newest_head.checkpoint.root_hash,
            newest_head.signed_at,
            tuple(sorted(newest_head.witnesses)),
            newest_head.sources,
        ),
        sources=(heads.DATABASE, *policy.sources),
    )


def _chain_verifier(
    stored: Sequence[store.StoredCheckpoint], anchors: Mapping[int, bytes] | None
) -> ChainVerifier:
    all_anchors: dict[int, bytes] = {}
    labels: dict[int, str] = {}
    for item in stored:
        all_anchors[item.checkpoint.seq] = item.checkpoint.hash_bytes()
        labels[item.checkpoint.seq] = f"the signed checkpoint at entry {item.checkpoint.seq}"
    for seq, digest in (anchors or {}).items():  # an auditor's own anchor wins over the table
        all_anchors[seq] = digest
        labels[seq] = "the anchor given"
    return ChainVerifier(all_anchors, labels=labels)


def _checkpoint_problems(
    stored: Sequence[store.StoredCheckpoint], public_key: bytes | None, chain_ok: bool
) -> list[VerifyFailure]:
    if not chain_ok:
        return []
    for item in stored:
        problem = signing.check_signature(item.checkpoint, public_key or item.public_key)
        if problem is not None:
            return [
                VerifyFailure(
                    item.checkpoint.seq,
                    FailureKind.BAD_CHECKPOINT,
                    f"checkpoint at entry {item.checkpoint.seq}: {problem}",
                )
            ]
    return []


def _good_checkpoints(
    stored: Sequence[store.StoredCheckpoint], problems: Sequence[VerifyFailure]
) -> int:
    bad = [p.seq for p in problems if p.kind is FailureKind.BAD_CHECKPOINT]
    return sum(1 for item in stored if not bad or item.checkpoint.seq < bad[0])


def _database_copies(stored: Sequence[store.StoredHead]) -> list[heads.HeadCopy]:
    """The database's heads as notes, with the cosignatures stored beside each."""
    copies = []
    for head in stored:
        lines = (line if line.endswith("\n") else line + "\n" for line in head.cosignatures)
        text = head.note + "".join(lines)
        copies.append(heads.HeadCopy(heads.DATABASE, text))
    return copies


def _copy_size(copy: heads.HeadCopy) -> int:
    lines = copy.text.split("\n", 2)
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


def _log_keys(
    stored: Sequence[store.StoredHead],
    copies: Sequence[heads.HeadCopy],
    public_key: bytes | None,
    origin: str | None,
) -> list[note.Verifier]:
    """The log's two verifier keys: the trusted key (else the newest stored head's), under
    the given origin (else the origins the heads carry: the key ID binds the name to the key,
    so a head under another name does not verify with it)."""
    key = public_key or (stored[-1].public_key if stored else None)
    if key is None:
        return []
    names = {origin} if origin else {copy.text.split("\n", 1)[0] for copy in copies}
    return [verifier for name in sorted(names) for verifier in note.log_verifiers(name, key)]


async def _stored_root(conn: Connection) -> bytes | None:
    try:
        return (await store.tree_head(conn))[1]
    except store.TreeNotBuilt:
        return None
