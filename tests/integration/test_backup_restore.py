"""`rujuk backup` taken while reports keep coming, restored into a fresh stack (an empty
database, a NATS without rujuk's streams): every report accepted before the backup is there
and routed, the ledger verifies, routing carries on with new reports, and no partner receives
a referral twice on its NATS feed, nor a second referral for one decision by webhook."""

import asyncio
import contextlib
import json
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js.api import DeliverPolicy
from typer.testing import CliRunner

from audit.cli import case_history, verify_ledger
from notify.partners import ensure_partner_consumer
from routing.events import case_closed
from rujuk import cli as rujuk_cli
from rujuk.backup import BackupError, read_manifest, restore_backup, take_backup
from rujuk.receiver import WebhookReceiver
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_contracts import CloudEvent, parse_event, subjects
from rujuk_contracts.events import CaseClosed, CaseReported, CloseReason
from rujuk_runtime.bus import ensure_streams, event_headers
from rujuk_runtime.nats_auth import NatsKeyring, partner_durable
from rujuk_runtime.outbox import OUTBOX_COLUMNS, outbox_row
from rujuk_runtime.pull import PullConsumer
from rujuk_runtime.roles import SCHEMAS
from tests.conftest import ProvisionedDatabase, create_database, drop_database, remove_streams

pytestmark = pytest.mark.integration

REPORTS_PER_SECOND = 10
FEED_AGENCY = "uptppa-pasuruan"  # case management in Pasuruan: a referral for every 3514 case


