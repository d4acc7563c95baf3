"""Audit as a witness's client: each new head goes to every configured witness with the
consistency proof from the last head that witness cosigned (c2sp.org/tlog-witness
``add-checkpoint``); the cosignatures that verify are stored beside the head."""

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import httpx

from audit import note, store
from audit.witness import SIZE_CONTENT_TYPE
from rujuk_runtime.logs import get_logger

log = get_logger(__name__)

TIMEOUT_SECONDS = 10.0


class WitnessConfigError(ValueError):
    """A witness entry that cannot be read; the text says why."""


@dataclass(frozen=True)
class WitnessEndpoint:
    verifier: note.Verifier  # its cosignature key (type 0x04)
    url: str  # its submission prefix


def parse_witnesses(entries: Sequence[str]) -> list[WitnessEndpoint]:
    """``'<vkey> <URL prefix>'`` each (AUDIT_WITNESSES)."""
    found = []
    for entry in entries:
        vkey, _, url = entry.strip().partition(" ")
        try:
            verifier = note.parse_vkey(vkey)
        except note.NoteError as exc:
            raise WitnessConfigError(f"witness {entry[:60]!r}: {exc}") from exc
        if verifier.signature_type != note.COSIGNATURE_V1:
            raise WitnessConfigError(f"witness {verifier.name}: its key must be a cosignature key")
        if not url.strip().startswith(("http://", "https://")):
            raise WitnessConfigError(f"witness {verifier.name}: give '<vkey> <URL prefix>'")
        found.append(WitnessEndpoint(verifier, url.strip().rstrip("/")))
    return found


def request_body(old_size: int, proof: Sequence[bytes], signed_note: str) -> bytes:
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + signed_note).encode()


class Cosigner:
    """Asks each witness to cosign a head; stores what comes back and verifies."""

    def __init__(
        self,
        witnesses: Sequence[WitnessEndpoint],
        pool: Callable[[], asyncpg.Pool],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.witnesses = list(witnesses)
        self._pool = pool
        self._transport = transport  # tests: a witness app in the same process

    async def __call__(self, head: store.StoredHead) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, transport=self._transport) as client:
            for endpoint in self.witnesses:
                try:
                    await self._ask(client, endpoint, head)
                except (httpx.HTTPError, note.NoteError, ValueError) as exc:
                    log.warning("witness not reached", witness=endpoint.verifier.name,
                                error=type(exc).__name__, detail=str(exc)[:200])  # fmt: skip

    async def _ask(
        self, client: httpx.AsyncClient, endpoint: WitnessEndpoint, head: store.StoredHead
    ) -> None:
        name, key_id = endpoint.verifier.name, endpoint.verifier.key_id
        async with self._pool().acquire() as conn:
            old = await store.last_cosigned_size(conn, name, key_id)
        for _ in range(2):  # a 409 tells the size the witness has: ask once more from it
            if old > head.size:
                return  # it cosigned a newer head already
            async with self._pool().acquire() as conn:
                proof = await store.consistency_proof(conn, old, head.size)
            response = await client.post(
                f"{endpoint.url}/add-checkpoint", content=request_body(old, proof, head.note)
            )
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                SIZE_CONTENT_TYPE
            ):
                old = int(response.text.strip())
                continue
            if response.status_code != 200:
                log.warning("witness refused the head", witness=name, size=head.size,
                            status=response.status_code, reason=response.text[:300])  # fmt: skip
                return
            await self._keep(endpoint, head, response.text)
            return

    async def _keep(self, endpoint: WitnessEndpoint, head: store.StoredHead, lines: str) -> None:
        text = note.parse_note(head.note).text
        found = []
        for line in lines.splitlines(keepends=True):
            signature = note.parse_signature_line(line)
            if endpoint.verifier.verify(text, signature):
                found.append(
                    store.Cosignature(
                        signature.name,
                        signature.key_id,
                        note.Verified(endpoint.verifier, signature).time_or_now(),
                        signature.line(),
                    )
                )
        if not found:
            log.warning("witness answered no valid cosignature", witness=endpoint.verifier.name)
            return
        async with self._pool().acquire() as conn:
            await store.insert_cosignatures(conn, head.size, found)
        log.info("head cosigned", witness=endpoint.verifier.name, size=head.size)
