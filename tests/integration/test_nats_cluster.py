"""The bus as a three-node NATS cluster (deploy/nats/cluster/node.conf, streams at three
replicas): losing a node mid-flow loses no report, no referral and no ledger entry."""

import asyncio
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest

from audit.cli import verify_ledger
from rujuk.receiver import WebhookReceiver
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_runtime.bus import ensure_streams, stream_configs
from rujuk_runtime.embedded import free_port, nats_server_binary, wait_for_port
from rujuk_runtime.nats_auth import NatsKeyring
from tests.conftest import fresh_database

pytestmark = pytest.mark.integration

NODE_CONFIG = Path(__file__).parents[2] / "deploy" / "nats" / "cluster" / "node.conf"


@dataclass
class NatsCluster:
    """Three nodes as deploy/ runs them: node.conf beside the keyring's server/ folder (as
    compose mounts it), clients over TLS, routes authenticated with a shared password."""

    folder: Path
    client_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    cluster_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    # As the docs ask: letters and digits, a letter first (token_urlsafe once gave a value
    # nats-server read as a date, and no node started).
    route_password: str = field(default_factory=lambda: "r" + secrets.token_hex(16))

    def __post_init__(self) -> None:
        self.keyring = NatsKeyring(self.folder).ensure().ensure_tls(["127.0.0.1"])
        shutil.copy(NODE_CONFIG, self.folder / "node.conf")

    @property
    def url(self) -> str:
        """The operator's URL to all three nodes."""
        plain = ",".join(f"tls://127.0.0.1:{port}" for port in self.client_ports)
        return self.keyring.ops_url(plain)

    async def connect(self, node: int) -> nats.aio.client.Client:
        """The operator, to one node, trusting the keyring's CA."""
        context = ssl.create_default_context(cafile=self.keyring.ca_file)
        return await nats.connect(self.url.split(",")[node], tls=context)

    def start(self, nodes: tuple[int, ...] = (0, 1, 2)) -> "NatsCluster":
        """Start these nodes (each knows the routes to all three)."""
        routes = {
            f"NATS_ROUTE_{n + 1}": f"nats-route://rujuk-route:{self.route_password}@127.0.0.1:{port}"
            for n, port in enumerate(self.cluster_ports)
        }
        for node in nodes:
            env = {
                **os.environ,
                **routes,
                "NATS_ROUTE_PASSWORD": self.route_password,
                "NATS_TLS_CERT_FILE": str(self.keyring.server_cert_file),
                "NATS_TLS_KEY_FILE": str(self.keyring.server_key_file),
                "NATS_SERVER_NAME": f"n{node + 1}",
                "NATS_CLIENT_PORT": str(self.client_ports[node]),
                "NATS_CLUSTER_PORT": str(self.cluster_ports[node]),
                "NATS_STORE_DIR": str(self.folder / f"n{node + 1}"),
            }
            log = (self.folder / f"n{node + 1}.log").open("ab")
            self.processes[node] = subprocess.Popen(
                [str(nats_server_binary()), "--config", str(self.folder / "node.conf"),
                 "--addr", "127.0.0.1"],
                env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            for node in nodes:
                wait_for_port(self.client_ports[node], 15, self.processes[node])
        except Exception:
            self.stop()  # never leave the nodes that did start behind
            raise
        return self

    def kill(self, node: int) -> None:
        self.processes[node].send_signal(signal.SIGKILL)
        self.processes[node].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(10)


BOOTSTRAP_TOKENS = 3  # operator, coordinator, auditor
VILLAGE_ASKED = "id.rujuk.case.village_agency_asked.v1"
VILLAGE_FOUND = "id.rujuk.case.village_agency_found.v1"
SHIPPED_SOPS = 2  # 3513 and 3514, announced in force by routing at start (sop.in_force)


async def file_reports(client: httpx.AsyncClient, url: str, count: int) -> list[str]:
    case_ids = []
    for number in range(count):
        response = await client.post(f"{url}/v1/reports", json=SAMPLE_REPORTS[number % 5])
        assert response.status_code == 202, response.text
        case_ids.append(response.json()["case_id"])
        await asyncio.sleep(0.05)
    return case_ids


async def test_losing_a_nats_node_mid_flow_loses_nothing(
    server_database_url: str, tmp_path: Path
) -> None:
    cluster = NatsCluster(tmp_path / "nats")
    cluster.start()
    try:
        async with fresh_database(server_database_url) as database_url:
            stack = Stack(
                tmp_path / "stack",
                external_nats_url=cluster.url,
                nats_keyring=cluster.keyring,
                external_database_url=database_url,
                # Backoff meant for partner endpoints must not outlast this test of the bus.
                extra_env={"RUJUK_STREAM_REPLICAS": "3", "NOTIFY_BACKOFF_CAP_SECONDS": "5"},
            )
            receiver = WebhookReceiver(stack.secrets()["webhook_signing_key"].encode())
            stack.extra_env["NOTIFY_WEBHOOK_BASE_URL"] = receiver.base_url
            client = httpx.AsyncClient(timeout=10, headers=stack.operator_headers())
            async with receiver.running(), client:
                await asyncio.to_thread(stack.start, 90)
                try:
                    intake = stack.services["intake"].url
                    before = await file_reports(client, intake, 10)
                    cluster.kill(0)  # the first node every client knows, mid-flow
                    after = await file_reports(client, intake, 10)
                    await wait_until_all_delivered(client, intake, before + after)
                    # 3513's picks by village add a referral once intake answers (or
                    # routing's timer does): wait for those, then count them all.
                    await wait_until_picks_resolved(database_url)
                    referrals = await wait_until_all_delivered(client, intake, before + after)
                    # Audit's consumers may have had their leader on the lost node: the
                    # ledger catches up once a new one is elected (seconds), so wait for it.
                    expected = (
                        2 * len(before + after)
                        + 2 * len(referrals)
                        + BOOTSTRAP_TOKENS
                        + SHIPPED_SOPS
                        + await ledger_count(database_url, VILLAGE_ASKED)
                    )
                    await wait_until_ledger_holds(database_url, expected)
                    assert stack.exited_services() == []
                finally:
                    await asyncio.to_thread(stack.stop)
            received = [d.event["data"]["referral_id"] for d in receiver.deliveries]
            assert sorted(set(received)) == sorted(referrals)  # every referral reached its partner
            assert len(received) == len(set(received))  # and none twice
            verdict = await verify_ledger(database_url)
            assert verdict.ok, verdict.failure
            # ... besides the stack's three bootstrap tokens (operator, coordinator, auditor),
            # announced by intake as token.issued
            tokens = await ledger_count(database_url, "id.rujuk.token.issued.v1")
            assert tokens == BOOTSTRAP_TOKENS
            assert await ledger_count(database_url, "id.rujuk.sop.in_force.v1") == SHIPPED_SOPS
            # ... and each pick's question once, answered by intake at most once
            questions = await ledger_questions(database_url)
            assert len(questions) == len(set(questions)) > 0
            answers = await ledger_count(database_url, VILLAGE_FOUND)
            assert answers <= len(questions)
            assert verdict.entries == expected + answers  # every event once, none twice
    finally:
        cluster.stop()


async def ledger_count(database_url: str, event_type: str | None = None) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM audit.ledger WHERE $1::text IS NULL OR event_type = $1",
            event_type,
        )
    finally:
        await conn.close()
    return count


