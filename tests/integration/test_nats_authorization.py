"""The bus as `rujuk up` starts it (embedded NATS with the keyring's authorization, each
service as itself): no anonymous client, each service fenced to its own traffic, each partner
to its own feed and replies, and a partner admitted while the server runs."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from typer.testing import CliRunner

from notify.cli import app as partner_cli
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_contracts import subjects
from rujuk_runtime import nats_auth
from rujuk_runtime.bus import identity
from rujuk_runtime.embedded import EmbeddedNats
from rujuk_runtime.settings import ServiceSettings
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.integration

# The sample report from Paiton (Probolinggo): the shipped SOP refers it to both agencies below.
REPORT = SAMPLE_REPORTS[4]
AGENCY_A, AGENCY_B = "pkm-paiton", "polres-probolinggo-ppa"


@dataclass
class Running:
    stack: Stack
    partner_seeds: Path


@pytest.fixture(scope="module")
def running(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The stack exactly as `rujuk up` starts it: its own embedded NATS (PostgreSQL is the
    session's, on a fresh database)."""
    folder = tmp_path_factory.mktemp("secured-stack")
    database_url = asyncio.run(create_database(server_database_url))
    stack = Stack(
        folder / "up", external_nats_url=None, external_database_url=database_url, nats_keyring=None
    )
    try:
        stack.start()
        response = httpx.post(
            f"{stack.services['intake'].url}/v1/reports",
            json=REPORT,
            headers=stack.operator_headers(),
            timeout=10,
        )
        assert response.status_code == 202, response.text
        asyncio.run(wait_for_feeds(stack.nats_url, (AGENCY_A, AGENCY_B)))
        yield Running(stack, folder / "partner-seeds")
    finally:
        stack.stop()
        asyncio.run(drop_database(server_database_url, database_url))


async def wait_for_feeds(ops_url: str, agencies: tuple[str, ...]) -> None:
    """Until notify has put a referral on each agency's durable feed."""
    connection = await nats.connect(ops_url)
    js = connection.jetstream()
    try:
        async with asyncio.timeout(60):
            for agency in agencies:
                while True:
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        info = await js.consumer_info(
                            subjects.PARTNER_STREAM, nats_auth.partner_durable(agency)
                        )
                        if info.num_pending >= 1:
                            break
                    await asyncio.sleep(0.2)
    finally:
        await connection.close()


def admit(running: Running, agency: str) -> str:
    """`rujuk partner creds AGENCY` against the running stack: the seed it wrote."""
    keyring = running.stack.nats_keyring
    assert keyring is not None
    result = CliRunner().invoke(
        partner_cli,
        ["creds", agency, "--out", str(running.partner_seeds)],
        env={"RUJUK_NATS_KEYRING": str(keyring.folder), "NATS_URL": running.stack.nats_url},
    )
    assert result.exit_code == 0, result.output
    assert "admitted by the running NATS server" in result.output
    handout = json.loads(result.output[result.output.index("{") :])
    assert handout["nats_url"] == running.stack.nats_public_url  # the real one, no password
    assert keyring.ops_password() not in result.output
    seed = (running.partner_seeds / f"{agency}.nk").read_text().strip()
    assert seed not in result.output
    return seed


