"""The ledger's hash chain: entries, their canonical form and hash, and verification (no I/O).

Each entry is hashed as ``sha256(prev_hash || canonical(body))``, where ``prev_hash`` is the
previous entry's hash (32 zero bytes for the first) and ``body`` is the JSON object of every
other field, canonicalised by RFC 8785 (JCS)::

    {"actor": ..., "case_id": ..., "event": <the CloudEvent>, "event_id": ...,
     "event_time": "2025-01-31T02:03:04.000005Z", "event_type": ..., "recorded_at": ..., "seq": 7}

Times are UTC with microseconds and a ``Z``. The CloudEvent is kept as its own RFC 8785 text,
so an auditor can recompute every hash with any JCS library, and verification never has to
re-canonicalise it: it is spliced into the body as it is stored.
"""

import dataclasses
import hashlib
import json
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring
from typing import Any, NamedTuple

import rfc8785

from rujuk_contracts.envelope import CloudEvent
from rujuk_contracts.ledger import Checkpoint

HASH_SIZE = 32
GENESIS_HASH = bytes(HASH_SIZE)


class UnrepresentableEvent(ValueError):
    """A CloudEvent that has no RFC 8785 form (e.g. an integer beyond 2**53); the text says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger row: an event, where it sits in the chain, and the hash that seals it."""

    seq: int
    event_id: str
    case_id: str
    event_type: str
    actor: str  # the CloudEvent ``source``: the service or partner that emitted it
    event_time: datetime
    recorded_at: datetime
    event: str  # the full CloudEvent, as RFC 8785 canonical JSON (the exact text hashed)
    prev_hash: bytes
    hash: bytes

    def cloud_event(self) -> dict[str, Any]:
        """The stored CloudEvent as a JSON object."""
        document: dict[str, Any] = json.loads(self.event)
        return document


# Entry's fields, in order: the ledger's columns (``store``), and but for the two hashes the
# content the hash covers (``canonical_body`` takes them in this order). Defined once, here.
ENTRY_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Entry))
BODY_FIELDS: tuple[str, ...] = ENTRY_FIELDS[:-2]  # all but prev_hash and hash
_body_values = operator.attrgetter(*BODY_FIELDS)


class Head(NamedTuple):
    """The last entry's seq and hash: where the next entry attaches."""

    seq: int
    hash: bytes


GENESIS = Head(0, GENESIS_HASH)


def canonical_event(event: CloudEvent) -> str:
    """The CloudEvent's RFC 8785 canonical JSON text, as the ledger stores it."""
    document = event.model_dump(mode="json", exclude_none=True)
    # Sorted-key compact JSON is exactly RFC 8785 when there are no floats (ECMAScript's
    # number form differs from Python's), no integers beyond 2**53, and no keys whose
    # UTF-16 order differs from code point order; and it is C-fast. A unit test holds the
    # two equal; anything else takes the reference implementation.
    text = _SORTED_COMPACT.encode(document)
    try:
        if _MAYBE_NOT_PLAIN.search(text):  # else no number can be a float or unsafe
            _PLAIN_NUMBERS.decode(text)
        if text.isascii() or _keys_plain(document):
            return text
    except _NotPlain:
        pass
    try:
        return rfc8785.dumps(document).decode()
    except rfc8785.CanonicalizationError as exc:
        raise UnrepresentableEvent(
            f"event {event.id} has no RFC 8785 canonical form: {exc}"
        ) from exc


def canonical_texts(events: Sequence[CloudEvent]) -> list[str | UnrepresentableEvent]:
    """``canonical_event`` of each event, or the error it raised, for ``store.append_batch``."""
    texts: list[str | UnrepresentableEvent] = []
    for event in events:
        try:
            texts.append(canonical_event(event))
        except UnrepresentableEvent as exc:
            texts.append(exc)
    return texts


_MAX_SAFE_INTEGER = 2**53 - 1


class _NotPlain(Exception):
    pass


