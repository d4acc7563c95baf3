"""How a referral reaches an agency: its NATS feed and its webhook (Standard Webhooks)."""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from nats.js import JetStreamContext
from standardwebhooks import Webhook

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

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def deliver(self, message: Outgoing) -> str:
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

    def __init__(self, client: httpx.AsyncClient, signing_key: bytes) -> None:
        self._client = client
        self._signing_key = signing_key

    async def deliver(self, message: Outgoing, url: str) -> str:
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
        try:
            response = await self._client.post(url, content=message.body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {url}: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise DeliveryError(f"webhook {url}: HTTP {response.status_code}")
        return f"HTTP {response.status_code}"
