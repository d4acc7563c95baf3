"""Signed heads kept outside the database, read for `rujuk audit verify`: the RUJUK_AUDIT
stream (every head audit published) and witnesses (the newest head each cosigned, served at
``<monitoring prefix>/<sha256(origin) hex>/checkpoint`` per c2sp.org/tlog-witness)."""

import hashlib
from pathlib import Path

import httpx
import nats
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from audit.heads import HeadCopy
from rujuk_contracts import subjects

STREAM_SOURCE = f"stream {subjects.AUDIT_STREAM}"
READ_TIMEOUT_SECONDS = 5.0


async def stream_heads(nats_url: str) -> list[HeadCopy]:
    """Every head published on ``rujuk.audit.checkpoint`` still in the stream. Old JSON
    checkpoints (before the tree) are left out: the database's checkpoints table has them."""
    connection = await nats.connect(nats_url, name="rujuk-audit-cli", connect_timeout=5)
    try:
        js = connection.jetstream()
        try:
            info = await js.stream_info(subjects.AUDIT_STREAM)
        except NotFoundError:
            return []
        if not info.state.messages:
            return []
        subscription = await js.subscribe(
            subjects.CHECKPOINT_SUBJECT,
            stream=subjects.AUDIT_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        found: list[HeadCopy] = []
        try:
            while True:
                message = await subscription.next_msg(timeout=READ_TIMEOUT_SECONDS)
                text = message.data.decode(errors="replace")
                if not text.startswith("{"):
                    found.append(HeadCopy(STREAM_SOURCE, text))
                if message.metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
        return found
    finally:
        await connection.close()


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


async def witness_heads(urls: list[str], origin: str) -> list[HeadCopy]:
    """The newest head each witness cosigned for ``origin`` (none from a witness that never
    did); an unreachable witness raises (httpx.HTTPError)."""
    found = []
    async with httpx.AsyncClient(timeout=READ_TIMEOUT_SECONDS) as client:
        for url in urls:
            response = await client.get(f"{url.rstrip('/')}/{origin_hash(origin)}/checkpoint")
            if response.status_code == 404:
                continue
            response.raise_for_status()
            found.append(HeadCopy(f"witness {url}", response.text))
    return found


def file_heads(paths: list[Path]) -> list[HeadCopy]:
    """Heads an auditor kept, one signed note per file."""
    return [HeadCopy(f"file {path}", path.read_text(encoding="utf-8")) for path in paths]