def _not_plain(text: str) -> None:
    raise _NotPlain


def _safe_int(text: str) -> int:
    number = int(text)
    if not -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER:
        raise _NotPlain
    return number


# Made once: json.dumps/json.loads with non-default arguments build a new encoder/decoder per
# call, a measurable share of the append path.
_SORTED_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_PLAIN_NUMBERS = json.JSONDecoder(
    parse_float=_not_plain, parse_int=_safe_int, parse_constant=_not_plain
)
# A cheap pre-check that lets most events skip the decoding above. In compact JSON a number
# (or NaN/Infinity, which json.dumps writes and RFC 8785 refuses) starts right after ":", ","
# or "["; it is a float if its digits are followed by ".", "e" or "E", and can exceed 2**53
# only with 16 digits or more. A match inside a string is a false alarm that merely costs the
# full check.
_MAYBE_NOT_PLAIN = re.compile(r"[:,\[](?:-?\d+(?:[.eE]|\d{15})|-?Infinity|NaN)")


def _keys_plain(value: Any) -> bool:
    """True if every object key is below U+D800 (where UTF-16 and code point order agree)."""
    if isinstance(value, dict):
        return all(
            (key.isascii() or max(key) < "\ud800") and _keys_plain(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_keys_plain(item) for item in value)
    return True


def timestamp(moment: datetime) -> str:
    """A time as the chain writes it: UTC, microseconds, ``Z`` (a naive time is taken as UTC)."""
    zone = moment.tzinfo
    if zone is not UTC:  # asyncpg hands out UTC already: skip the conversion
        if zone is None:
            # equivalent: tzinfo=None too, the offset isoformat would add is cut off below
            moment = moment.replace(tzinfo=UTC)  # pragma: no mutate
        elif moment.utcoffset():  # a zero offset (e.g. pydantic's UTC) is UTC's wall time
            moment = moment.astimezone(UTC)
    text = moment.isoformat()  # the fastest formatter; drops the fraction when it is zero
    return f"{text[:26]}Z" if moment.microsecond else f"{text[:19]}.000000Z"


def canonical_body(
    seq: int,
    event_id: str,
    case_id: str,
    event_type: str,
    actor: str,
    event_time: datetime,
    recorded_at: datetime,
    event: str,
) -> bytes:
    """RFC 8785 form of an entry without its hashes, given the event's canonical text; the
    parameters are ``BODY_FIELDS``, in that order."""
    # Built by hand rather than by rfc8785.dumps because it is verification's hot path: the
    # keys are already in JCS order, encode_basestring escapes exactly as JCS does, and the
    # event is spliced in as stored (a unit test holds the result equal to rfc8785.dumps).
    # store._BODY builds the same text in SQL.
    return (
        f'{{"actor":{encode_basestring(actor)},"case_id":{encode_basestring(case_id)}'
        f',"event":{event},"event_id":{encode_basestring(event_id)}'
        f',"event_time":"{timestamp(event_time)}","event_type":{encode_basestring(event_type)}'
        f',"recorded_at":"{timestamp(recorded_at)}","seq":{seq}}}'
    ).encode()


def entry_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev_hash + body).digest()


def body_of(entry: Entry) -> bytes:
    """The canonical form of an entry's content (everything but its hashes)."""
    return canonical_body(*_body_values(entry))


def recompute_hash(entry: Entry) -> bytes:
    """The hash the entry's content and prev_hash call for, whatever hash it carries."""
    return entry_hash(entry.prev_hash, body_of(entry))


def next_entry(
    head: Head, event: CloudEvent, recorded_at: datetime, *, text: str | None = None
) -> Entry:
    """The entry that records ``event`` right after ``head``; ``text`` is
    ``canonical_event(event)`` if the caller made it already."""
    return sealed_entry(head, event, recorded_at, text=text)[0]


