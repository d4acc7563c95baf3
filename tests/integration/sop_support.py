"""SOPs in force as routing announces them, for tests of intake without routing running; a
small invented SOP and a reported case for routing's own tests.

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
import nats.js

from intake import store
from routing.events import sop_in_force
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop_folder, parse_sop
from rujuk_contracts import CloudEvent, make_event, parse_event
from rujuk_contracts.events import CaseReported, SopInForce, SopOrigin
from rujuk_contracts.triage import TriageFacts
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


# --- a small invented SOP for routing's deadline and on-call tests ------------------------


def on_call_test_sop(
    *, name: str, contacts: str, rounds: int, every_minutes: int, refer: str
) -> str:
    """An invented SOP for 3514 whose coordinator is ``coord-test`` and case manager
    ``upt-test``: ``contacts`` is the YAML flow list of its on-call roles, ``refer`` the flow
    items of its one rule (after ``refer:``)."""
    return f"""\
sop_id: sop-3514
version: 1
district_code: "3514"
name: {name} (invented)
sample_data: true
kecamatan: [Bangil]
coordinator: coord-test
on_call:
  contacts: {contacts}
  repeat: {{rounds: {rounds}, every_minutes: {every_minutes}}}
consent:
  requires_consent: {{police: share_with_police}}
directory:
  - {{id: coord-test, name: Coordinator, services: [case_management], kecamatan: all,
     hours: "24/7", channels: [nats]}}
  - {{id: upt-test, name: UPT PPA, services: [case_management], kecamatan: all,
     hours: "24/7", channels: [nats]}}
  - {{id: alt-test, name: Alternate, services: [case_management, psychosocial], kecamatan: all,
     hours: "24/7", channels: [nats]}}
rules:
  - id: case-management
    description: Every case gets a case manager
    when: {{}}
    refer:
{refer}"""


async def publish_reported(js: nats.js.JetStreamContext, case_id: str) -> None:
    """``case.reported`` for an adult's report of psychological violence in Bangil (3514), as
    intake publishes it."""
    case = CaseReported(
        case_id=case_id,
        channel="hotline",
        reported_at=datetime.now(UTC),
        triage=TriageFacts(
            violence_types=["psychological"],
            age_group="adult",
            sex="female",
            district_code="3514",
            kecamatan="Bangil",
        ),
    )
    event = make_event(case, source="/rujuk/test")
    await js.publish(
        CaseReported.subject(), event.to_bytes(), headers=event_headers(event.id, None)
    )
