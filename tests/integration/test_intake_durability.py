"""Never lose a report: intake as a real process on a private nats-server that the tests stop,
restart (same port) and outlive, and a kill -9 of intake between commit and publish. Also: the
distinctive invented PII filed here appears in no event, log line or database dump."""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest

from intake import store
from intake.auth import Role
from intake.cli import connect
from rujuk.stack import Stack
from rujuk_contracts import parse_event, subjects
from rujuk_contracts.events import CaseReported
from rujuk_runtime.embedded import EmbeddedNats, pg_binary
from tests.conftest import provisioned_database
from tests.integration.sop_support import put_shipped_sops

pytestmark = pytest.mark.integration

# Invented; the NIK-shaped value has province code 99, which does not exist.
SECRETS = ["CONTOH Wulan Tanpa-Nyata", "9999777766665555", "+62 800 9876 5432",
           "Jl. Tidak Ada Nomor 404", "NARASI-RAHASIA-Zq93", "Dusun Imajiner"]  # fmt: skip


def report(number: int) -> dict[str, object]:
    return {
        "channel": "walk_in",
        "district_code": "3513",
        "village": SECRETS[5],
        "victim": {"name": f"{SECRETS[0]} {number}", "nik": SECRETS[1], "age_years": 15,
                   "sex": "female", "phone": SECRETS[2], "address": SECRETS[3]},
        "reporter": {"relationship": "teacher"},
        "incident": {"violence_types": ["psychological"], "narrative": SECRETS[4]},
    }  # fmt: skip


class Harness:
    def __init__(self, folder: Path, database_url: str) -> None:
        self.nats = EmbeddedNats(folder / "nats").start()
        self.stack = Stack(folder, external_nats_url=self.nats.ops_url,
                           nats_keyring=self.nats.keyring,
                           external_database_url=database_url)  # fmt: skip
        self.database_url = database_url
        self.headers: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self.stack.services["intake"].url

    async def start_intake(self) -> None:
        self.stack.start_service("intake")
        await asyncio.to_thread(self.stack.wait_healthy, 60, ("intake",))

    async def file(self, client: httpx.AsyncClient, count: int, first: int) -> list[str]:
        case_ids = []
        for number in range(first, first + count):
            response = await client.post(f"{self.url}/v1/reports", json=report(number),
                                         headers=self.headers)  # fmt: skip
            assert response.status_code == 202, response.text
            case_ids.append(response.json()["case_id"])
        return case_ids

    async def reported(self, expected: int, timeout: float = 40) -> list[str]:
        """Every `case.reported` case id on the stream (with repeats, if any), once
        ``expected`` are there and the outbox is empty."""
        deadline = time.monotonic() + timeout
        while True:
            connection = await nats.connect(self.nats.ops_url)
            try:
                js = connection.jetstream()
                info = await js.stream_info(subjects.EVENTS_STREAM)
                sub = await js.pull_subscribe(CaseReported.subject(), durable=None,
                                              stream=subjects.EVENTS_STREAM)  # fmt: skip
                messages = (
                    await sub.fetch(info.state.messages, timeout=5) if info.state.messages else []
                )
                case_ids = [parse_event(m.data)[0].subject for m in messages]
            except (
                TimeoutError
            ):  # nats-py raises its own, or asyncio's when the deadline passes first
                case_ids = []
            finally:
                await connection.close()
            conn = await connect(self.database_url)
            try:
                pending = await conn.fetchval("SELECT count(*) FROM outbox")
            finally:
                await conn.close()
            if len(case_ids) >= expected and pending == 0:
                return case_ids
            if time.monotonic() > deadline:
                pytest.fail(f"{len(case_ids)} of {expected} reports published, {pending} pending")
            await asyncio.sleep(0.3)


@pytest.fixture
async def harness(server_database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with provisioned_database(server_database_url) as database:
        conn = await connect(database.role_url("intake"))  # as `rujuk token create` does
        try:
            _, secret = await store.create_token(conn, Role.OPERATOR, label="durability test")
            await put_shipped_sops(conn)  # what intake learns from routing, not started here
        finally:
            await conn.close()
        h = Harness(tmp_path, database.admin_url)
        h.headers = {"Authorization": f"Bearer {secret}"}
        try:
            await h.start_intake()
            yield h
        finally:
            await asyncio.to_thread(h.stack.stop_service, "intake")
            h.nats.stop()


async def test_reports_filed_while_nats_is_down_are_published_once_it_is_back(
    harness: Harness,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        before = await harness.file(client, 3, 0)
        harness.nats.stop()
        during = await harness.file(client, 10, 3)  # all 202: the outbox holds them
        harness.nats.start()  # same port, same store
        published = await harness.reported(13)
    assert sorted(published) == sorted(before + during)  # each exactly once

    # The invented PII went nowhere but the vault: not in events, log or database dump.
    connection = await nats.connect(harness.nats.ops_url)
    try:
        sub = await connection.jetstream().pull_subscribe(
            subjects.EVENTS_WILDCARD, durable=None, stream=subjects.EVENTS_STREAM
        )
        events = b"".join(m.data for m in await sub.fetch(100, timeout=5))
    finally:
        await connection.close()
    log = harness.stack.services["intake"].log_file.read_text()
    dump = (
        await asyncio.to_thread(
            subprocess.run,
            [str(pg_binary("pg_dump")), "--no-owner", harness.database_url],
            capture_output=True,
            text=True,
            check=True,
        )
    ).stdout
    assert "CREATE TABLE intake.vault" in dump
    assert "report accepted" in log
    for place, text in (("events", events.decode()), ("log", log), ("dump", dump)):
        assert not [s for s in SECRETS if s in text], place


async def test_reports_committed_but_not_published_when_intake_is_killed_survive(
    harness: Harness,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        first = await harness.file(client, 2, 0)
        await harness.reported(2)
        harness.nats.stop()  # the relay cannot publish: commits pile up in the outbox
        stranded = await harness.file(client, 8, 2)
        harness.stack.stop_service("intake", kill=True)  # kill -9 between commit and publish
        harness.nats.start()
        await harness.start_intake()
        published = await harness.reported(10)
        after = await harness.file(client, 2, 10)
        published = await harness.reported(12)
    assert sorted(published) == sorted(first + stranded + after)  # none lost, none twice