def sealed_entry(
    head: Head, event: CloudEvent, recorded_at: datetime, *, text: str | None = None
) -> tuple[Entry, bytes]:
    """``next_entry`` and the entry's canonical body (its Merkle leaf is the body's hash)."""
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "event_id": event.id,
        "case_id": event.subject,
        "event_type": event.type,
        "actor": event.source,
        "event_time": event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC),
        "recorded_at": recorded_at,
        "event": canonical_event(event) if text is None else text,
    }
    try:
        body = canonical_body(**fields)
    except UnicodeEncodeError as exc:  # a lone surrogate in an id or source
        raise UnrepresentableEvent(f"event {event.id} is not valid UTF-8: {exc.reason}") from exc
    return Entry(**fields, prev_hash=head.hash, hash=entry_hash(head.hash, body)), body


class FailureKind(StrEnum):
    GAP = "gap"  # an entry is missing: seq jumps
    OUT_OF_ORDER = "out_of_order"  # a seq repeats or goes back
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous entry's hash
    HASH_MISMATCH = "hash_mismatch"  # the content no longer hashes to the stored hash
    ANCHOR_MISMATCH = "anchor_mismatch"  # the hash differs from one recorded earlier
    TRUNCATED = "truncated"  # the ledger ends before an entry anchored or checkpointed earlier
    BAD_CHECKPOINT = "bad_checkpoint"  # a checkpoint's signature does not verify
    # Signed tree heads (audit.heads):
    BAD_HEAD = "bad_head"  # a head is not signed by the trusted log key
    INCONSISTENT_HEADS = "inconsistent_heads"  # two signed heads of one size differ
    HEAD_MISMATCH = "head_mismatch"  # a head's root is not the root of the ledger's entries
    HEAD_MISSING = "head_missing"  # a head kept elsewhere is not in the database
    NOT_WITNESSED = "not_witnessed"  # the newest head lacks a quorum of cosignatures
    STALE_HEAD = "stale_head"  # entries arrive but no head was signed for too long
    TREE_MISMATCH = "tree_mismatch"  # the stored tree nodes are not the entries' tree


@dataclass(frozen=True, slots=True)
class VerifyFailure:
    seq: int  # the first entry that fails (for a gap: the first missing seq)
    kind: FailureKind
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    entries: int  # entries verified good, in order, before any failure
    head_seq: int  # the last good entry's seq (0 for an empty ledger)
    head_hash: bytes  # the last good entry's hash (GENESIS_HASH for an empty ledger)
    failure: VerifyFailure | None = None
    checkpoints: int = 0  # signed checkpoints that matched the chain and their signature
    latest_checkpoint: Checkpoint | None = None
    parked: int | None = None  # messages parked on the dead-letter queue, when counted
    heads: int = 0  # signed tree heads found (each size and root once), all places together
    latest_head: "HeadSummary | None" = None
    problems: tuple[VerifyFailure, ...] = ()  # every failure found; ``failure`` is the first
    sources: tuple[str, ...] = ()  # where heads were read

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class HeadSummary:
    size: int
    root_hash: bytes
    signed_at: datetime | None
    witnesses: tuple[str, ...]  # trusted witnesses whose cosignature verified
    sources: tuple[str, ...]


