"""Judging signed heads from several places against each other and the ledger (audit.heads)."""

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle, note
from audit.chain import FailureKind
from audit.heads import DATABASE, HeadCopy, judge

ORIGIN = "example.org/rujuk-audit"
LOG = note.Signer(ORIGIN, Ed25519PrivateKey.generate())
LOG_KEYS = list(note.log_verifiers(ORIGIN, LOG.verifier(note.ED25519).public_key))
WITNESS = note.Signer("witness.example/w1", Ed25519PrivateKey.generate())
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
LEAVES = [merkle.leaf_hash(f"entry {n}".encode()) for n in range(12)]
ROOTS = {size: merkle.root_of(LEAVES[:size]) for size in range(13)}


def head(size: int, *, signer: note.Signer = LOG, root: bytes | None = None) -> str:
    checkpoint = note.Checkpoint(ORIGIN, size, root or ROOTS[size])
    signed = note.sign_head(signer, checkpoint, NOW - timedelta(minutes=10))
    return signed.with_signatures([WITNESS.cosign(signed.text, NOW)]).render()


def test_consistent_heads_from_several_places_merge_into_one_each() -> None:
    verdict = judge(
        [HeadCopy(DATABASE, head(5)), HeadCopy("stream", head(5)), HeadCopy(DATABASE, head(12))],
        log_keys=LOG_KEYS,
        roots=ROOTS,
        ledger_size=12,
        witnesses=[WITNESS.verifier(note.COSIGNATURE_V1)],
    )
    assert verdict.failures == []
    assert [(h.size, h.sources) for h in verdict.heads] == [
        (5, (DATABASE, "stream")),
        (12, (DATABASE,)),
    ]
    assert verdict.heads[-1].signed_at == NOW - timedelta(minutes=10)


def test_a_head_signed_by_another_key_or_beyond_the_ledger_is_named() -> None:
    impostor = note.Signer(ORIGIN, Ed25519PrivateKey.generate())
    verdict = judge(
        [HeadCopy(DATABASE, head(5)), HeadCopy("file kept.txt", head(7, signer=impostor))],
        log_keys=LOG_KEYS,
        roots=ROOTS,
        ledger_size=4,
    )
    kinds = [(f.kind, f.seq) for f in verdict.failures]
    assert (FailureKind.BAD_HEAD, 7) in kinds
    assert (FailureKind.TRUNCATED, 5) in kinds
    assert any("file kept.txt" in f.detail for f in verdict.failures)


def test_two_heads_of_one_size_that_differ_are_both_named() -> None:
    verdict = judge(
        [HeadCopy(DATABASE, head(8)), HeadCopy("witness w1", head(8, root=bytes(32)))],
        log_keys=LOG_KEYS,
        roots=ROOTS,
        ledger_size=12,
    )
    fork = next(f for f in verdict.failures if f.kind is FailureKind.INCONSISTENT_HEADS)
    assert "from the database" in fork.detail
    assert "from witness w1" in fork.detail


def test_a_late_head_is_stale_only_once_entries_wait_past_twice_the_interval() -> None:
    def stale(waited: timedelta) -> list[FailureKind]:
        verdict = judge(
            [HeadCopy(DATABASE, head(5))],
            log_keys=LOG_KEYS,
            roots=ROOTS,
            ledger_size=9,
            now=NOW,
            interval=timedelta(seconds=60),
            first_uncovered_at=NOW - waited,
        )
        return [f.kind for f in verdict.failures]

    assert stale(timedelta(seconds=100)) == []
    assert stale(timedelta(seconds=121)) == [FailureKind.STALE_HEAD]