@contextlib.asynccontextmanager
async def connected(
    url: str, *, seed: str | None = None, inbox_prefix: str = "_INBOX"
) -> AsyncIterator[tuple[Client, list[str]]]:
    """A client whose asynchronous errors (the server's permission refusals) are kept."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    options = {"nkeys_seed_str": seed} if seed else {}
    connection = await nats.connect(
        url, inbox_prefix=inbox_prefix, error_cb=on_error, allow_reconnect=False, **options
    )
    try:
        yield connection, errors
    finally:
        await connection.close()


async def violation(errors: list[str], needle: str) -> None:
    """The server said 'permissions violation' about ``needle``."""
    try:
        async with asyncio.timeout(5):
            while not any("permissions violation" in e and needle.lower() in e for e in errors):
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"no permissions violation about {needle!r}; the server said: {errors}")


async def test_no_anonymous_client_and_no_unknown_key_gets_in(running: Running) -> None:
    url = running.stack.nats_public_url
    assert "authorization violation" in await refusal(url)
    stranger = nats_auth.new_seed()  # a well-formed key nobody admitted
    assert "authorization violation" in await refusal(url, seed=stranger)
    wrong_password = nats_auth.with_credentials(url, nats_auth.OPS_USER, "guessed")
    assert "authorization violation" in await refusal(wrong_password)


async def test_a_service_reaches_only_its_own_traffic(running: Running) -> None:
    keyring = running.stack.nats_keyring
    assert keyring is not None
    url = running.stack.nats_public_url
    routing_seed = keyring.service_seed_file("routing").read_text().strip()
    async with connected(url, seed=routing_seed, inbox_prefix="_INBOX_svc_routing") as (
        routing,
        errors,
    ):
        # Its own event, through JetStream, is taken (a duplicate id: nothing new happens).
        js = routing.jetstream()
        ack = await js.publish(
            "rujuk.evt.sop.published", b"{}", headers={"Nats-Msg-Id": "authz-test-own"}
        )
        assert ack.stream == subjects.EVENTS_STREAM
        # Intake's event, a partner's feed, the live event tree, another service's inbox.
        await routing.publish("rujuk.evt.case.reported", b"{}")
        await violation(errors, 'publish to "rujuk.evt.case.reported"')
        await routing.publish(subjects.partner_outbound(AGENCY_A, "referral.requested"), b"{}")
        await violation(errors, f'publish to "rujuk.partner.{AGENCY_A}.out')
        await routing.subscribe("rujuk.evt.>")
        await violation(errors, 'subscription to "rujuk.evt.>"')
        await routing.subscribe("_INBOX_svc_intake.>")
        await violation(errors, "_inbox_svc_intake")
        # Nor delete a stream, nor read another service's consumer.
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await routing.request("$JS.API.STREAM.DELETE.RUJUK_EVENTS", b"", timeout=1)
        await violation(errors, "$js.api.stream.delete.rujuk_events")
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await js.consumer_info(subjects.EVENTS_STREAM, "audit-ledger", timeout=1)
        await violation(errors, "$js.api.consumer.info.rujuk_events.audit-ledger")


async def test_a_partner_is_admitted_while_the_server_runs_and_fenced_to_its_own_feed(
    running: Running,
) -> None:
    url = running.stack.nats_public_url
    pid_before = (
        running.stack.nats.process.pid
        if running.stack.nats and running.stack.nats.process
        else None
    )
    seed_a, seed_b = admit(running, AGENCY_A), admit(running, AGENCY_B)
    inbox_a = nats_auth.partner_inbox_prefix(AGENCY_A)
    async with asyncio.timeout(10):  # the reload is asynchronous: until A's key is known
        while await refusal(url, seed_a, inbox_a):
            await asyncio.sleep(0.1)
    assert running.stack.nats is not None
    assert running.stack.nats.process is not None
    assert running.stack.nats.process.pid == pid_before  # no restart

    async with connected(url, seed=seed_a, inbox_prefix=inbox_a) as (partner_a, errors):
        js_a = partner_a.jetstream()
        # For requests the server refuses: no answer comes, so each waits out its timeout (the
        # violation the server reports is the proof); 1 s, as the requests below are given.
        refused_js_a = partner_a.jetstream(timeout=1)
        own_feed = await js_a.pull_subscribe(
            subjects.partner_outbound_wildcard(AGENCY_A),
            durable=nats_auth.partner_durable(AGENCY_A),
            stream=subjects.PARTNER_STREAM,
        )

        async def read_own_feed() -> None:
            [message] = await own_feed.fetch(1, timeout=5)
            assert message.subject == subjects.partner_outbound(AGENCY_A, "referral.requested")
            assert json.loads(message.data)["data"]["agency_id"] == AGENCY_A
            await message.ack()

        await read_own_feed()

        # B's live feed, B's inbox, the whole partner tree, the internal events.
        others = (
            subjects.partner_outbound_wildcard(AGENCY_B),
            "rujuk.partner.>",
            f"{nats_auth.partner_inbox_prefix(AGENCY_B)}.>",
            "rujuk.evt.>",
        )
        for subject in others:
            await partner_a.subscribe(subject)
            await violation(errors, f'subscription to "{subject}"')
        # B's consumer: look it up, bind to it, pull from it; or make one of A's own on B's feed.
        b_durable = nats_auth.partner_durable(AGENCY_B)
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await js_a.consumer_info(subjects.PARTNER_STREAM, b_durable, timeout=1)
        await violation(errors, f"$js.api.consumer.info.rujuk_partner.{b_durable}")
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await refused_js_a.pull_subscribe(
                subjects.partner_outbound_wildcard(AGENCY_B),
                durable=b_durable,
                stream=subjects.PARTNER_STREAM,
            )
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await partner_a.request(
                f"$JS.API.CONSUMER.MSG.NEXT.RUJUK_PARTNER.{b_durable}", b'{"batch": 1}', timeout=1
            )
        await violation(errors, f"$js.api.consumer.msg.next.rujuk_partner.{b_durable}")
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await refused_js_a.pull_subscribe(
                subjects.partner_outbound_wildcard(AGENCY_B),
                durable="sneaky",
                stream=subjects.PARTNER_STREAM,
            )
        await violation(errors, "$js.api.consumer.info.rujuk_partner.sneaky")
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await js_a.add_consumer(
                subjects.PARTNER_STREAM,
                durable_name="sneaky",
                filter_subject=subjects.partner_outbound_wildcard(AGENCY_B),
                timeout=1,
            )
        await violation(errors, "create.rujuk_partner.sneaky")  # CREATE or DURABLE.CREATE
        # B's replies, and the internal events.
        await partner_a.publish(subjects.partner_inbound(AGENCY_B, "acknowledge"), b"{}")
        await violation(errors, f'publish to "rujuk.partner.{AGENCY_B}.in.acknowledge"')
        # RUJUK_EVENTS: its stream info, a message by sequence (direct get and the API).
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await partner_a.request("$JS.API.STREAM.INFO.RUJUK_EVENTS", b"", timeout=1)
        await violation(errors, "$js.api.stream.info.rujuk_events")
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await partner_a.request(
                f"$JS.API.DIRECT.GET.{subjects.EVENTS_STREAM}", b'{"seq": 1}', timeout=1
            )
        await violation(errors, "$js.api.direct.get.rujuk_events")
        with pytest.raises((NatsTimeoutError, TimeoutError)):
            await refused_js_a.get_msg(subjects.EVENTS_STREAM, seq=1)
        await violation(errors, "$js.api.stream.msg.get.rujuk_events")

        # After all that, A's own feed and its own replies still work.
        ack = await js_a.publish(subjects.partner_inbound(AGENCY_A, "acknowledge"), b"{}")
        assert ack.stream == subjects.PARTNER_STREAM
        await partner_a.publish(subjects.partner_inbound(AGENCY_A, "acknowledge"), b"{}")
        await partner_a.flush()

    # B's feed is untouched by A, and B reads it with its own key.
    inbox_b = nats_auth.partner_inbox_prefix(AGENCY_B)
    async with connected(url, seed=seed_b, inbox_prefix=inbox_b) as (partner_b, _):
        info = await partner_b.jetstream().consumer_info(
            subjects.PARTNER_STREAM, nats_auth.partner_durable(AGENCY_B)
        )
        assert info.delivered.consumer_seq == 0
        feed_b = await partner_b.jetstream().pull_subscribe(
            subjects.partner_outbound_wildcard(AGENCY_B),
            durable=nats_auth.partner_durable(AGENCY_B),
            stream=subjects.PARTNER_STREAM,
        )
        assert len(await feed_b.fetch(1, timeout=5)) == 1


async def refusal(url: str, seed: str | None = None, inbox_prefix: str = "_INBOX") -> str:
    """'' when the server lets the client in, else its reason for refusing."""
    options = {"nkeys_seed_str": seed} if seed else {}
    try:
        connection = await nats.connect(
            url,
            inbox_prefix=inbox_prefix,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
            **options,
        )
    except Exception as exc:  # the refusal is what we want to see
        return str(exc).lower() or type(exc).__name__
    await connection.close()
    return ""


async def test_over_tls_a_service_trusts_the_keyrings_ca_and_nothing_else_gets_in(
    tmp_path: Path,
) -> None:
    """What compose and the cluster run: clients over TLS, the server's certificate from the
    keyring's CA (`rujuk nats init --tls-host ...`)."""
    server = EmbeddedNats(tmp_path / "nats", tls_hosts=("127.0.0.1", "localhost")).start()
    try:
        assert server.keyring is not None
        assert server.url.startswith("tls://")
        settings = ServiceSettings(
            nats_url=server.url,
            nats_nkey_seed_file=str(server.keyring.service_seed_file("audit")),
            nats_tls_ca_file=str(server.keyring.ca_file),
        )
        connection = await nats.connect(settings.nats_servers(), **identity(settings, "audit"))
        try:
            await connection.flush()
            assert connection.is_connected
        finally:
            await connection.close()
        # A client that trusts only the system's CAs cannot verify the server.
        with pytest.raises(Exception):  # noqa: B017, PT011 - nats-py raises its own errors
            await nats.connect(server.url, nkeys_seed=settings.nats_nkey_seed_file,
                               allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)  # fmt: skip
        # Nor does a plain-text client get anywhere.
        plain = server.url.replace("tls://", "nats://")
        with pytest.raises(Exception):  # noqa: B017, PT011
            await nats.connect(plain, nkeys_seed=settings.nats_nkey_seed_file,
                               allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)  # fmt: skip
    finally:
        server.stop()
