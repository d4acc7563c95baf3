"""A case's export bundle read from the ledger: one code path for `rujuk audit export` and
``GET /v1/cases/{case_id}/bundle`` (the bundle's format and offline check: audit.bundle)."""

import json
from datetime import UTC, datetime
from typing import Any

from audit import bundle, store
from rujuk_runtime.db import Connection


async def export_bundle(conn: Connection, case_id: str) -> dict[str, Any] | None:
    """The bundle of one case, or None if the case has no entries. One snapshot: the case's
    entries, the latest checkpoint and the segment between agree."""
    async with store.snapshot(conn):
        entries = await store.case_entries(conn, case_id)
        if not entries:
            return None
        latest = await store.latest_checkpoint(conn)
        checkpoint = latest.checkpoint if latest else None
        last = max(entries[-1].seq, checkpoint.seq if checkpoint else 0)
        segment = await store.entries_between(conn, entries[0].seq, last)
    return bundle.build(case_id, segment, checkpoint, datetime.now(UTC))


def bundle_text(document: dict[str, Any]) -> str:
    """The file's text (what `rujuk audit verify-bundle` reads)."""
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"
