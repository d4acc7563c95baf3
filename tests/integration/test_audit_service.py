"""The audit service on real NATS and PostgreSQL: signed checkpoints published, parked messages
counted, the read API, and history re-published onto the bus."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from audit import bundle, note, signing
from audit.bootstrap import create_app
from audit.cli import app as audit_cli
from audit.cli import gather_heads, verify_ledger
from audit.settings import AuditSettings
from audit.verification import HeadPolicy
from intake.auth import new_secret
from rujuk_contracts import subjects
from rujuk_contracts.envelope import parse_envelope
from rujuk_contracts.events import Role
from rujuk_runtime.bus import ensure_streams, event_headers
from tests.integration import access_support
from tests.integration.access_support import announce_token, bearer
from tests.integration.test_audit_consumer import eventually, subject_of
from tests.unit.test_audit_chain import CASE_ID, case_story

pytestmark = pytest.mark.integration

OTHER_CASE_ID = "3513-0123456789"
KEY = signing.generate()
AUDITOR = new_secret()  # announced as intake would, by the fixture
AUTH = bearer(AUDITOR)


@pytest.fixture
async def running(database_url: str, clean_bus: str) -> AsyncIterator[tuple[FastAPI, str]]:
    settings = AuditSettings(
        nats_url=clean_bus,
        database_url=database_url,
        signing_key=KEY.private_base64(),
        checkpoint_every=4,
        checkpoint_interval_seconds=0.5,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await announce_token(clean_bus, Role.AUDITOR, secret=AUDITOR)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")
        async with client:
            await access_support.eventually(lambda: client.get("/v1/parked", headers=AUTH), 200)
        yield app, clean_bus


async def test_checkpoints_parked_counts_and_the_read_api(
    running: tuple[FastAPI, str], database_url: str
) -> None:
    app, nats_url = running
    events = [e for pair in zip(case_story(OTHER_CASE_ID), case_story(), strict=True) for e in pair]
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    await ensure_streams(js)
    for event in events:
        await js.publish(subject_of(event), event.to_bytes(), headers=event_headers(event.id, None))
    await js.publish(subjects.event_subject("case", "reported"), b"\x00 garbage")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")

    async def settled() -> bool:
        parked = (await client.get("/v1/parked", headers=AUTH)).json()
        latest = await client.get("/v1/checkpoints/latest", headers=AUTH)
        return parked["total"] == 1 and latest.status_code == 200 and latest.json()["size"] == 11

    try:
        await eventually(settled)
        anonymous = await client.get(f"/v1/cases/{CASE_ID}/history")
        wrong = await client.get(
            f"/v1/cases/{CASE_ID}/history", headers={"Authorization": "Bearer x"}
        )
        history = (await client.get(f"/v1/cases/{CASE_ID}/history", headers=AUTH)).json()
        missing = await client.get("/v1/cases/3514-0000000000/history", headers=AUTH)
        verify = await client.get("/v1/ledger/verify", headers=AUTH)
        latest = (await client.get("/v1/checkpoints/latest", headers=AUTH)).json()
        published = await js.get_last_msg(subjects.AUDIT_STREAM, subjects.CHECKPOINT_SUBJECT)
        health = await client.get("/healthz")
        # What `rujuk audit verify` reads besides the database: every head on the stream.
        copies, sources = await gather_heads(nats_url, [], [], None, database_url)
        outside = await verify_ledger(
            database_url, public_key=KEY.public_raw, policy=HeadPolicy(copies=copies)
        )
    finally:
        await client.aclose()
        await connection.close()

    assert (anonymous.status_code, wrong.status_code, missing.status_code) == (401, 401, 404)
    # The auditor's token.issued is in the ledger too (entry 1): its subject is the token id.
    assert [entry["seq"] for entry in history["entries"]] == [3, 5, 7, 9, 11]
    assert verify.status_code == 200
    assert verify.json()["ok"]
    assert verify.json()["parked"] == 1
    assert verify.json()["heads"] >= 1  # one per batch at most here
    assert verify.json()["latest_head"]["size"] == 11
    assert latest["public_key"] == KEY.public_base64()
    # Anyone with the log's vkey checks the published head: a C2SP checkpoint note.
    head = note.parse_note(published.data)
    checkpoint = note.parse_checkpoint(head.text)
    assert (checkpoint.size, checkpoint.root_hash.hex()) == (11, latest["root_hash"])
    assert note.verify_note(head, [note.parse_vkey(latest["vkey"])])
    assert latest["vkey"].startswith(latest["origin"] + "+")
    assert health.json()["checkpoints"] is True
    assert sources == ["stream RUJUK_AUDIT"]
    assert copies
    assert {copy.text for copy in copies} >= {published.data.decode()}
    assert outside.ok, outside.failure
    assert "stream RUJUK_AUDIT" in outside.latest_head.sources


async def test_a_case_bundle_downloads_and_verifies_offline_until_tampered_with(
    running: tuple[FastAPI, str], tmp_path: Path
) -> None:
    app, nats_url = running
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    for event in case_story():
        await js.publish(subject_of(event), event.to_bytes(), headers=event_headers(event.id, None))
    await connection.close()
    _, partner = await announce_token(nats_url, Role.PARTNER, "rsud-bangil")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")
    path = f"/v1/cases/{CASE_ID}/bundle"

    async def covered() -> bool:  # the case's entries lie under a signed head
        latest = await client.get("/v1/checkpoints/latest", headers=AUTH)
        return latest.status_code == 200 and latest.json()["size"] >= 6

    async with client:
        await eventually(covered)
        response = await client.get(path, headers=AUTH)
        missing = await client.get("/v1/cases/3514-0000000000/bundle", headers=AUTH)
        anonymous = await client.get(path)
        as_partner = await access_support.eventually(
            lambda: client.get(path, headers=bearer(partner)), 403
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="rujuk-audit-{CASE_ID}.json"'
    )
    assert (missing.status_code, anonymous.status_code, as_partner.status_code) == (404, 401, 403)
    result = bundle.verify_bundle(response.content, KEY.public_raw)
    assert result.ok, result.failure
    assert (result.case_id, result.case_entries) == (CASE_ID, 5)

    good = tmp_path / "bundle.json"
    good.write_bytes(response.content)
    public_key = KEY.public_base64()
    checked = CliRunner().invoke(
        audit_cli, ["verify-bundle", str(good), "--public-key", public_key]
    )
    assert checked.exit_code == 0, checked.output

    document = json.loads(response.content)
    third = document["entries"][2]
    third["event"] = third["event"].replace(CASE_ID, "3514-ZZZZZZZZZZ", 1)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    refused = CliRunner().invoke(
        audit_cli, ["verify-bundle", str(tampered), "--public-key", public_key]
    )
    assert refused.exit_code == 1
    assert not bundle.verify_bundle(tampered.read_bytes(), KEY.public_raw).ok
    assert f"#{third['seq']}" in refused.output or str(third["seq"]) in refused.output


async def test_a_replay_republishes_a_case_in_ledger_order(running: tuple[FastAPI, str]) -> None:
    app, nats_url = running
    events = [e for pair in zip(case_story(OTHER_CASE_ID), case_story(), strict=True) for e in pair]
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    await ensure_streams(js)
    for event in events:
        await js.publish(subject_of(event), event.to_bytes(), headers=event_headers(event.id, None))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")

    async def recorded() -> bool:
        response = await client.get(f"/v1/cases/{CASE_ID}/history", headers=AUTH)
        return response.status_code == 200 and len(response.json()["entries"]) == 5

    try:
        await eventually(recorded)
        refused = await client.post("/v1/replays", json={}, headers=AUTH)
        response = await client.post("/v1/replays", json={"case_id": CASE_ID}, headers=AUTH)
        request_id = response.json()["request_id"]
        info = await js.stream_info(subjects.REPLAY_STREAM)
        messages = [
            await js.get_msg(subjects.REPLAY_STREAM, seq)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    finally:
        await client.aclose()
        await connection.close()

    assert refused.status_code == 422
    assert response.status_code == 202
    assert response.json()["count"] == 5
    assert [parse_envelope(m.data).id for m in messages] == [e.id for e in events[1::2]]
    assert messages[0].subject == f"rujuk.replay.{request_id}.case.reported"
    assert messages[2].subject == f"rujuk.replay.{request_id}.referral.requested"
    assert messages[0].headers is not None
    assert messages[0].headers["Nats-Msg-Id"] == f"replay:{request_id}:{events[1].id}"