class Filer:
    """Files sample reports at a steady rate; remembers each accepted case and when."""

    def __init__(self, client: httpx.AsyncClient, intake: str) -> None:
        self.client, self.intake = client, intake
        self.accepted: list[tuple[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def file_one(self, number: int) -> str:
        report = SAMPLE_REPORTS[number % len(SAMPLE_REPORTS)]
        response = await self.client.post(
            f"{self.intake}/v1/reports", json=report, headers={"Idempotency-Key": f"br-{number}"}
        )
        assert response.status_code == 202, response.text
        case_id: str = response.json()["case_id"]
        self.accepted.append((case_id, time.monotonic()))
        return case_id

    async def _run(self) -> None:
        number = 0
        while True:
            await self.file_one(number)
            number += 1
            await asyncio.sleep(1 / REPORTS_PER_SECOND)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def read_feed(nats_url: str, agency: str, received: list[str], *, until: set[str]) -> None:
    """Read the agency's durable feed as the partner does (fetch, acknowledge) until every
    referral in ``until`` came, keeping every referral id received, duplicates included."""
    connection = await nats.connect(nats_url)
    try:
        feed = await connection.jetstream().pull_subscribe_bind(
            partner_durable(agency), stream=subjects.PARTNER_STREAM
        )
        deadline = time.monotonic() + 30
        while not until <= set(received) and time.monotonic() < deadline:
            try:
                messages = await feed.fetch(100, timeout=1)
            except (
                TimeoutError
            ):  # nats-py raises its own, or asyncio's when the deadline passes first
                continue
            for message in messages:
                _, payload = parse_event(message.data)
                if referral_id := getattr(payload, "referral_id", None):
                    received.append(referral_id)
                await message.ack()
        # And whatever else is there once they are all in (a copy sent again, say).
        with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
            for message in await feed.fetch(100, timeout=1):
                _, payload = parse_event(message.data)
                if referral_id := getattr(payload, "referral_id", None):
                    received.append(referral_id)
                await message.ack()
    finally:
        await connection.close()


async def settled_referrals(client: httpx.AsyncClient, intake: str, case_id: str) -> list[Any]:
    """The case's referrals once each was delivered (or answered), as intake shows them."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"{intake}/v1/cases/{case_id}")
        assert response.status_code == 200, (case_id, response.text)
        referrals: list[Any] = response.json()["referrals"]
        if referrals and all(r["state"] != "requested" for r in referrals):
            return referrals
        assert time.monotonic() < deadline, f"case {case_id} not delivered: {referrals}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def stack_on(
    folder: Path, nats_url: str, keyring: NatsKeyring | None, database_url: str, webhooks: str
) -> AsyncIterator[Stack]:
    stack = Stack(
        folder, external_nats_url=nats_url, nats_keyring=keyring, external_database_url=database_url
    )
    stack.extra_env["NOTIFY_WEBHOOK_BASE_URL"] = webhooks
    await asyncio.to_thread(stack.start)
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


async def test_a_backup_taken_mid_run_restores_into_a_fresh_stack(
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path: Path,
) -> None:
    await remove_streams(nats_url)
    database_a = await create_database(server_database_url)
    database_b = await create_database(server_database_url)
    backup = tmp_path / "backup"
    received: list[str] = []  # the partner's feed, over both lives of the system
    try:
        secrets = Stack(tmp_path / "a").secrets()  # made once, kept: /etc/rujuk's part
        receiver = WebhookReceiver(secrets["webhook_signing_key"].encode())
        async with receiver.running():
            # --- the system runs; reports keep coming while the backup is taken ----------
            async with stack_on(
                tmp_path / "a", nats_url, nats_keyring, database_a, receiver.base_url
            ) as stack_a:
                client = httpx.AsyncClient(timeout=10, headers=stack_a.operator_headers())
                async with client:
                    filer = Filer(client, stack_a.services["intake"].url)
                    first = await filer.file_one(1000)
                    await settled_referrals(client, filer.intake, first)
                    await read_feed(nats_url, FEED_AGENCY, received, until=set())
                    filer.start()
                    await asyncio.sleep(1.0)
                    backup_began = time.monotonic()
                    backed_up = await asyncio.to_thread(
                        CliRunner().invoke,
                        rujuk_cli.app,
                        ["backup", str(backup), "--database-url", stack_a.database_url,
                         "--nats-url", stack_a.nats_url],
                    )  # fmt: skip
                    assert backed_up.exit_code == 0, backed_up.output
                    manifest = read_manifest(backup)
                    await asyncio.sleep(0.5)  # the system goes on after the backup...
                    await filer.stop()
            # ...until it is lost: NATS's store and the database with it.
            await remove_streams(nats_url)
            before_backup = [case for case, at in filer.accepted if at < backup_began]
            assert len(before_backup) >= 5

            # --- restored into a fresh NATS and an empty database, services stopped ------
            with pytest.raises(BackupError, match="not empty"):
                await take_backup(database_b, nats_url, backup)
            passwords = {schema: secrets[f"database_password_{schema}"] for schema in SCHEMAS}
            report = await restore_backup(backup, database_b, nats_url, passwords)
            assert set(report.streams) == set(manifest["streams"])
            assert "routing-case-reported" in report.consumers_rewound
            assert report.events_no_longer_in_stream == {}

            (tmp_path / "b").mkdir()  # its secrets are the old ones: /etc/rujuk put back
            shutil.copy(tmp_path / "a" / "dev-secrets.json", tmp_path / "b" / "dev-secrets.json")
            async with stack_on(
                tmp_path / "b", nats_url, nats_keyring, database_b, receiver.base_url
            ) as stack_b:
                client = httpx.AsyncClient(timeout=10, headers=stack_b.operator_headers())
                async with client:
                    intake = stack_b.services["intake"].url
                    after = [await Filer(client, intake).file_one(2000 + n) for n in range(2)]
                    decided: dict[str, list[Any]] = {}
                    for case_id in [first, *before_backup, *after]:
                        decided[case_id] = await settled_referrals(client, intake, case_id)
                    for_feed = {
                        r["referral_id"]
                        for referrals in decided.values()
                        for r in referrals
                        if r["agency_id"] == FEED_AGENCY
                    }
                    await read_feed(nats_url, FEED_AGENCY, received, until=for_feed)
                    ledger = {
                        case_id: await case_history(database_b, case_id)
                        for case_id in before_backup
                    }
                    verdict = await verify_ledger(database_b)
    finally:
        await drop_database(server_database_url, database_a)
        await drop_database(server_database_url, database_b)

    # Every report accepted before the backup is there, routed, and in the ledger.
    for case_id in before_backup:
        assert decided[case_id], case_id
        types = [entry.event_type for entry in ledger[case_id]]
        assert types.count(CaseReported.event_type()) == 1, (case_id, types)
    assert verdict.ok, verdict.failure
    # The partner's feed: every referral for it, each once, across the backup and restore.
    assert for_feed <= set(received)
    assert [r for r, n in Counter(received).items() if n > 1] == []
    # By webhook: each decision's referrals and no other (a re-sent one has the same id).
    by_webhook: dict[str, set[str]] = {}
    for delivery in receiver.deliveries:
        by_webhook.setdefault(delivery.event["subject"], set()).add(
            delivery.event["data"]["referral_id"]
        )
    for case_id, referrals in decided.items():
        assert by_webhook.get(case_id, set()) <= {r["referral_id"] for r in referrals}, case_id


# --- each reconciliation on its own, made to happen (in a live backup they need a race) ------


async def nothing(batch: list[Any]) -> None:
    return None


def closed(number: int) -> CloudEvent:
    return case_closed(
        f"3514-{number:010d}", "coordinator:tok", CloseReason.OTHER, None, datetime.now(UTC), None
    )


async def test_a_restore_rewinds_service_consumers_and_sends_nothing_twice(
    database: ProvisionedDatabase, clean_bus: str, server_database_url: str, tmp_path: Path
) -> None:
    connection = await nats.connect(clean_bus)
    js = connection.jetstream()
    try:
        await ensure_streams(js)
        events = [closed(n) for n in range(1, 12)]
        for event in events[:10]:  # on the bus; the 11th only staged
            await js.publish(
                CaseClosed.subject(), event.to_bytes(), headers=event_headers(event.id, None)
            )
        service = PullConsumer(
            CaseClosed.subject(), "intake-projection", subjects.EVENTS_STREAM, process=nothing
        )
        await js.add_consumer(subjects.EVENTS_STREAM, config=service.config())
        handled = await js.pull_subscribe_bind("intake-projection", stream=subjects.EVENTS_STREAM)
        for message in await handled.fetch(6, timeout=5):
            await message.ack()
        # Staged in routing's outbox: the 9th and 10th published (the relay's delete not yet
        # committed when the database's snapshot was taken), the 11th not yet.
        conn = await asyncpg.connect(database.admin_url)
        try:
            for event in events[8:]:
                await conn.execute(
                    f"INSERT INTO routing.outbox ({OUTBOX_COLUMNS}) VALUES ($1, $2, $3, $4, $5)",  # noqa: S608
                    *outbox_row(event),
                )
        finally:
            await conn.close()
        agency = "rsud-bangil"
        await ensure_partner_consumer(js, agency)
        feed = [closed(n) for n in range(20, 24)]
        sequences = []
        for event in feed:
            ack = await js.publish(
                subjects.partner_outbound(agency, "referral.requested"), event.to_bytes(),
                headers=event_headers(event.id, None),
            )  # fmt: skip
            sequences.append(ack.seq)
        partner = await js.pull_subscribe_bind(
            partner_durable(agency), stream=subjects.PARTNER_STREAM
        )
        for message in await partner.fetch(2, timeout=5):  # the partner has read 1 and 2
            await message.ack()
        # Notify's database: the 1st sent; the 2nd and 3rd published but their sends not yet
        # recorded when the database's snapshot was taken; the 4th published after it.
        conn = await asyncpg.connect(database.admin_url)
        try:
            for number, event in enumerate(feed[:3]):
                await conn.execute(
                    "INSERT INTO notify.deliveries (referral_id, case_id, agency_id, event_id, "
                    "event_type, body) VALUES ($1, $2, $3, $4, $5, $6)",
                    f"r{number}", event.subject, agency, event.id, event.type, b"{}",
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO notify.sends (referral_id, agency_id, channel, state) "
                    "VALUES ($1, $2, 'nats', $3)",
                    f"r{number}", agency, "done" if number == 0 else "pending",
                )  # fmt: skip
        finally:
            await conn.close()

        manifest_file = tmp_path / "backup" / "manifest.json"
        await take_backup(database.admin_url, clean_bus, tmp_path / "backup")
        # As if the backup had read the projection's floor at 3 (4-6 handled, and committed,
        # only after the database's snapshot), and the database's snapshot came between the
        # partner's 3rd and 4th messages.
        manifest = json.loads(manifest_file.read_text())
        for position in manifest["consumers"]:
            if position["durable"] == "intake-projection":
                position["ack_floor"] = 3
        manifest["partner_last_seq_at_snapshot"] = sequences[2]
        manifest_file.write_text(json.dumps(manifest))
    finally:
        await connection.close()

    await remove_streams(clean_bus)
    empty = await create_database(server_database_url)
    try:
        report = await restore_backup(tmp_path / "backup", empty, clean_bus, database.passwords)
        conn = await asyncpg.connect(empty)
        try:
            staged = await conn.fetch("SELECT event_id FROM routing.outbox")
        finally:
            await conn.close()
        connection = await nats.connect(clean_bus)
        js = connection.jetstream()
        try:
            rewound = await js.consumer_info(subjects.EVENTS_STREAM, "intake-projection")
            feed_left = await js.consumer_info(subjects.PARTNER_STREAM, partner_durable(agency))
            await service.start(js)  # the service starts on the rewound consumer, and keeps it
            kept = await js.consumer_info(subjects.EVENTS_STREAM, "intake-projection")
            await service.stop()
        finally:
            await connection.close()
    finally:
        await drop_database(server_database_url, empty)

    assert [row["event_id"] for row in staged] == [events[10].id]
    assert report.outbox_rows_already_published == 2
    assert report.consumers_rewound == {"intake-projection": 4}
    assert rewound.num_pending == 7  # 4 to 10 again; the inbox skips what the database has
    assert kept.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
    assert kept.config.opt_start_seq == 4
    # Notify sends the 2nd, 3rd and 4th again: the 3rd and 4th, unread, go from the feed (the
    # partner gets each once); the 2nd, read already, reaches the partner twice (same id).
    assert report.partner_messages_withdrawn == 2
    assert report.partner_messages_acknowledged_after_backup == 1
    assert feed_left.num_pending == 0