def short_hash(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


class ChainVerifier:
    """Verifies a ledger fed in seq order, in as many pieces as it comes in.

    ``anchors`` maps seqs to hashes recorded earlier (e.g. a head an auditor wrote down, or a
    signed checkpoint): a different hash, or a ledger that now ends before an anchor, is a
    failure. Without anchors, removing the newest entries cannot be told from their never
    having existed. ``labels`` names where an anchor came from (default "the anchor").
    ``start`` is the head the first entry fed attaches to (a segment of the chain, e.g. in
    an export bundle, starts after the genesis).
    """

    def __init__(
        self,
        anchors: Mapping[int, bytes] | None = None,
        *,
        labels: Mapping[int, str] | None = None,
        start: Head = GENESIS,
    ) -> None:
        self._anchors = dict(anchors or {})
        self._labels = dict(labels or {})
        self._seq = start.seq
        self._hash = start.hash
        self._count = 0
        self._failure: VerifyFailure | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def feed(self, entries: Iterable[Entry]) -> bool:
        """Check ``entries``; False once a failure was found (further input is ignored)."""
        return self.feed_bodies(
            (entry.seq, entry.prev_hash, entry.hash, body_of(entry)) for entry in entries
        )

    def feed_bodies(self, rows: Iterable[tuple[int, bytes, bytes, bytes]]) -> bool:
        """Check ``(seq, prev_hash, hash, body)`` rows, ``body`` being the entry's canonical
        form (``body_of``) however it was built; False once a failure was found.

        The loop behind ``feed``: a reader that can build the body without an Entry (e.g.
        ``store.stream_bodies``) skips making one per row.
        """
        if self._failure is not None:
            return False
        seq, previous, count, anchors = self._seq, self._hash, self._count, self._anchors
        sha256 = hashlib.sha256
        try:
            for entry_seq, prev_hash, stored, body in rows:
                if entry_seq != seq + 1:
                    self._failure = _sequence_failure(seq, entry_seq)
                    return False
                if prev_hash != previous:
                    self._failure = VerifyFailure(
                        entry_seq,
                        FailureKind.BROKEN_LINK,
                        f"prev_hash {short_hash(prev_hash)} is not the hash of entry "
                        f"{seq} ({short_hash(previous)}): an earlier entry was rewritten",
                    )
                    return False
                actual = sha256(previous + body).digest()
                if actual != stored:
                    self._failure = VerifyFailure(
                        entry_seq,
                        FailureKind.HASH_MISMATCH,
                        f"stored hash {short_hash(stored)} but the content hashes to "
                        f"{short_hash(actual)}: the entry was altered after it was recorded",
                    )
                    return False
                if anchors and entry_seq in anchors and anchors[entry_seq] != actual:
                    self._failure = VerifyFailure(
                        entry_seq,
                        FailureKind.ANCHOR_MISMATCH,
                        f"hash {short_hash(actual)} differs from "
                        f"{self._labels.get(entry_seq, 'the anchor')} "
                        f"({short_hash(anchors[entry_seq])}) recorded earlier: the chain was "
                        "rewritten from here or before",
                    )
                    return False
                seq, previous, count = entry_seq, actual, count + 1
        finally:
            self._seq, self._hash, self._count = seq, previous, count
        return True

    def result(self) -> VerifyResult:
        failure = self._failure or self._missing_anchor()
        return VerifyResult(self._count, self._seq, self._hash, failure)

    def _missing_anchor(self) -> VerifyFailure | None:
        beyond = [seq for seq in self._anchors if seq > self._seq]
        if not beyond:
            return None
        last = max(beyond)
        return VerifyFailure(
            self._seq + 1,
            FailureKind.TRUNCATED,
            f"the ledger ends at entry {self._seq} but entry {last} is covered by "
            f"{self._labels.get(last, 'an anchor')} recorded earlier: the newest entries "
            "were removed",
        )


def _sequence_failure(previous_seq: int, seq: int) -> VerifyFailure:
    expected = previous_seq + 1
    # equivalent: `>=` too, seq is never the expected one here
    if seq > expected:  # pragma: no mutate
        missing = (
            f"entry {expected} is" if seq == expected + 1 else f"entries {expected}-{seq - 1} are"
        )
        return VerifyFailure(expected, FailureKind.GAP, f"{missing} missing: the next is {seq}")
    return VerifyFailure(
        seq, FailureKind.OUT_OF_ORDER, f"entry {seq} comes after entry {previous_seq}"
    )


def verify(
    entries: Iterable[Entry],
    anchors: Mapping[int, bytes] | None = None,
    *,
    start: Head = GENESIS,
) -> VerifyResult:
    """Walk ``entries`` in seq order from the first; ok, or the first entry that fails and why."""
    verifier = ChainVerifier(anchors, start=start)
    verifier.feed(entries)
    return verifier.result()
