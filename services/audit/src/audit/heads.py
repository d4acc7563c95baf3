"""Judging the signed tree heads found in every place they are kept (the database, the
RUJUK_AUDIT stream, witnesses) against each other and against the ledger (no I/O).

A head is a C2SP checkpoint note signed by the log (audit.note). What is checked:

- each copy is signed by the trusted log key under the log's origin (``bad_head``);
- two heads of one size with different roots are a fork (``inconsistent_heads``, both named);
- each head's root is the root of the ledger's first ``size`` entries as they are now
  (``head_mismatch``: those entries were rewritten since it was signed), and the ledger
  reaches it (``truncated``);
- a head found outside the database is in the database too (``head_missing``);
- with witness keys, the newest head carries cosignatures of a quorum of them
  (``not_witnessed`` names the first head after the last one that did);
- while entries keep arriving, the newest head is younger than twice the signing interval
  (``stale_head``, with its age).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from audit import note
from audit.chain import FailureKind, VerifyFailure, short_hash


@dataclass(frozen=True)
class HeadCopy:
    """One copy of a head, and where it was found."""

    source: str  # e.g. "the database", "stream RUJUK_AUDIT", "witness https://…"
    text: str  # the signed note


@dataclass(frozen=True)
class Head:
    """A head whose log signature verified, with what vouches for it."""

    checkpoint: note.Checkpoint
    signed_at: datetime | None  # the log's own timestamped signature
    sources: tuple[str, ...]
    witnesses: frozenset[str]  # names of trusted witnesses whose cosignature verified

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def label(self) -> str:
        return (
            f"the head of size {self.size} ({short_hash(self.checkpoint.root_hash)}, "
            f"from {' and '.join(self.sources)})"
        )


@dataclass
class HeadsVerdict:
    heads: list[Head] = field(default_factory=list)  # one per (size, root), smallest first
    failures: list[VerifyFailure] = field(default_factory=list)

    @property
    def newest(self) -> Head | None:
        return self.heads[-1] if self.heads else None


DATABASE = "the database"


def judge(
    copies: Sequence[HeadCopy],
    *,
    log_keys: Sequence[note.Verifier],
    roots: Mapping[int, bytes],
    ledger_size: int,
    witnesses: Sequence[note.Verifier] = (),
    quorum: int = 0,
    now: datetime | None = None,
    interval: timedelta | None = None,
    first_uncovered_at: datetime | None = None,
) -> HeadsVerdict:
    """Check ``copies`` against each other and the ledger. ``roots`` maps each head size the
    ledger reaches to the root of its first ``size`` entries, recomputed from them."""
    verdict = HeadsVerdict()
    merged: dict[tuple[int, bytes], Head] = {}
    origins = {key.name for key in log_keys}
    for copy in copies:
        head = _read(copy, log_keys, witnesses, origins, verdict)
        if head is None:
            continue
        key = (head.size, head.checkpoint.root_hash)
        known = merged.get(key)
        if known is not None:
            head = Head(
                head.checkpoint,
                known.signed_at or head.signed_at,
                tuple(dict.fromkeys((*known.sources, *head.sources))),
                known.witnesses | head.witnesses,
            )
        merged[key] = head
    verdict.heads = sorted(merged.values(), key=lambda h: (h.size, DATABASE not in h.sources))
    _forks(verdict)
    _against_ledger(verdict, roots, ledger_size)
    _missing(verdict)
    if witnesses:
        _quorum(verdict, quorum or len(witnesses), len(witnesses))
    if interval is not None and now is not None:
        _fresh(verdict, ledger_size, now, interval, first_uncovered_at)
    return verdict


def _read(
    copy: HeadCopy,
    log_keys: Sequence[note.Verifier],
    witnesses: Sequence[note.Verifier],
    origins: set[str],
    verdict: HeadsVerdict,
) -> Head | None:
    try:
        signed = note.parse_note(copy.text)
        checkpoint = note.parse_checkpoint(signed.text)
        found = note.verify_note(signed, [*log_keys, *witnesses])
        if not any(v.verifier in log_keys for v in found):
            raise note.NoteError("it is not signed by the trusted log key")
        if checkpoint.origin not in origins:
            raise note.NoteError(f"its origin {checkpoint.origin!r} is not the log's")
    except note.NoteError as exc:
        size = _size_of(copy.text)
        verdict.failures.append(
            VerifyFailure(size, FailureKind.BAD_HEAD, f"a head from {copy.source}: {exc}")
        )
        return None
    times = [v.time for v in found if v.verifier in log_keys and v.time is not None]
    return Head(
        checkpoint,
        max(times) if times else None,
        (copy.source,),
        frozenset(v.verifier.name for v in found if v.verifier in witnesses),
    )


def _size_of(text: str) -> int:
    lines = text.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


def _forks(verdict: HeadsVerdict) -> None:
    by_size: dict[int, Head] = {}
    for head in verdict.heads:
        other = by_size.setdefault(head.size, head)
        if other is not head:
            verdict.failures.append(
                VerifyFailure(
                    head.size,
                    FailureKind.INCONSISTENT_HEADS,
                    f"{other.label()} and {head.label()} are both signed and differ: the log "
                    "forked or was rewritten",
                )
            )


def _against_ledger(verdict: HeadsVerdict, roots: Mapping[int, bytes], ledger_size: int) -> None:
    last_good: Head | None = None
    for head in verdict.heads:
        if head.size > ledger_size:
            verdict.failures.append(
                VerifyFailure(
                    ledger_size + 1,
                    FailureKind.TRUNCATED,
                    f"the ledger ends at entry {ledger_size} but {head.label()} covers "
                    f"{head.size}: the newest entries were removed",
                )
            )
            continue
        actual = roots.get(head.size)
        if actual is None:  # the chain failed before this size: reported as such
            continue
        if actual == head.checkpoint.root_hash:
            last_good = head
            continue
        since = (
            f"; it is not consistent with {last_good.label()}, which still matches"
            if last_good is not None
            else ""
        )
        verdict.failures.append(
            VerifyFailure(
                head.size,
                FailureKind.HEAD_MISMATCH,
                f"{head.label()} does not match the ledger, whose first {head.size} entries "
                f"now hash to {short_hash(actual)}: entries up to {head.size} were "
                f"rewritten after it was signed{since}",
            )
        )


def _missing(verdict: HeadsVerdict) -> None:
    for head in verdict.heads:
        if DATABASE not in head.sources:
            verdict.failures.append(
                VerifyFailure(
                    head.size,
                    FailureKind.HEAD_MISSING,
                    f"{head.label()} is not in the database: it was removed or replaced",
                )
            )


def _quorum(verdict: HeadsVerdict, quorum: int, named: int) -> None:
    stored = [head for head in verdict.heads if DATABASE in head.sources]
    if not stored:
        verdict.failures.append(
            VerifyFailure(0, FailureKind.NOT_WITNESSED, "the database holds no signed head")
        )
        return
    newest = stored[-1]
    if len(newest.witnesses) >= quorum:
        return
    witnessed = [head for head in stored if len(head.witnesses) >= quorum]
    first = next(head for head in stored if not witnessed or head.size > witnessed[-1].size)
    after = (
        f"the last head a quorum cosigned is of size {witnessed[-1].size}"
        if witnessed
        else "no head was cosigned by a quorum"
    )
    verdict.failures.append(
        VerifyFailure(
            first.size,
            FailureKind.NOT_WITNESSED,
            f"{first.label()} is the first head no quorum of witnesses cosigned "
            f"({len(first.witnesses)} of the {quorum} of {named} named required; {after}); "
            f"the newest, of size {newest.size}, has {len(newest.witnesses)}",
        )
    )


def _fresh(
    verdict: HeadsVerdict,
    ledger_size: int,
    now: datetime,
    interval: timedelta,
    first_uncovered_at: datetime | None,
) -> None:
    newest = verdict.newest
    covered = newest.size if newest else 0
    if ledger_size <= covered or first_uncovered_at is None:
        return  # nothing arrived since the newest head: no new one is due
    if now - first_uncovered_at <= 2 * interval:
        return  # the next head is not late yet
    signed_at = newest.signed_at if newest else None
    age = "there is no signed head" if signed_at is None else f"it is {_age(now - signed_at)} old"
    verdict.failures.append(
        VerifyFailure(
            covered + 1,
            FailureKind.STALE_HEAD,
            f"entries {covered + 1}-{ledger_size} are under no signed head though the first "
            f"was recorded {_age(now - first_uncovered_at)} ago, and heads are due every "
            f"{_age(interval)}; the newest head covers {covered} entries and {age}",
        )
    )


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
