"""A case's export bundle read from the ledger: one code path for `rujuk audit export`,
``GET /v1/cases/{case_id}/bundle`` and the case's own check ``GET /v1/cases/{case_id}/verify``
(the bundle's format and offline check: audit.bundle)."""

import json
from datetime import UTC, datetime
from typing import Any

from audit import bundle, store
from audit.chain import FailureKind
from rujuk_runtime.db import Connection


async def prove_case(
    conn: Connection, case_id: str, public_key: bytes | None
) -> bundle.CaseProof | None:
    """Check the case's bundle as an auditor would offline: each entry's leaf, recomputed from
    the entry as the ledger holds it now, must lead by its proof to the signed head's root.
    ``public_key``: the trusted key (else the one stored beside the head, which proves less).
    None if the case has no entries. Costs the case's entries and log2(ledger) nodes each."""
    found = await _bundle_and_head(conn, case_id)
    if found is None:
        return None
    document, head = found
    pending = int(document["entries_after_head"])
    if head is None:
        return bundle.CaseProof(case_id, None, pending)
    result = bundle.verify_document(document, public_key or head.public_key)
    if result.failure is not None and result.failure.kind is FailureKind.STALE_HEAD:
        result = bundle.BundleResult(
            result.case_id,
            result.case_entries,
            result.head_size,
            result.signed_at,
            result.witnesses,
            None,
        )  # entries after the head: pending, counted apart
    return bundle.CaseProof(case_id, result, pending)


async def export_bundle(conn: Connection, case_id: str) -> dict[str, Any] | None:
    """The bundle of one case, or None if the case has no entries. One snapshot: the case's
    entries, the newest signed head (with its cosignatures) and the proofs agree."""
    found = await _bundle_and_head(conn, case_id)
    return None if found is None else found[0]


async def _bundle_and_head(
    conn: Connection, case_id: str
) -> tuple[dict[str, Any], store.StoredHead | None] | None:
    async with store.snapshot(conn):
        entries = await store.case_entries(conn, case_id)
        if not entries:
            return None
        head = await store.latest_head(conn)
        covered = [entry.seq for entry in entries if head is not None and entry.seq <= head.size]
        proofs = (
            await store.inclusion_proofs(conn, [seq - 1 for seq in covered], head.size)
            if head is not None and covered
            else {}
        )
    note_text = None if head is None else head_note(head)
    by_seq = {index + 1: proof for index, proof in proofs.items()}
    return bundle.build(case_id, entries, note_text, by_seq, datetime.now(UTC)), head


def head_note(head: store.StoredHead) -> str:
    """A stored head as one signed note: audit's signatures, then the witnesses'."""
    return head.note + "".join(
        line if line.endswith("\n") else line + "\n" for line in head.cosignatures
    )


def bundle_text(document: dict[str, Any]) -> str:
    """The file's text (what `rujuk audit verify-bundle` reads)."""
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"
