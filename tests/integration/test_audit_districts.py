"""Districts as tenants in audit: a token bound to 3514 reads 3514's cases and nothing of
3513's, on every route, and a 3513 case answers it exactly as a case that does not exist; a
province-level token reads both. Real NATS and PostgreSQL; audit in-process, as its own
PostgreSQL role."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import httpx
import nats
import pytest

from audit import report, signing
from audit.bootstrap import create_app
from audit.settings import AuditSettings
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.envelope import parse_envelope
from rujuk_contracts.events import Role, SopPublished, TokenIssued
from rujuk_runtime.bus import ensure_streams, event_headers
from tests.conftest import provisioned_database, remove_streams
from tests.integration.access_support import announce_token, bearer, eventually
from tests.integration.test_audit_consumer import eventually as until
from tests.integration.test_audit_consumer import subject_of
from tests.unit.test_audit_chain import case_story

pytestmark = pytest.mark.integration

OURS = "3514-AB12CD34EF"  # a case of Kabupaten Pasuruan
THEIRS = "3513-0123456789"  # a case of Kabupaten Probolinggo
UNKNOWN_OURS = "3514-0000000000"  # no such case, in 3514
UNKNOWN_THEIRS = "3513-ZZZZZZZZZZ"  # no such case, in 3513
START = datetime(2025, 3, 2, 1, 0, tzinfo=UTC)  # every invented event lies in [FROM, TO)
FROM, TO = START - timedelta(hours=1), START + timedelta(days=1)
OTHER_TOKEN = "aud-0c0c0c0c0c0c"  # an invented token whose issue lies in the range
KEY = signing.generate()


def sop_published(sop_id: str, district: str, minutes: int) -> CloudEvent:
    payload = SopPublished(
        sop_id=sop_id,
        district_code=district,
        sop_version=1,
        sha256="0" * 64,
        published_by="CONTOH koordinator",
    )
    return make_event(payload, source="/rujuk/routing", time=START + timedelta(minutes=minutes))


def invented_events() -> list[CloudEvent]:
    """Both districts' cases interleaved, each district's SOP, and a token event, in order."""
    cases = [
        event
        for pair in zip(case_story(THEIRS, start=START), case_story(OURS, start=START), strict=True)
        for event in pair
    ]
    token = make_event(
        TokenIssued(
            token_id=OTHER_TOKEN, role=Role.AUDITOR, secret_sha256="0" * 64, districts=["3513"]
        ),
        source="/rujuk/intake",
        time=START + timedelta(minutes=30),
    )
    return [
        sop_published("sop-3514", "3514", -10),
        sop_published("sop-3513", "3513", -5),
        *cases,
        token,
    ]


@dataclass
class Ledger:
    client: httpx.AsyncClient
    nats_url: str
    admin_url: str
    events: list[CloudEvent]  # as published, so in ledger order
    province: dict[str, str]
    auditor_3514: dict[str, str]
    coordinator_3514: dict[str, str]

    def ids(self, *, districts: set[str] | None) -> list[str]:
        """The invented events a token of ``districts`` (None: province) may read, in order."""
        if districts is None:
            return [event.id for event in self.events]
        kept = []
        for event in self.events:
            if event.type.startswith(("id.rujuk.case.", "id.rujuk.referral.")):
                district = event.subject[:4]
            elif event.type.startswith("id.rujuk.sop."):
                district = event.data["district_code"]
            else:
                continue
            if district in districts:
                kept.append(event.id)
        return kept


@pytest.fixture(scope="module")
async def ledger(nats_url: str, server_database_url: str) -> AsyncIterator[Ledger]:
    await remove_streams(nats_url)
    async with provisioned_database(server_database_url) as database:
        settings = AuditSettings(
            nats_url=nats_url,
            database_url=database.role_url("audit"),
            signing_key=KEY.private_base64(),
            checkpoint_every=4,
            checkpoint_interval_seconds=0.5,
            token_cache_seconds=0,
        )
        app = create_app(settings)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit")
            )
            tokens = {}
            for name, role, districts in (
                ("province", Role.AUDITOR, None),
                ("auditor_3514", Role.AUDITOR, ["3514"]),
                ("coordinator_3514", Role.COORDINATOR, ["3514"]),
            ):
                _, secret = await announce_token(nats_url, role, districts=districts)
                tokens[name] = bearer(secret)
                await eventually(partial(client.get, "/v1/parked", headers=tokens[name]), 200)
            events = invented_events()
            connection = await nats.connect(nats_url)
            try:
                js = connection.jetstream()
                await ensure_streams(js)
                for event in events:
                    await js.publish(
                        subject_of(event), event.to_bytes(), headers=event_headers(event.id, None)
                    )
            finally:
                await connection.close()
            found = Ledger(client, nats_url, database.admin_url, events, **tokens)

            async def recorded() -> bool:  # each subject's entries, as the province reads them
                expected = {OURS: 5, THEIRS: 5, "sop-3514": 1, "sop-3513": 1, OTHER_TOKEN: 1}
                for subject, count in expected.items():
                    response = await client.get(
                        f"/v1/cases/{subject}/history", headers=found.province
                    )
                    if response.status_code != 200 or len(response.json()["entries"]) != count:
                        return False
                latest = await client.get("/v1/checkpoints/latest", headers=found.province)
                verified = (await client.get("/v1/ledger/verify", headers=found.province)).json()
                return (
                    latest.status_code == 200 and latest.json()["size"] == verified["head"]["seq"]
                )

            await until(recorded)
            yield found


def as_seen(response: httpx.Response, *names: str) -> tuple[int, str | None, str]:
    """What a caller can tell of a response, with the id it asked about made anonymous."""
    text = response.text
    for name in names:
        text = text.replace(name, "<asked>")
    return response.status_code, response.headers.get("content-type"), text


DISTRICT_TOKENS = ["auditor_3514", "coordinator_3514"]


@pytest.mark.parametrize("who", DISTRICT_TOKENS)
async def test_a_case_of_another_district_reads_exactly_as_a_case_that_does_not_exist(
    ledger: Ledger, who: str
) -> None:
    client, headers = ledger.client, getattr(ledger, who)

    async def history(subject: str) -> httpx.Response:
        return await client.get(f"/v1/cases/{subject}/history", headers=headers)

    async def bundle(subject: str) -> httpx.Response:
        return await client.get(f"/v1/cases/{subject}/bundle", headers=headers)

    theirs = await history(THEIRS)
    assert as_seen(theirs, THEIRS) == as_seen(await history(UNKNOWN_OURS), UNKNOWN_OURS)
    assert as_seen(theirs, THEIRS) == as_seen(await history(UNKNOWN_THEIRS), UNKNOWN_THEIRS)
    assert theirs.status_code == 404
    assert theirs.json() == {"detail": report.no_history(THEIRS)}
    # Subjects that are no case id: an SOP by the district in its payload, a token never.
    for subject in ("sop-3513", OTHER_TOKEN):
        assert as_seen(await history(subject), subject) == as_seen(theirs, THEIRS), subject
    ours = await history(OURS)
    assert ours.status_code == 200
    assert [entry["event"]["subject"] for entry in ours.json()["entries"]] == [OURS] * 5
    assert (await history("sop-3514")).status_code == 200

    their_bundle = await bundle(THEIRS)
    assert their_bundle.status_code == 404
    assert as_seen(their_bundle, THEIRS) == as_seen(await bundle(UNKNOWN_THEIRS), UNKNOWN_THEIRS)
    # Its own district's case: the bundle holds that case's entries and hashes, nothing else.
    own = await bundle(OURS)
    assert own.status_code == 200, own.text
    assert {entry["case_id"] for entry in own.json()["entries"]} == {OURS}
    assert THEIRS not in own.text
    assert (await bundle(UNKNOWN_OURS)).status_code == 404
    for subject in ("sop-3514", OTHER_TOKEN):  # no case: province level only, as unknown
        assert as_seen(await bundle(subject), subject) == as_seen(their_bundle, THEIRS), subject


@pytest.mark.parametrize("who", DISTRICT_TOKENS)
async def test_a_replay_of_another_districts_case_is_that_of_an_unknown_case(
    ledger: Ledger, who: str
) -> None:
    headers = getattr(ledger, who)
    connection = await nats.connect(ledger.nats_url)
    try:
        subscription = await connection.subscribe("rujuk.replay.>")  # any replay at all
        await connection.flush()
        answers = {}
        for case_id, request_id in (
            (THEIRS, f"{who}-probe-theirs"),
            (UNKNOWN_OURS, f"{who}-probe-unknown"),
        ):
            response = await ledger.client.post(
                "/v1/replays", json={"case_id": case_id, "request_id": request_id}, headers=headers
            )
            answers[case_id] = as_seen(response, request_id)
        await connection.flush()  # what the server routed before the 202s has arrived
        published = subscription.pending_msgs
    finally:
        await connection.close()
    assert answers[THEIRS] == answers[UNKNOWN_OURS]
    assert answers[THEIRS][0] == 202
    assert '"count":0' in answers[THEIRS][2]
    assert published == 0


@pytest.mark.parametrize("who", DISTRICT_TOKENS)
async def test_a_district_tokens_time_range_replay_republishes_only_its_districts_events(
    ledger: Ledger, who: str
) -> None:
    expected = ledger.ids(districts={"3514"})
    assert len(expected) == 6  # the 3514 SOP and the 3514 case's five events
    assert await _replayed(ledger, getattr(ledger, who), f"{who}-range") == expected


async def test_a_province_token_reads_and_replays_both_districts(ledger: Ledger) -> None:
    client, headers = ledger.client, ledger.province
    for case_id in (OURS, THEIRS):
        history = await client.get(f"/v1/cases/{case_id}/history", headers=headers)
        assert [entry["event"]["subject"] for entry in history.json()["entries"]] == [case_id] * 5
        bundle = await client.get(f"/v1/cases/{case_id}/bundle", headers=headers)
        assert bundle.status_code == 200, bundle.text
        assert bundle.json()["case_id"] == case_id
    expected = ledger.ids(districts=None)
    assert len(expected) == 13  # both SOPs, both cases, the token event
    assert await _replayed(ledger, headers, "province-range") == expected


@pytest.mark.parametrize("path", ["/v1/ledger/verify", "/v1/checkpoints/latest", "/v1/parked"])
@pytest.mark.parametrize("who", DISTRICT_TOKENS)
async def test_integrity_facts_are_the_same_for_every_token(
    ledger: Ledger, who: str, path: str
) -> None:
    mine = await ledger.client.get(path, headers=getattr(ledger, who))
    province = await ledger.client.get(path, headers=ledger.province)
    assert mine.status_code == province.status_code == 200
    assert mine.json() == province.json()


async def test_a_failed_verify_names_no_case_of_another_district(ledger: Ledger) -> None:
    """An entry of the 3513 case altered: a 3514 auditor learns that the chain is broken and
    where, by seq and hash, exactly as the province does, and nothing about the case."""
    conn = await asyncpg.connect(ledger.admin_url, server_settings={"search_path": "audit"})
    try:
        seq, actor = await conn.fetchrow(
            "SELECT seq, actor FROM ledger WHERE case_id = $1 ORDER BY seq LIMIT 1", THEIRS
        )
        await _tamper(conn, "UPDATE ledger SET actor = '/rujuk/forger' WHERE seq = $1", seq)
        try:
            mine = await ledger.client.get("/v1/ledger/verify", headers=ledger.auditor_3514)
            province = await ledger.client.get("/v1/ledger/verify", headers=ledger.province)
        finally:
            await _tamper(conn, "UPDATE ledger SET actor = $2 WHERE seq = $1", seq, actor)
    finally:
        await conn.close()
    assert mine.status_code == province.status_code == 409
    assert mine.json() == province.json()
    assert mine.json()["failure"]["seq"] == seq
    assert THEIRS not in mine.text
    assert "forger" not in mine.text  # nor the altered content
    restored = await ledger.client.get("/v1/ledger/verify", headers=ledger.province)
    assert restored.status_code == 200


async def _tamper(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    async with conn.transaction():  # as a superuser can, and audit's own role cannot
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def _replayed(ledger: Ledger, headers: dict[str, str], request_id: str) -> list[str]:
    """Replay [FROM, TO) with ``headers``' token: the event ids re-published, in order, as a
    subscriber of ``rujuk.replay.<request_id>.>`` receives them."""
    connection = await nats.connect(ledger.nats_url)
    try:
        subscription = await connection.subscribe(f"rujuk.replay.{request_id}.>")
        await connection.flush()
        response = await ledger.client.post(
            "/v1/replays",
            json={"from": FROM.isoformat(), "to": TO.isoformat(), "request_id": request_id},
            headers=headers,
        )
        assert response.status_code == 202, response.text
        # JetStream acked every message before the 202, and routed it to this subscription
        # before acking; the flush's PONG follows them on this connection: all are queued.
        await connection.flush()
        count = subscription.pending_msgs
        messages = [await subscription.next_msg(timeout=5) for _ in range(count)]
    finally:
        await connection.close()
    assert count == response.json()["count"]
    return [parse_envelope(message.data).id for message in messages]
