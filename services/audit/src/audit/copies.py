"""Signed heads kept outside the database, read for `rujuk audit verify`: the RUJUK_AUDIT
stream (every head audit published) and witnesses (the newest head each cosigned, served at
``<monitoring prefix>/<sha256(origin) hex>/checkpoint`` per c2sp.org/tlog-witness)."""

import asyncio
import hashlib
from pathlib import Path

import httpx
import nats
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from audit.heads import HeadCopy
from rujuk_contracts import subjects

STREAM_SOURCE = f"stream {subjects.AUDIT_STREAM}"
READ_TIMEOUT_SECONDS = 5.0


async def stream_heads(nats_url: str) -> list[HeadCopy]:
    """Every head published on ``rujuk.audit.checkpoint`` still in the stream, read by
    sequence (what audit's own NATS user may do: no consumer is made), many requests in
    flight at once. Old JSON checkpoints (before the tree) are left out: the database's
    checkpoints table has them."""
    connection = await nats.connect(nats_url, name="rujuk-audit-cli", connect_timeout=5)
    try:
        js = connection.jetstream()
        try:
            info = await js.stream_info(subjects.AUDIT_STREAM)
        except NotFoundError:
            return []
        found: list[HeadCopy] = []
        first, last = info.state.first_seq, info.state.last_seq
        for start in range(first, last + 1, READ_AT_ONCE):
            sequences = range(start, min(start + READ_AT_ONCE, last + 1))
            messages = await asyncio.gather(*(_message(js, seq) for seq in sequences))
            for message in messages:
                if message is None or message.subject != subjects.CHECKPOINT_SUBJECT:
                    continue
                text = (message.data or b"").decode(errors="replace")
                if not text.startswith("{"):
                    found.append(HeadCopy(STREAM_SOURCE, text))
        return found
    finally:
        await connection.close()


READ_AT_ONCE = 200


async def _message(js: JetStreamContext, seq: int) -> RawStreamMsg | None:
    try:
        return await js.get_msg(subjects.AUDIT_STREAM, seq)
    except NotFoundError:  # removed (limits, or by hand): what is left is judged
        return None


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
