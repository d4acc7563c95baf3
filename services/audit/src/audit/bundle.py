"""Export bundles: one case's evidence, checked offline against the log's public key (and its
witnesses'), holding nothing of any other case.

A bundle holds the case's entries, each with its RFC 9162 inclusion proof against one signed
tree head (a C2SP checkpoint note, with the witnesses' cosignatures), and that head. Checking
it needs no database and nothing else of the ledger: each entry's canonical body (the RFC 8785
form the ledger hashes) gives its leaf, SHA-256(0x00 || body), and its proof leads to the
head's root in some log2(size) hashes. The proofs are hashes only: no other case's content.
See docs/audit.md for the format.
"""

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit import merkle, note
from audit.chain import BODY_FIELDS, Entry, FailureKind, VerifyFailure, canonical_body, timestamp

BUNDLE_FORMAT = "rujuk-audit-bundle/2"


class BundleError(ValueError):
    """A file that is not a readable bundle; the text says why."""


def build(
    case_id: str,
    entries: Sequence[Entry],
    head_note: str | None,
    proofs: Mapping[int, list[bytes]],
    exported_at: datetime,
) -> dict[str, Any]:
    """The bundle document (JSON-ready): ``proofs`` by seq, for the entries the head covers."""
    covered = [entry for entry in entries if entry.seq in proofs]
    return {
        "format": BUNDLE_FORMAT,
        "case_id": case_id,
        "exported_at": timestamp(exported_at),
        "head": head_note,
        "entries": [entry_document(entry, proofs[entry.seq]) for entry in covered],
        "entries_after_head": len(entries) - len(covered),
    }


def entry_document(entry: Entry, proof: Sequence[bytes]) -> dict[str, Any]:
    """An entry as bundles hold it: the fields its leaf hashes (``event`` is the exact RFC 8785
    text), and its inclusion proof (leaf index = seq - 1)."""
    return {
        "seq": entry.seq,
        "event_id": entry.event_id,
        "case_id": entry.case_id,
        "event_type": entry.event_type,
        "actor": entry.actor,
        "event_time": timestamp(entry.event_time),
        "recorded_at": timestamp(entry.recorded_at),
        "event": entry.event,
        "inclusion_proof": [base64.b64encode(digest).decode() for digest in proof],
    }


def _leaf(document: Mapping[str, Any]) -> tuple[int, str, bytes, list[bytes]]:
    """An entry's seq, case, leaf hash and proof; BundleError if malformed."""
    try:
        values = {name: document[name] for name in BODY_FIELDS}
        values["seq"] = int(values["seq"])
        for name in ("event_time", "recorded_at"):
            values[name] = datetime.fromisoformat(str(values[name]))
        for name in ("event_id", "case_id", "event_type", "actor", "event"):
            values[name] = str(values[name])
        proof = [base64.b64decode(h, validate=True) for h in document["inclusion_proof"]]
        body = canonical_body(**values)
    except (KeyError, TypeError, ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise BundleError(f"entry {document.get('seq', '?')} is malformed: {exc}") from exc
    return values["seq"], values["case_id"], merkle.leaf_hash(body), proof


@dataclass(frozen=True)
class BundleResult:
    case_id: str
    case_entries: int
    head_size: int | None
    signed_at: datetime | None
    witnesses: tuple[str, ...]
    failure: VerifyFailure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class CaseProof:
    """One case's entries checked by their inclusion proofs against the newest signed head,
    without reading the rest of the ledger. ``pending``: the case's entries recorded after
    that head, which the next head will cover (not a failure)."""

    case_id: str
    result: BundleResult | None  # None: no signed head yet, nothing to check against
    pending: int

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.failure is None


def verify_bundle(
    raw: bytes,
    public_key: bytes,
    *,
    witnesses: Sequence[note.Verifier] = (),
    quorum: int = 0,
) -> BundleResult:
    """Check a bundle offline against the trusted log ``public_key`` (and, if named, a
    quorum of ``witnesses``); names the first entry that fails."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"not JSON: {exc}") from exc
    return verify_document(document, public_key, witnesses=witnesses, quorum=quorum)


def verify_document(
    document: Any,
    public_key: bytes,
    *,
    witnesses: Sequence[note.Verifier] = (),
    quorum: int = 0,
) -> BundleResult:
    """``verify_bundle`` of a bundle already read (what ``build`` returns, or parsed JSON)."""
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
    case_id = str(document.get("case_id"))
    raw_entries = document.get("entries")
    if not isinstance(raw_entries, list):
        raise BundleError("the bundle holds no entries")
    leaves = [_leaf(item) for item in raw_entries]
    after = int(document.get("entries_after_head") or 0)

    def result(failure: VerifyFailure | None, head: Any = None) -> BundleResult:
        return BundleResult(
            case_id,
            len(leaves),
            None if head is None else head[0].size,
            None if head is None else head[1],
            () if head is None else head[2],
            failure,
        )

    head_text = document.get("head")
    if not isinstance(head_text, str):
        first = leaves[0][0] if leaves else 0
        return result(VerifyFailure(first, FailureKind.BAD_HEAD, "the bundle has no signed head"))
    try:
        head = _head(head_text, public_key, witnesses, quorum)
    except note.NoteError as exc:
        return result(VerifyFailure(0, FailureKind.BAD_HEAD, f"the head: {exc}"))
    checkpoint = head[0]
    seen: set[int] = set()
    for seq, entry_case, leaf, proof in leaves:
        if entry_case != case_id or seq in seen:
            why = "is another case's" if entry_case != case_id else "appears twice"
            return result(VerifyFailure(seq, FailureKind.GAP, f"entry {seq} {why}"), head)
        seen.add(seq)
        if not merkle.verify_inclusion(leaf, seq - 1, checkpoint.size, proof, checkpoint.root_hash):
            return result(
                VerifyFailure(
                    seq,
                    FailureKind.HASH_MISMATCH,
                    f"entry {seq} is not in the signed head of size {checkpoint.size}: its "
                    "content was altered, or its proof is not this head's",
                ),
                head,
            )
    if after:
        return result(
            VerifyFailure(
                checkpoint.size + 1,
                FailureKind.STALE_HEAD,
                f"{after} later entries of the case are not under the head of size "
                f"{checkpoint.size} yet: export again after the next head",
            ),
            head,
        )
    if not leaves:
        return result(VerifyFailure(0, FailureKind.GAP, "the bundle holds no entries"), head)
    return result(None, head)


def _head(
    text: str, public_key: bytes, witnesses: Sequence[note.Verifier], quorum: int
) -> tuple[note.Checkpoint, datetime | None, tuple[str, ...]]:
    signed = note.parse_note(text)
    checkpoint = note.parse_checkpoint(signed.text)
    log_keys = note.log_verifiers(checkpoint.origin, public_key)
    found = note.verify_note(signed, [*log_keys, *witnesses])
    if not any(v.verifier in log_keys for v in found):
        raise note.NoteError("it is not signed by the trusted log key")
    times = [v.time for v in found if v.verifier in log_keys and v.time is not None]
    cosigned = tuple(sorted({v.verifier.name for v in found if v.verifier in witnesses}))
    needed = quorum or len(witnesses)
    if len(cosigned) < needed:
        raise note.NoteError(
            f"cosigned by {len(cosigned)} of the {needed} witnesses required "
            f"({', '.join(cosigned) or 'none'})"
        )
    return checkpoint, max(times) if times else None, cosigned
