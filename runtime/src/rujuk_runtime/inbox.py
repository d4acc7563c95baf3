"""The inbox half of the outbox pattern: ``processed_events`` records each event id a service
has acted on, in the same transaction as its effects, so a redelivered event is recognised and
skipped. Every service writes it through these functions only."""

from collections.abc import Sequence

from rujuk_runtime.db import Connection


async def record_processed(conn: Connection, event_id: str, event_type: str) -> bool:
    """Record one event as processed; False when it already was (a duplicate)."""
    inserted = await conn.fetchval(
        "INSERT INTO processed_events (event_id, event_type) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        event_type,
    )
    return inserted is True


async def record_processed_batch(
    conn: Connection, event_ids: Sequence[str], event_types: Sequence[str]
) -> set[str]:
    """Record a batch in one statement; return the ids that were new."""
    rows = await conn.fetch(
        "INSERT INTO processed_events (event_id, event_type) "
        "SELECT * FROM unnest($1::text[], $2::text[]) "
        "ON CONFLICT DO NOTHING RETURNING event_id",
        list(event_ids),
        list(event_types),
    )
    return {row["event_id"] for row in rows}


async def processed_among(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids were already processed."""
    rows = await conn.fetch(
        "SELECT event_id FROM processed_events WHERE event_id = ANY($1::text[])", list(event_ids)
    )
    return {row["event_id"] for row in rows}
