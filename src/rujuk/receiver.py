"""A partner's webhook endpoint, for the demo and the tests: verifies every Standard Webhooks
signature with the `standardwebhooks` library and keeps what it received."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

from notify.channels import partner_secret
from rujuk_contracts.events import TYPE_PREFIX
from rujuk_runtime.embedded import free_port

ON_CALL_TYPES = f"{TYPE_PREFIX}.oncall."
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    agency_id: str  # or an on-call contact's id
    webhook_id: str
    event: dict[str, Any]
    body: bytes = b""  # as it came, with its webhook-* headers: to replay it elsewhere
    webhook_headers: tuple[tuple[str, str], ...] = ()
    ack_code: str | None = None  # a page's `rujuk-ack-code` header (docs/notify.md, "Paging")


@dataclass
class WebhookReceiver:
    """POST /webhooks/<agency_id>: 204 when the signature verifies, 401 otherwise."""

    signing_key: bytes
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)  # referral requests (a partner's)
    pages: list[Delivery] = field(default_factory=list)  # on-call pages (a role's, issue 24)
    rejected: int = 0
    refuse_with: int | None = None  # answer every delivery with this status (a partner down)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request (killed): no delivery, no verdict
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = self._handle(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def _handle(self, scope: Scope, body: bytes) -> int:
        path: str = scope["path"]
        if scope["method"] != "POST" or not path.startswith("/webhooks/"):
            return 404
        if self.refuse_with is not None:
            return self.refuse_with
        agency_id = path.removeprefix("/webhooks/")
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            Webhook(partner_secret(self.signing_key, agency_id)).verify(body, headers)
        except WebhookVerificationError:
            self.rejected += 1
            return 401
        signed = tuple((k, v) for k, v in headers.items() if k.startswith("webhook-"))
        event = json.loads(body)
        kept = (
            self.pages if str(event.get("type", "")).startswith(ON_CALL_TYPES) else self.deliveries
        )
        kept.append(
            Delivery(
                agency_id,
                headers["webhook-id"],
                event,
                body,
                signed,
                ack_code=headers.get("rujuk-ack-code"),
            )
        )
        return 204

    def referral_ids(self) -> set[str]:
        return {d.event["data"]["referral_id"] for d in self.deliveries}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["WebhookReceiver"]:
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
            lifespan="off",
        )  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            yield self
        finally:
            server.should_exit = True
            await task
