"""E-mail over a real SMTP server (aiosmtpd) and SMS through a local HTTP gateway, each in the
agency's language, with nothing identifying in them."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import nats
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from notify.bootstrap import build_notify
from notify.settings import NotifySettings
from rujuk_contracts import parse_event
from rujuk_contracts.events import ReferralDelivered
from rujuk_runtime.embedded import free_port
from tests.integration.test_notify_support import SIGNING_KEY, publish_referral, referral

pytestmark = pytest.mark.integration


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server() -> Any:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


class Gateway:
    """An SMS gateway: answers 503 to the first ``fail_first`` requests, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.fail_first = fail_first
        self.port = free_port()

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = 200
        if self.fail_first > 0:
            self.fail_first -= 1
            status = 503
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.requests.append((headers, json.loads(body)))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["Gateway"]:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan="off")  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            yield self
        finally:
            server.should_exit = True
            await task


async def test_email_and_sms_reach_the_agency_in_its_language(
    clean_bus: str, database_url: str, tmp_path: Path
) -> None:
    gateway = Gateway(fail_first=1)
    with smtp_server() as (mailbox, smtp_port):
        async with gateway.running():
            partners_file = tmp_path / "partners.json"
            partners_file.write_text(
                json.dumps(
                    {
                        "rsud-bangil": {"email": "ppa@rsud.example", "sms_number": "+620000001"},
                        "ngo-legal": {"email": "desk@ngo.example", "language": "en"},
                    }
                )
            )
            settings = NotifySettings(
                nats_url=clean_bus,
                database_url=database_url,
                webhook_signing_key=SIGNING_KEY.decode(),
                partners_file=partners_file,
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                smtp_starttls=False,
                smtp_sender="rujuk@dinas.example",
                sms_gateway_url=f"http://127.0.0.1:{gateway.port}/send",
                sms_gateway_body_template=(
                    '{"to": "{to}", "text": "{text}", "ref": "{referral_id}"}'
                ),
                sms_gateway_token="gateway-token-for-tests",
                backoff_base_seconds=0.05,
                backoff_cap_seconds=0.1,
                poll_interval_seconds=30,  # new work must wake the worker (LISTEN/NOTIFY)
                intake_public_url="https://intake.rujuk.example",
            )
            notify = build_notify(settings)
            async with notify.runtime.running():
                connection = await nats.connect(clean_bus)
                js = connection.jetstream()
                outcomes = await js.subscribe(ReferralDelivered.subject(), ordered_consumer=True)
                health = referral("rsud-bangil", 0)
                legal = referral("ngo-legal", 1, case="ZZ98YY76XX")
                event_id = await publish_referral(js, health)
                await publish_referral(js, legal)

                delivered: dict[str, ReferralDelivered] = {}
                async with asyncio.timeout(15):
                    while len(delivered) < 2:
                        _, payload = parse_event((await outcomes.next_msg(timeout=15)).data)
                        assert isinstance(payload, ReferralDelivered)
                        delivered[payload.agency_id] = payload
                await connection.close()

    assert set(delivered["rsud-bangil"].channels) == {"nats", "email", "sms"}
    assert set(delivered["ngo-legal"].channels) == {"nats", "email"}
    assert delivered["rsud-bangil"].attempts == 2  # the gateway refused once

    by_recipient = {rcpts[0]: message for rcpts, message in mailbox.messages}
    assert sorted(by_recipient) == ["desk@ngo.example", "ppa@rsud.example"]
    indonesian = by_recipient["ppa@rsud.example"]
    assert indonesian["Subject"] == (
        "[rujuk] Rujukan SEGERA: layanan kesehatan, kasus 3513-AB12CD34EF"
    )
    assert indonesian["Message-ID"] == f"<{event_id}@rujuk>"
    text = indonesian.get_payload(decode=True).decode()
    assert "GET https://intake.rujuk.example/v1/cases/3513-AB12CD34EF/details" in text
    assert "Batas konfirmasi" in text
    english = by_recipient["desk@ngo.example"]
    assert english["Subject"].startswith("[rujuk] URGENT referral: health care, case 3513-ZZ98")

    [(headers, body)] = gateway.requests
    assert headers["authorization"] == "Bearer gateway-token-for-tests"
    assert headers["idempotency-key"] == event_id
    assert body["to"] == "+620000001"
    assert body["ref"] == health.referral_id
    assert body["text"].startswith("rujuk: rujukan SEGERA layanan kesehatan, kasus 3513-AB12CD34EF")