async def ledger_questions(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event->'data'->>'question_id' AS q FROM audit.ledger WHERE event_type = $1",
            VILLAGE_ASKED,
        )
    finally:
        await conn.close()
    return [row["q"] for row in rows]


async def wait_until_picks_resolved(database_url: str, timeout: float = 90) -> None:
    """Until every pick by village routing asked about has its referral.requested (the case
    and service asked) in the ledger."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            unresolved = await conn.fetchval(
                "SELECT count(*) FROM audit.ledger q WHERE q.event_type = $1 AND NOT EXISTS ("
                "SELECT 1 FROM audit.ledger r WHERE r.event_type = $2 AND r.case_id = q.case_id "
                "AND r.event->'data'->>'service' = q.event->'data'->>'service')",
                VILLAGE_ASKED,
                "id.rujuk.referral.requested.v1",
            )
            if unresolved == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"after losing a node, {unresolved} picks by village unresolved")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def wait_until_ledger_holds(database_url: str, expected: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (entries := await ledger_count(database_url)) < expected:
        if time.monotonic() > deadline:
            pytest.fail(f"after losing a node, the ledger holds {entries} of {expected} events")
        await asyncio.sleep(0.5)


async def wait_until_all_delivered(
    client: httpx.AsyncClient, intake: str, case_ids: list[str], timeout: float = 90
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        referrals: list[str] = []
        stuck: dict[str, object] = {}
        for case_id in case_ids:
            status = (await client.get(f"{intake}/v1/cases/{case_id}")).json()
            states = [r["state"] for r in status["referrals"]]
            if status["status"] != "routed" or not states or set(states) != {"delivered"}:
                stuck[case_id] = (status["status"], states)
            referrals += [r["referral_id"] for r in status["referrals"]]
        if not stuck:
            return referrals
        if time.monotonic() > deadline:
            pytest.fail(f"after losing a node, not routed and delivered: {stuck}")
        await asyncio.sleep(0.5)


async def test_a_service_starting_before_the_cluster_has_a_jetstream_leader_waits_for_it(
    tmp_path: Path,
) -> None:
    """One node of three up: JetStream has no quorum and cannot answer. Creating the streams
    (what every service does as it starts) waits instead of failing, and completes, at three
    replicas, once the other two nodes join."""
    cluster = NatsCluster(tmp_path / "nats")
    cluster.start(nodes=(0,))
    try:
        connection = await cluster.connect(0)
        try:
            js = connection.jetstream()
            creating = asyncio.create_task(ensure_streams(js, replicas=3, wait=90))
            await asyncio.sleep(3)
            assert not creating.done(), creating  # no leader, no streams: still waiting
            await asyncio.to_thread(cluster.start, (1, 2))
            await asyncio.wait_for(creating, 90)
            for config in stream_configs(3):
                info = await js.stream_info(config.name)
                assert info.config.num_replicas == 3
        finally:
            await connection.close()
    finally:
        cluster.stop()
