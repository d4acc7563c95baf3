"""End to end over a real nats-server and PostgreSQL: the four services as separate processes,
reports filed over HTTP, referrals received by a webhook partner, every event in the ledger."""

import asyncio
import json
import os
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import nats
import pytest
from typer.testing import CliRunner, Result

from audit.cli import case_history, verify_ledger
from intake import store as intake_store
from intake.cli import connect as intake_connect
from notify.channels import partner_secret
from rujuk import cli as rujuk_cli
from rujuk.receiver import WebhookReceiver
from rujuk.samples import IDENTIFYING_IN_SAMPLES, SAMPLE_REPORTS
from rujuk.stack import SERVICES, Stack
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.events import CaseReported, DeclineReason, ReferralDeclined, Role
from rujuk_runtime.bus import DLQ_REASON_HEADER
from rujuk_runtime.embedded import free_port
from rujuk_runtime.nats_auth import NatsKeyring
from rujuk_runtime.roles import DatabaseRoles, database_name
from tests import contract_support, named_metrics, node_support
from tests.conftest import fresh_database, remove_streams
from tests.integration.access_support import eventually
from tests.integration.test_free_text import readable_rows

pytestmark = pytest.mark.integration


@dataclass
class Running:
    stack: Stack
    receiver: WebhookReceiver
    client: httpx.AsyncClient
    case_ids: list[str]

    @property
    def intake(self) -> str:
        return self.stack.services["intake"].url


@pytest.fixture(scope="module")
async def running(
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Running]:
    await remove_streams(nats_url)
    async with fresh_database(server_database_url) as database_url:
        stack = Stack(
            tmp_path_factory.mktemp("stack"),
            external_nats_url=nats_url,
            nats_keyring=nats_keyring,
            external_database_url=database_url,
        )
        receiver = WebhookReceiver(stack.secrets()["webhook_signing_key"].encode())
        stack.extra_env["NOTIFY_WEBHOOK_BASE_URL"] = receiver.base_url
        client = httpx.AsyncClient(timeout=10, headers=stack.operator_headers())
        async with receiver.running(), client:
            await asyncio.to_thread(stack.start)
            try:
                case_ids = []
                for number, report in enumerate(SAMPLE_REPORTS):
                    response = await client.post(
                        f"{stack.services['intake'].url}/v1/reports",
                        json=report,
                        headers={"Idempotency-Key": f"e2e-{number}"},
                    )
                    assert response.status_code == 202, response.text
                    case_ids.append(response.json()["case_id"])
                yield Running(stack, receiver, client, case_ids)
            finally:
                await asyncio.to_thread(stack.stop)


async def case_status(run: Running, case_id: str) -> dict[str, Any]:
    response = await run.client.get(f"{run.intake}/v1/cases/{case_id}")
    assert response.status_code == 200
    status: dict[str, Any] = response.json()
    return status


async def wait_until_delivered(run: Running, case_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await case_status(run, case_id)
        referrals = status["referrals"]
        if referrals and all(r["state"] == "delivered" for r in referrals):
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"case {case_id} not delivered in {timeout}s: {status}")
        await asyncio.sleep(0.2)


