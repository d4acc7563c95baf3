"""A case's export bundle read from the ledger: one code path for `rujuk audit export` and
``GET /v1/cases/{case_id}/bundle`` (the bundle's format and offline check: audit.bundle)."""

import json
from datetime import UTC, datetime
from typing import Any

from audit import bundle, store
from rujuk_runtime.db import Connection


async def export_bundle(conn: Connection, case_id: str) -> dict[str, Any] | None:
    """The bundle of one case, or None if the case has no entries. One snapshot: the case's
    entries, the newest signed head (with its cosignatures) and the proofs agree."""
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
    return bundle.build(case_id, entries, note_text, by_seq, datetime.now(UTC))


def head_note(head: store.StoredHead) -> str:
    """A stored head as one signed note: audit's signatures, then the witnesses'."""
    return head.note + "".join(
        line if line.endswith("\n") else line + "\n" for line in head.cosignatures
    )


def bundle_text(document: dict[str, Any]) -> str:
    """The file's text (what `rujuk audit verify-bundle` reads)."""
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"
