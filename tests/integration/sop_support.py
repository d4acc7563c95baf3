"""SOPs in force as routing announces them, for tests of intake without routing running.

The event is the contract: intake projects this ``sop.in_force`` exactly as it projects the
one routing stages at start for each SOP file in force (built here by routing's own code).
"""

import asyncio
import hashlib
import time
from datetime import UTC, datetime

import asyncpg
import httpx
import nats

from intake import store
from routing.events import sop_in_force
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop_folder, parse_sop
from rujuk_contracts import CloudEvent, parse_event
from rujuk_contracts.events import SopInForce, SopOrigin
from rujuk_runtime.bus import event_headers


def shipped_sop_events() -> list[CloudEvent]:
    """The ``sop.in_force`` of each shipped SOP file (3513, 3514), as routing announces it."""
    library = load_sop_folder(SHIPPED_SOPS)
    now = datetime.now(UTC)
    return [
        sop_in_force(sop, library.sha256[district], SopOrigin.FILE, now, None)
        for district, sop in sorted(library.sops.items())
    ]


def invented_sop_text(district: str, version: int = 1) -> str:
    """Pasuruan's shipped SOP (sample data) moved to another, invented district code."""
    text = (SHIPPED_SOPS / "3514.yaml").read_text()
    for old, new in (
        ("sop_id: sop-3514", f"sop_id: sop-{district}-contoh"),
        ('district_code: "3514"', f'district_code: "{district}"'),
        ("version: 1", f"version: {version}"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    return text


def published_event(text: str) -> CloudEvent:
    """The ``sop.in_force`` routing stages when this document is published."""
    sop = parse_sop(text)
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    return sop_in_force(sop, sha256, SopOrigin.PUBLISHED, datetime.now(UTC), None)


async def announce(nats_url: str, *events: CloudEvent) -> None:
    connection = await nats.connect(nats_url)
    try:
        for event in events:
            await connection.jetstream().publish(
                SopInForce.subject(), event.to_bytes(), headers=event_headers(event.id, None)
            )
    finally:
        await connection.close()


async def put_shipped_sops(conn: asyncpg.Connection) -> None:
    """Straight into intake's projection (its schema), as its consumer would put them."""
    for event in shipped_sop_events():
        _, payload = parse_event(event.to_bytes())
        assert isinstance(payload, SopInForce)
        await store.put_sop_in_force(conn, payload, event.time)


async def until_intake_knows(
    intake: httpx.AsyncClient, versions: dict[str, int], timeout: float = 15.0
) -> None:
    """Until intake's /healthz says it knows these districts' SOPs at these versions (or newer)."""
    deadline = time.monotonic() + timeout
    while True:
        known = (await intake.get("/healthz")).json().get("sops_in_force") or {}
        if all(known.get(district, 0) >= version for district, version in versions.items()):
            return
        assert time.monotonic() < deadline, f"intake knows {known}, not {versions}"
        await asyncio.sleep(0.05)