async def wait_for_ledger(run: Running, case_id: str, count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        entries = await case_history(run.stack.database_url, case_id)
        if len(entries) >= count:
            return entries
        if time.monotonic() > deadline:
            pytest.fail(f"case {case_id}: {len(entries)} ledger entries, expected {count}")
        await asyncio.sleep(0.2)


async def test_every_referral_reaches_its_partner_webhook_once_and_signed(running: Running) -> None:
    expected: dict[str, str] = {}
    for case_id in running.case_ids:
        status = await wait_until_delivered(running, case_id)
        assert status["status"] == "routed"
        expected.update({r["referral_id"]: r["agency_id"] for r in status["referrals"]})
    deadline = time.monotonic() + 10
    while running.receiver.referral_ids() != set(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    received = {d.event["data"]["referral_id"]: d.agency_id for d in running.receiver.deliveries}
    assert received == expected  # each referral reached the agency it names, and no other
    assert len(running.receiver.deliveries) == len(expected)  # none twice
    assert running.receiver.rejected == 0  # every signature verified
    assert all(d.webhook_id == d.event["id"] for d in running.receiver.deliveries)


async def test_every_event_of_every_case_is_in_the_ledger_once_and_it_verifies(
    running: Running,
) -> None:
    for case_id in running.case_ids:
        status = await wait_until_delivered(running, case_id)
        referrals = len(status["referrals"])
        entries = await wait_for_ledger(running, case_id, 2 + 2 * referrals)
        types = [e.event_type for e in entries]
        assert types[0] == CaseReported.event_type()
        assert types.count("id.rujuk.referral.requested.v1") == referrals
        assert types.count("id.rujuk.referral.delivered.v1") == referrals
        assert len({e.event_id for e in entries}) == len(entries)
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    verdict = await verify_ledger(running.stack.database_url)
    assert verdict.ok, verdict.failure
    assert verdict.entries >= sum(2 for _ in running.case_ids)


async def test_every_metric_an_alert_or_dashboard_reads_is_one_a_service_exports(
    running: Running,
) -> None:
    """deploy/prometheus's rules and deploy/grafana's dashboards query only metrics that the
    services, started as `rujuk up` starts them, expose at /metrics: a renamed or dropped
    metric would leave an alert that can never fire or a panel that stays empty."""
    for case_id in running.case_ids:
        await wait_until_delivered(running, case_id)
    exported: set[str] = set(named_metrics.PROMETHEUS_OWN)
    for name in ("intake", "routing", "notify", "audit"):
        response = await running.client.get(f"{running.stack.services[name].url}/metrics")
        assert response.status_code == 200, name
        exported |= named_metrics.exposed_names(response.text)
    queried = {
        **{f"rule {k}": v for k, v in named_metrics.rule_expressions().items()},
        **{f"dashboard {k}": v for k, v in named_metrics.dashboard_expressions().items()},
    }
    missing = {
        where: sorted(named_metrics.names_in(expression) - exported)
        for where, expression in queried.items()
        if named_metrics.names_in(expression) - exported
    }
    assert missing == {}
    assert len(queried) > 20


async def test_each_service_connects_to_postgresql_as_its_own_role(running: Running) -> None:
    admin = await asyncpg.connect(running.stack.database_url)
    try:
        rows = await admin.fetch(
            "SELECT DISTINCT a.application_name, a.usename, r.rolsuper FROM pg_stat_activity a "
            "JOIN pg_roles r ON r.oid = a.usesysid "
            "WHERE a.datname = current_database() AND a.application_name LIKE 'rujuk-%'"
        )
    finally:
        await admin.close()
    roles = DatabaseRoles(database_name(running.stack.database_url))
    users: dict[str, set[str]] = {}
    for row in rows:
        users.setdefault(row["application_name"], set()).add(row["usename"])
        assert not row["rolsuper"], dict(row)
    for name in SERVICES:  # each keeps a pooled connection (the console: its sessions)
        assert users[f"rujuk-{name}"] == {roles.runtime(name)}


def command(args: list[str]) -> Result:
    """`rujuk ARGS`, in a process environment of its own as if it were a process of its own."""
    saved = dict(os.environ)
    try:
        return CliRunner().invoke(rujuk_cli.app, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_rujuk_commands_reach_the_running_stack_as_their_services_role(
    running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `rujuk audit verify` and `rujuk token list` do while `rujuk up` runs: they find it
    through its connection file (0600, no administrator in it), as audit's and intake's role."""
    connection_file = running.stack.connection_file
    assert stat.S_IMODE(connection_file.stat().st_mode) == 0o600
    assert urlsplit(running.stack.database_url).password not in connection_file.read_text()
    (tmp_path / ".rujuk").mkdir()
    (tmp_path / ".rujuk" / "up").symlink_to(running.stack.folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    verify, tokens = command(["audit", "verify"]), command(["token", "list"])
    assert verify.exit_code == 0, verify.output
    assert "entries" in verify.output
    # ...and the signed heads on RUJUK_AUDIT, which audit's NATS user may read.
    assert "heads read from: the database, stream RUJUK_AUDIT" in verify.output
    assert tokens.exit_code == 0, tokens.output
    assert "operator" in tokens.output


async def test_partner_nats_feed_carries_its_own_referrals(running: Running) -> None:
    status = await wait_until_delivered(running, running.case_ids[0])
    agency = status["referrals"][0]["agency_id"]
    connection = await nats.connect(running.stack.nats_url)
    try:
        js = connection.jetstream()
        subscription = await js.pull_subscribe(
            subjects.partner_outbound_wildcard(agency), durable=None, stream=subjects.PARTNER_STREAM
        )
        messages = await subscription.fetch(100, timeout=5)
        events = [parse_event(m.data)[1] for m in messages]
    finally:
        await connection.close()
    mine = {r["referral_id"] for r in status["referrals"] if r["agency_id"] == agency}
    feed = {getattr(e, "referral_id", None) for e in events}
    assert mine <= feed
    assert all(getattr(e, "agency_id", None) == agency for e in events)


async def test_every_event_the_services_publish_matches_the_published_contract(
    running: Running,
) -> None:
    """Every message the services put on the bus in this run (internal events, the partners'
    feeds, checkpoints, dead letters): its subject is a channel of contracts/schemas/
    asyncapi.json, its NATS headers are the ones that channel's message declares, and a
    CloudEvent validates against the published JSON Schema of its type. Runs before the tests
    below publish anything themselves (a partner's reply, garbage)."""
    for case_id in running.case_ids:
        status = await wait_until_delivered(running, case_id)
        await wait_for_ledger(running, case_id, 2 + 2 * len(status["referrals"]))
    problems: list[str] = []
    seen: dict[str, int] = {}
    connection = await nats.connect(running.stack.nats_url)
    try:
        for message in await every_message(connection.jetstream()):
            channel = contract_support.channel_of(message.subject)
            if channel is None:
                problems.append(f"{message.subject}: no channel in the AsyncAPI document")
                continue
            seen[channel] = seen.get(channel, 0) + 1
            headers = dict(message.headers or {})
            content_type = headers.get("Content-Type", "")
            if (
                channel.startswith("internal.")
                and "messages" not in contract_support.asyncapi()["channels"][channel]
            ):
                continue  # dead letters, checkpoints, replays: their own formats
            problems += [
                f"{message.subject} headers: {p}"
                for p in contract_support.header_errors(channel, headers, content_type)
            ]
            if content_type == "application/cloudevents+json":
                event = json.loads(message.data)
                problems += [
                    f"{message.subject} {event.get('type')}: {p}"
                    for p in contract_support.schema_errors(event)
                ]
                if headers.get("Nats-Msg-Id") != event.get("id"):
                    problems.append(f"{message.subject}: Nats-Msg-Id is not the event id")
    finally:
        await connection.close()
    assert problems == []
    assert seen.get("partner.out.referral.requested")
    for kind in ("case.reported", "case.routed", "referral.requested", "referral.delivered"):
        assert seen.get(f"internal.{kind}.v1"), kind


async def every_message(js: nats.js.JetStreamContext) -> list[Any]:
    """Every message now in every stream, read without a durable consumer."""
    found: list[Any] = []
    for info in await js.streams_info():
        stream, wanted = info.config.name, info.state.messages
        for wildcard in info.config.subjects or []:
            if not wanted:
                break
            subscription = await js.pull_subscribe(wildcard, durable=None, stream=stream)
            while wanted:
                try:
                    messages = await subscription.fetch(500, timeout=2)
                except (
                    TimeoutError
                ):  # nats-py raises its own, or asyncio's when the deadline passes first
                    break
                found += messages
                wanted -= len(messages)
            await subscription.unsubscribe()
    return found


# Issue 18: what testers typed into purposes, notes and reasons. Every sample's identifying
# string at once, into every free-text field there is.
TYPED = " / ".join(IDENTIFYING_IN_SAMPLES)


async def type_identifying_data_into_every_free_text_field(run: Running) -> str:
    """As a partner and the coordinator would: a decline's note (at intake, and straight into
    a NATS reply's deprecated `note`, and an HTTP reply's), a disclosure's note, a close's
    note, an erasure's note; then the case is erased. Returns the erased case's id."""
    case_id = run.case_ids[0]
    status = await wait_until_delivered(run, case_id)
    referral = status["referrals"][0]
    agency, referral_id = referral["agency_id"], referral["referral_id"]
    conn = await intake_connect(run.stack.database_url)
    try:
        _, secret = await intake_store.create_token(conn, Role.PARTNER, agency_id=agency)
    finally:
        await conn.close()
    partner = {"Authorization": f"Bearer {secret}"}
    coordinator = {"Authorization": f"Bearer {run.stack.secrets()['coordinator_token']}"}
    notify = run.stack.services["notify"].url
    notes = f"{run.intake}/v1/cases/{case_id}/notes"

    async def note(kind: str, headers: dict[str, str]) -> str:
        written = await run.client.post(notes, json={"kind": kind, "text": TYPED}, headers=headers)
        assert written.status_code == 201, written.text
        return str(written.json()["note_id"])

    reply_url = f"{notify}/v1/referrals/{referral_id}/replies"
    typed_reply = {"reply": "decline", "reason": "other", "note": TYPED}
    refused = await eventually(  # 401 until notify projects the new token
        lambda: run.client.post(reply_url, json=typed_reply, headers=partner), 422
    )
    assert refused.json()["detail"][0]["field"] == "note"
    disclosure_note = await note("disclosure_note", partner)
    details = await run.client.get(
        f"{run.intake}/v1/cases/{case_id}/details",
        params={"purpose": "first_contact", "note_ref": disclosure_note},
        headers=partner,
    )
    assert details.status_code == 200, details.text

    connection = await nats.connect(run.stack.nats_url)
    try:  # over NATS, as the partner publishes: refused, and erased from the partner stream
        js = connection.jetstream()
        refusals = await js.subscribe(
            subjects.partner_outbound(agency, "reply.refused"),
            stream=subjects.PARTNER_STREAM,
            ordered_consumer=True,
        )
        declined = ReferralDeclined(case_id=case_id, referral_id=referral_id, agency_id=agency,
                                    reason=DeclineReason.OTHER, note=TYPED[:280])  # fmt: skip
        sent = await js.publish(
            subjects.partner_inbound(agency, "decline"),
            make_event(declined, source=subjects.partner_source(agency)).to_bytes(),
        )
        await refusals.next_msg(timeout=15)
        deadline = time.monotonic() + 15
        while True:
            try:
                await js.get_msg(subjects.PARTNER_STREAM, sent.seq)
            except nats.js.errors.NotFoundError:
                break
            assert time.monotonic() < deadline, "the typed reply is still in the partner stream"
            await asyncio.sleep(0.2)
    finally:
        await connection.close()

    decline_note = await note("decline_note", partner)
    with_ref = {"reply": "decline", "reason": "other", "note_ref": decline_note}
    assert (await run.client.post(reply_url, json=with_ref, headers=partner)).status_code == 202
    read_back = await run.client.get(f"{notes}/{decline_note}", headers=coordinator)
    assert read_back.json()["text"] == TYPED
    close_note = await note("close_note", coordinator)
    closing = await run.client.post(
        f"{run.stack.services['routing'].url}/v1/cases/{case_id}/close",
        json={"reason": "survivor_withdrew", "note_ref": close_note},
        headers=coordinator,
    )
    assert closing.status_code == 409  # its referrals are open: typed all the same
    erased = await run.client.post(
        f"{run.intake}/v1/cases/{case_id}/erase",
        json={"reason": "survivor_request", "note": TYPED},
        headers=coordinator,
    )
    assert erased.status_code == 200, erased.text
    gone = await run.client.get(f"{notes}/{decline_note}", headers=coordinator)
    assert gone.status_code == 410
    await wait_for_ledger_type(run, case_id, "id.rujuk.case.erased.v1")
    return case_id


async def wait_for_ledger_type(run: Running, case_id: str, event_type: str) -> None:
    deadline = time.monotonic() + 30
    while event_type not in {e.event_type for e in await case_history(run.stack.database_url,
                                                                      case_id)}:  # fmt: skip
        assert time.monotonic() < deadline, f"no {event_type} of {case_id} in the ledger"
        await asyncio.sleep(0.2)


async def test_no_identifying_data_in_events_logs_or_database(running: Running) -> None:
    for case_id in running.case_ids:
        await wait_until_delivered(running, case_id)
    await type_identifying_data_into_every_free_text_field(running)
    leaks: list[str] = []
    connection = await nats.connect(running.stack.nats_url)
    try:
        js = connection.jetstream()
        searched: dict[str, int] = {}
        for info in await js.streams_info():  # every stream: events, partner feeds, DLQ, ...
            stream, wanted = info.config.name, info.state.messages
            if not wanted:
                continue
            for wildcard in info.config.subjects or []:
                subscription = await js.pull_subscribe(wildcard, durable=None, stream=stream)
                while searched.get(stream, 0) < wanted:
                    try:
                        messages = await subscription.fetch(500, timeout=2)
                    except (
                        TimeoutError
                    ):  # nats-py raises its own, or asyncio's when the deadline passes first
                        break
                    searched[stream] = searched.get(stream, 0) + len(messages)
                    leaks += [
                        f"{stream}: {m.subject}"
                        for m in messages
                        if _leaks(m.data.decode(errors="replace"))
                    ]
        assert searched.get(subjects.EVENTS_STREAM)
        assert searched.get(subjects.PARTNER_STREAM)
    finally:
        await connection.close()
    for service in running.stack.services.values():
        text = service.log_file.read_text()
        assert text.strip(), f"{service.name} wrote no log"
        if _leaks(text):
            leaks.append(f"log of {service.name}")
    dump = _pg_dump(running.stack.database_url)
    assert "CREATE TABLE intake.vault" in dump
    assert "CREATE TABLE intake.case_notes" in dump
    if _leaks(dump):
        leaks.append("database dump")
    # A dump shows bytea as hex: every value as a SELECT reads it, bytes as bytes, too.
    for value in await readable_rows(running.stack.database_url):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if _leaks(text):
            leaks.append(f"a database row: {text[:80]!r}")
    assert leaks == []


async def test_garbage_on_a_subject_is_parked_and_the_next_report_still_flows(
    running: Running,
) -> None:
    connection = await nats.connect(running.stack.nats_url)
    try:
        js = connection.jetstream()
        await js.publish(CaseReported.subject(), b"\x00not json", headers={"Nats-Msg-Id": "junk-1"})
        response = await running.client.post(f"{running.intake}/v1/reports", json=SAMPLE_REPORTS[2])
        assert response.status_code == 202
        await wait_until_delivered(running, response.json()["case_id"])
        parked = await js.pull_subscribe(subjects.dead_letter("routing"), durable=None,
                                         stream=subjects.DLQ_STREAM)  # fmt: skip
        messages = await parked.fetch(10, timeout=5)
    finally:
        await connection.close()
    reasons = [m.headers[DLQ_REASON_HEADER] for m in messages if m.data == b"\x00not json"]
    assert reasons
    assert "not JSON" in reasons[0]
    for name in ("intake", "routing", "notify", "audit"):
        process = running.stack.services[name].process
        assert process is not None
        assert process.poll() is None, f"{name} died"


def _leaks(text: str) -> bool:
    return any(secret in text for secret in IDENTIFYING_IN_SAMPLES)


def _pg_dump(database_url: str) -> str:
    from rujuk_runtime.embedded import pg_binary

    result = subprocess.run(
        [str(pg_binary("pg_dump")), "--no-owner", database_url],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


# --- a partner agency's own client, written in Node.js from contracts/ and docs/ alone -------


async def test_a_partner_written_in_node_reads_its_feed_replies_and_verifies_webhooks(
    running: Running, tmp_path: Path
) -> None:
    """examples/partner-node against this stack, as an agency runs it: admitted with `rujuk
    partner creds`, it reads its referrals from its durable consumer, finds every event valid
    against contracts/schemas, acknowledges and accepts each, and routing records both answers;
    its webhook endpoint verifies what notify signed (a repeat is dropped, a forgery refused)."""
    node_support.ensure_example_installed()
    filed = await running.client.post(  # a fresh case: its webhooks are within the tolerance
        f"{running.intake}/v1/reports", json=SAMPLE_REPORTS[0], headers={"Idempotency-Key": "node"}
    )
    assert filed.status_code == 202, filed.text
    fresh = filed.json()["case_id"]
    status = await wait_until_delivered(running, fresh)
    agency = status["referrals"][0]["agency_id"]
    mine = {r["referral_id"] for r in status["referrals"] if r["agency_id"] == agency}
    seed_file = await admit_partner(running, agency, tmp_path)

    feed = await run_node(
        "feed.mjs",
        RUJUK_NATS_URL=running.stack.nats_public_url,
        RUJUK_AGENCY=agency,
        RUJUK_NKEY_SEED_FILE=str(seed_file),
        RUJUK_IDLE_SECONDS="2",
    )
    lines = [json.loads(line) for line in feed.splitlines()]
    summary = lines[-1]["summary"]
    read = {line["event"]: line for line in lines if "event" in line}
    assert summary["invalid"] == 0, lines
    assert summary["received"] == summary["valid"] == len(read) > 0
    assert all(line["msgId"] == event_id for event_id, line in read.items())
    referrals = [r["referral"] for r in read.values() if r["type"].endswith("requested.v1")]
    assert mine <= set(referrals)  # and the earlier cases' referrals to this agency
    assert summary["replied"] == 2 * len(referrals)

    fenced = await run_node(  # what docs/partners.md says a nats.js client may not do
        "checks/permissions.mjs",
        RUJUK_NATS_URL=running.stack.nats_public_url,
        RUJUK_AGENCY=agency,
        RUJUK_NKEY_SEED_FILE=str(seed_file),
    )
    assert json.loads(fenced) == {
        "own_durable_consumer": "allowed",
        "default_jetstream_manager": "denied",
        "ordered_consumer": "denied",
    }

    coordinator = {"Authorization": f"Bearer {running.stack.secrets()['coordinator_token']}"}
    routing = running.stack.services["routing"].url
    deadline = time.monotonic() + 15
    while True:
        listed = await running.client.get(
            f"{routing}/v1/referrals", params={"agency_id": agency}, headers=coordinator
        )
        answered = {r["referral_id"]: r for r in listed.json()["referrals"]}
        if all(answered[r]["state"] == "accepted" for r in mine):
            break
        assert time.monotonic() < deadline, answered
        await asyncio.sleep(0.2)
    for referral_id in mine:
        referral = answered[referral_id]
        assert referral["acknowledged_at"] <= referral["accepted_at"]

    await verify_webhooks_in_node(running, agency)


async def admit_partner(running: Running, agency: str, folder: Path) -> Path:
    """`rujuk partner creds AGENCY`, then wait until the server took the reloaded key."""
    keyring = running.stack.nats_keyring
    assert keyring is not None, "the session's NATS runs with a keyring"
    where = ["--keyring", str(keyring.folder), "--nats-url", running.stack.nats_url]
    result = command(["partner", "creds", agency, "--out", str(folder), *where])
    assert result.exit_code == 0, result.output
    seed_file = folder / f"{agency}.nk"
    deadline = time.monotonic() + 10
    while True:
        try:
            connection = await nats.connect(
                running.stack.nats_public_url,
                nkeys_seed_str=seed_file.read_text().strip(),
                inbox_prefix=f"_INBOX_{agency}".encode(),
                max_reconnect_attempts=0,
                allow_reconnect=False,
            )
        except Exception:
            assert time.monotonic() < deadline, "the partner's key was not taken"
            await asyncio.sleep(0.1)
            continue
        await connection.close()
        return seed_file


async def run_node(script: str, **env: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(node_support.NODE), script, cwd=node_support.EXAMPLE,
        env=node_support.node_env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (out + err).decode()
    return out.decode()


async def verify_webhooks_in_node(running: Running, agency: str) -> None:
    """Replay to the example's endpoint exactly what notify POSTed to this stack's receiver."""
    recent = time.time() - 240  # Standard Webhooks refuses a timestamp 5 minutes away
    signed = [
        d
        for d in running.receiver.deliveries
        if d.agency_id == agency and int(dict(d.webhook_headers)["webhook-timestamp"]) > recent
    ]
    assert signed
    port = free_port()
    secret = partner_secret(running.stack.secrets()["webhook_signing_key"].encode(), agency)
    process = await asyncio.create_subprocess_exec(
        str(node_support.NODE), "webhooks.mjs", cwd=node_support.EXAMPLE,
        env=node_support.node_env(RUJUK_WEBHOOK_SECRET=secret, PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        started = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=20))
        assert started == {"listening": port}
        url = f"http://127.0.0.1:{port}/webhooks/{agency}"
        async with httpx.AsyncClient(timeout=10) as client:

            async def post(body: bytes, headers: tuple[tuple[str, str], ...]) -> int:
                response = await client.post(url, content=body, headers=dict(headers))
                return response.status_code

            for delivery in signed:
                assert await post(delivery.body, delivery.webhook_headers) == 204
            first = signed[0]
            assert await post(first.body, first.webhook_headers) == 200  # a repeat: dropped
            forged = first.body.replace(b'"priority"', b'"Priority"', 1)
            assert await post(forged, first.webhook_headers) == 401
    finally:
        process.terminate()
        await process.wait()
