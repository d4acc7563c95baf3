"""The console's case audit page against the real audit service (real NATS and PostgreSQL): it
checks the case by its own inclusion proofs against the newest signed checkpoint, never by the
whole ledger's verify, and a case altered behind the ledger's triggers still shows as failing."""

from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from fastapi import FastAPI

from audit import signing
from audit.bootstrap import create_app as create_audit
from audit.settings import AuditSettings
from console.bootstrap import create_app as create_console
from console.settings import ConsoleSettings
from intake.auth import new_secret
from rujuk_contracts.events import Role
from rujuk_runtime.bus import ensure_streams, event_headers
from rujuk_runtime.db import create_pool
from tests.fake_sessions import MemorySessions
from tests.integration import access_support
from tests.integration.access_support import announce_token, bearer
from tests.integration.test_audit_consumer import eventually, subject_of
from tests.unit.test_audit_chain import CASE_ID, case_story

pytestmark = pytest.mark.integration

KEY = signing.generate()
AUDITOR = new_secret()
ORIGIN = "http://console.test"


class Recorded(httpx.AsyncBaseTransport):
    """The real audit app behind the console; each path the console asked of it, kept."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


def whoami(request: httpx.Request) -> httpx.Response:
    """Intake's whoami for the one auditor token (the console asks it at sign-in)."""
    if request.headers.get("authorization") != f"Bearer {AUDITOR}":
        return httpx.Response(401, json={"detail": "unknown token"})
    found = {"token_id": "tok-au", "role": "auditor", "agency_id": None, "districts": None}
    return httpx.Response(200, json={**found, "scope": "province"})


@pytest.fixture
async def audit(database_url: str, clean_bus: str) -> AsyncIterator[FastAPI]:
    settings = AuditSettings(
        nats_url=clean_bus,
        database_url=database_url,
        signing_key=KEY.private_base64(),
        checkpoint_every=4,
        checkpoint_interval_seconds=0.5,
    )
    app = create_audit(settings)
    async with app.router.lifespan_context(app):
        await announce_token(clean_bus, Role.AUDITOR, secret=AUDITOR)
        connection = await nats.connect(clean_bus)
        js = connection.jetstream()
        await ensure_streams(js)
        for event in case_story():
            headers = event_headers(event.id, None)
            await js.publish(subject_of(event), event.to_bytes(), headers=headers)
        await connection.close()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://audit"
        ) as client:

            async def covered() -> bool:  # the case's five entries lie under a signed head
                latest = await client.get("/v1/checkpoints/latest", headers=bearer(AUDITOR))
                return latest.status_code == 200 and latest.json()["size"] >= 6

            await access_support.eventually(
                lambda: client.get("/v1/parked", headers=bearer(AUDITOR)), 200
            )
            await eventually(covered)
        yield app


async def test_the_case_page_proves_its_case_without_the_whole_ledgers_verify(
    audit: FastAPI, database_url: str
) -> None:
    recorded = Recorded(audit)
    console = create_console(
        ConsoleSettings(session_secret="test-secret-for-the-console-0123456789"),
        transports={"intake": httpx.MockTransport(whoami), "audit": recorded},
        sessions=MemorySessions(),
    )
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=console), base_url=ORIGIN, headers={"Origin": ORIGIN}
    )
    async with console.router.lifespan_context(console), browser:
        signed_in = await browser.post("/signin", data={"token": AUDITOR})
        assert signed_in.status_code == 303, signed_in.text
        page = await browser.get(f"/audit/cases/{CASE_ID}")
        asked = list(recorded.paths)

        # Someone with the database's superuser alters one of the case's entries.
        pool = await create_pool(database_url, "audit")
        try:
            async with pool.acquire() as conn, conn.transaction():
                seq = await conn.fetchval(
                    "SELECT seq FROM ledger WHERE case_id = $1 ORDER BY seq OFFSET 2 LIMIT 1",
                    CASE_ID,
                )
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "UPDATE ledger SET event = replace(event::text, $2, $3)::json WHERE seq = $1",
                    seq,
                    CASE_ID,
                    "3514-ZZZZZZZZZZ",
                )
        finally:
            await pool.close()
        tampered = await browser.get(f"/audit/cases/{CASE_ID}")

    assert page.status_code == 200, page.text
    assert 'id="verdict" data-ok="true"' in page.text
    assert "5 entri" in page.text
    assert "/v1/ledger/verify" not in recorded.paths
    assert asked == [f"/v1/cases/{CASE_ID}/history", f"/v1/cases/{CASE_ID}/verify"]
    assert tampered.status_code == 200, tampered.text
    assert 'id="verdict" data-ok="false"' in tampered.text
    assert f"VERIFIKASI GAGAL pada entri #{seq}" in tampered.text


async def test_audit_proves_one_case_for_its_districts_only(audit: FastAPI, clean_bus: str) -> None:
    _, elsewhere = await announce_token(clean_bus, Role.AUDITOR, districts=["3513"])
    _, partner = await announce_token(clean_bus, Role.PARTNER, "rsud-bangil")
    path = f"/v1/cases/{CASE_ID}/verify"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=audit), base_url="http://audit"
    ) as client:
        proven = await client.get(path, headers=bearer(AUDITOR))
        hidden = await access_support.eventually(
            lambda: client.get(path, headers=bearer(elsewhere)), 404
        )
        refused = await access_support.eventually(
            lambda: client.get(path, headers=bearer(partner)), 403
        )
        unknown = await client.get("/v1/cases/3514-0000000000/verify", headers=bearer(AUDITOR))
    assert proven.status_code == 200, proven.text
    verdict = proven.json()
    assert verdict["ok"] is True
    assert verdict["entries_verified"] + verdict["entries_pending"] == 5
    assert verdict["checkpoint"]["size"] >= 6
    assert verdict["checkpoint"]["signed_at"]
    assert (hidden.status_code, refused.status_code, unknown.status_code) == (404, 403, 404)
