"""Export bundles: one case's evidence that anyone can check offline with the public key.

A bundle holds the full chain segment from the case's first entry to the later of its last
entry and the latest signed checkpoint (other cases' entries in between included: without
their content their hashes could not be recomputed, and the link would be only a claim),
plus that checkpoint. Checking it needs no database: recompute every hash from the first
entry's ``prev_hash``, and check that the checkpoint is signed by the trusted key and names
the hash of its entry in the segment. See docs/audit.md for the format.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from audit import signing
from audit.chain import (
    ChainVerifier,
    Entry,
    FailureKind,
    Head,
    VerifyFailure,
    short_hash,
    timestamp,
)
from rujuk_contracts.ledger import Checkpoint

BUNDLE_FORMAT = "rujuk-audit-bundle/1"


class BundleError(ValueError):
    """A file that is not a readable bundle; the text says why."""


def build(
    case_id: str,
    segment: Sequence[Entry],
    checkpoint: Checkpoint | None,
    exported_at: datetime,
) -> dict[str, Any]:
    """The bundle document (JSON-ready)."""
    return {
        "format": BUNDLE_FORMAT,
        "case_id": case_id,
        "exported_at": timestamp(exported_at),
        "case_entries": [entry.seq for entry in segment if entry.case_id == case_id],
        "entries": [entry_document(entry) for entry in segment],
        "checkpoint": None if checkpoint is None else json.loads(checkpoint.to_bytes()),
        "public_key_id": None if checkpoint is None else checkpoint.key_id,
    }


def entry_document(entry: Entry) -> dict[str, Any]:
    """An entry as bundles hold it; ``event`` is the exact RFC 8785 text that was hashed."""
    return {
        "seq": entry.seq,
        "event_id": entry.event_id,
        "case_id": entry.case_id,
        "event_type": entry.event_type,
        "actor": entry.actor,
        "event_time": timestamp(entry.event_time),
        "recorded_at": timestamp(entry.recorded_at),
        "event": entry.event,
        "prev_hash": entry.prev_hash.hex(),
        "hash": entry.hash.hex(),
    }


def entry_from_document(document: dict[str, Any]) -> Entry:
    try:
        return Entry(
            seq=int(document["seq"]),
            event_id=str(document["event_id"]),
            case_id=str(document["case_id"]),
            event_type=str(document["event_type"]),
            actor=str(document["actor"]),
            event_time=datetime.fromisoformat(document["event_time"]),
            recorded_at=datetime.fromisoformat(document["recorded_at"]),
            event=str(document["event"]),
            prev_hash=bytes.fromhex(document["prev_hash"]),
            hash=bytes.fromhex(document["hash"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"entry {document.get('seq', '?')} is malformed: {exc}") from exc


@dataclass(frozen=True)
class BundleResult:
    case_id: str
    case_entries: int
    segment: tuple[int, int]  # first and last seq
    checkpoint: Checkpoint | None
    failure: VerifyFailure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def verify_bundle(raw: bytes, public_key: bytes) -> BundleResult:
    """Check a bundle offline against the trusted ``public_key``; names the first bad entry."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
    case_id = str(document.get("case_id"))
    raw_entries = document.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise BundleError("the bundle holds no entries")
    entries = [entry_from_document(item) for item in raw_entries]
    checkpoint: Checkpoint | None = None
    if document.get("checkpoint") is not None:
        try:
            checkpoint = Checkpoint.model_validate(document["checkpoint"])
        except ValidationError as exc:
            raise BundleError(f"the checkpoint is malformed: {exc.errors()[0]['msg']}") from exc
    first, last = entries[0], entries[-1]
    case_seqs = [entry.seq for entry in entries if entry.case_id == case_id]

    def result(failure: VerifyFailure | None) -> BundleResult:
        return BundleResult(case_id, len(case_seqs), (first.seq, last.seq), checkpoint, failure)

    # 1. Every entry's content still hashes to its hash, and links to the one before.
    anchors = {checkpoint.seq: checkpoint.hash_bytes()} if checkpoint else {}
    verifier = ChainVerifier(
        anchors,
        labels={seq: f"the signed checkpoint at entry {seq}" for seq in anchors},
        start=Head(first.seq - 1, first.prev_hash),
    )
    verifier.feed(entries)
    chained = verifier.result()
    if chained.failure is not None:
        return result(chained.failure)
    # 2. The checkpoint is signed by the trusted key and lies within the segment.
    if checkpoint is None:
        return result(
            VerifyFailure(first.seq, FailureKind.BAD_CHECKPOINT, "the bundle has no checkpoint")
        )
    problem = signing.check_signature(checkpoint, public_key)
    if problem is not None:
        return result(
            VerifyFailure(checkpoint.seq, FailureKind.BAD_CHECKPOINT, f"the checkpoint: {problem}")
        )
    if checkpoint.seq < first.seq:
        return result(
            VerifyFailure(
                first.seq,
                FailureKind.BAD_CHECKPOINT,
                f"the checkpoint (entry {checkpoint.seq}) comes before the segment",
            )
        )
    # 3. The segment starts at the case, and the signed checkpoint covers all of the case.
    if not case_seqs or first.case_id != case_id:
        return result(
            VerifyFailure(
                first.seq,
                FailureKind.GAP,
                f"the segment does not start with an entry of case {case_id}",
            )
        )
    listed = document.get("case_entries")
    if listed is not None and listed != case_seqs:
        return result(
            VerifyFailure(
                first.seq,
                FailureKind.GAP,
                f"the bundle lists entries {listed} of the case, the segment holds {case_seqs}",
            )
        )
    uncovered = [seq for seq in case_seqs if seq > checkpoint.seq]
    if uncovered:
        return result(
            VerifyFailure(
                uncovered[0],
                FailureKind.BAD_CHECKPOINT,
                f"entries {uncovered[0]}-{case_seqs[-1]} of the case come after the latest "
                f"checkpoint (entry {checkpoint.seq}, {short_hash(checkpoint.hash_bytes())}): "
                "export again after the next checkpoint",
            )
        )
    return result(None)
