"""How a referral reaches an agency: its NATS feed, its webhook (Standard Webhooks), e-mail and
SMS."""

import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiohttp
from nats.js import JetStreamContext
from standardwebhooks import Webhook

from notify.partners import ensure_partner_consumer
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE
from rujuk_contracts.events import DeliveryChannel
from rujuk_runtime.bus import event_headers


class DeliveryError(Exception):
    pass


@dataclass(frozen=True)
class Outgoing:
    """One referral as the partner receives it: the CloudEvent, with its id as idempotency key."""

    agency_id: str
    event_id: str
    event_name: str  # e.g. "referral.requested"
    body: bytes
    traceparent: str | None


def partner_secret(signing_key: bytes, agency_id: str) -> str:
    """The agency's Standard Webhooks secret (``whsec_…``), derived so it needs no storage."""
    digest = hmac.new(signing_key, f"webhook:{agency_id}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode()


class NatsFeed:
    channel = DeliveryChannel.NATS

    endpoint = "nats"

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._consumers: set[str] = set()

    async def ensure_consumer(self, agency_id: str) -> None:
        """The agency's durable feed consumer, made once per process."""
        if agency_id not in self._consumers:
            await ensure_partner_consumer(self._js, agency_id)
            self._consumers.add(agency_id)

    async def deliver(self, message: Outgoing) -> str:
        await self.ensure_consumer(message.agency_id)
        subject = subjects.partner_outbound(message.agency_id, message.event_name)
        ack = await self._js.publish(
            subject,
            message.body,
            headers=event_headers(message.event_id, message.traceparent),
            timeout=5,
        )
        return f"{subject} seq {ack.seq}"


class WebhookSender:
    channel = DeliveryChannel.WEBHOOK

    def __init__(self, client: aiohttp.ClientSession, signing_key: bytes) -> None:
        self._client = client
        self._signing_key = signing_key

    async def deliver(
        self, message: Outgoing, url: str, extra_headers: dict[str, str] | None = None
    ) -> str:
        """POST the CloudEvent, signed; ``extra_headers`` beside the signature's (a page's
        acknowledgement code)."""
        timestamp = datetime.now(UTC)
        body = message.body.decode()
        signature = Webhook(partner_secret(self._signing_key, message.agency_id)).sign(
            message.event_id, timestamp, body
        )
        headers = {
            "content-type": CONTENT_TYPE,
            "webhook-id": message.event_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature,
        }
        if message.traceparent:
            headers["traceparent"] = message.traceparent
        headers.update(extra_headers or {})
        try:
            async with self._client.post(url, data=message.body, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"webhook {url}: {type(exc).__name__}") from exc
        if status >= 300:
            raise DeliveryError(f"webhook {url}: HTTP {status}")
        return f"HTTP {status}"


class EmailSender:
    """E-mail over SMTP (stdlib smtplib in a thread); the Message-ID carries the event id, so
    a partner's mail system can spot a repeat."""

    channel = DeliveryChannel.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = f"smtp://{host}:{port}"
        self._host, self._port, self._sender = host, port, sender
        self._starttls, self._username, self._password = starttls, username, password
        self._timeout = timeout

    async def deliver(self, to: str, subject: str, text: str, idempotency_key: str) -> str:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<{idempotency_key}@rujuk>"
        message["Date"] = email.utils.formatdate(localtime=False)
        message.set_content(text)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{self.endpoint}: {type(exc).__name__}: {exc}"[:300]) from exc
        return "SMTP 250"

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(message)


class SmsGateway:
    """SMS (or WhatsApp) through an HTTP gateway: the request body is a JSON template whose
    string values may hold {to}, {text}, {referral_id} and {idempotency_key}."""

    channel = DeliveryChannel.SMS

    def __init__(
        self,
        client: aiohttp.ClientSession,
        url: str,
        body_template: str,
        *,
        method: str = "POST",
        token: str | None = None,
    ) -> None:
        self.endpoint = url
        self._client = client
        self._method = method.upper()
        self._template = json.loads(body_template)  # a broken template fails at start
        self._token = token

    def body(self, values: dict[str, str]) -> Any:
        def fill(node: Any) -> Any:
            if isinstance(node, str):
                for key, value in values.items():
                    node = node.replace("{" + key + "}", value)
                return node
            if isinstance(node, list):
                return [fill(item) for item in node]
            if isinstance(node, dict):
                return {key: fill(value) for key, value in node.items()}
            return node

        return fill(self._template)

    async def deliver(self, to: str, text: str, referral_id: str, idempotency_key: str) -> str:
        values = {
            "to": to,
            "text": text,
            "referral_id": referral_id,
            "idempotency_key": idempotency_key,
        }
        headers = {"idempotency-key": idempotency_key}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        try:
            async with self._client.request(
                self._method, self.endpoint, json=self.body(values), headers=headers
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"sms gateway: {type(exc).__name__}") from exc
        if status >= 300:
            raise DeliveryError(f"sms gateway: HTTP {status}")
        return f"HTTP {status}"
