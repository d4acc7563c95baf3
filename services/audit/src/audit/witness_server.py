"""`rujuk audit witness`: a witness as its own process, with its own key and state file,
speaking c2sp.org/tlog-witness over HTTP:

- ``POST /add-checkpoint``: cosign a checkpoint consistent with the last one (audit.witness);
- ``GET /<sha256(origin) hex>/checkpoint``: the newest checkpoint it cosigned for that log,
  with the log's signature and its own cosignature (what `rujuk audit verify --witness-url`
  reads).

The state file is written (to a temporary file, then renamed) before a cosignature is
returned, under one lock: two requests can never both move the same log.
"""

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from audit import note, witness
from audit.copies import origin_hash
from rujuk_runtime.logs import get_logger

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024


class Witness:
    """One witness: its signer, the logs it follows, its state and where that is kept."""

    def __init__(
        self, signer: note.Signer, logs: dict[str, list[note.Verifier]], state_file: Path
    ) -> None:
        self.signer = signer
        self.logs = logs
        self.state_file = state_file
        self.state = (
            witness.load_state(state_file.read_text(encoding="utf-8"))
            if state_file.exists()
            else {}
        )
        self._lock = asyncio.Lock()

    async def add_checkpoint(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return PlainTextResponse("request too large\n", 413)
        try:
            parsed = witness.parse_request(body)
            async with self._lock:  # check and persist as one step
                latest, cosignature = witness.add_checkpoint(
                    parsed, self.state, self.logs, self.signer, datetime.now(UTC)
                )
                state = {**self.state, parsed.checkpoint.origin: latest}
                self._persist(state)
                self.state = state
        except witness.Refusal as refusal:
            log.warning("checkpoint refused", status=refusal.status, reason=refusal.reason)
            return PlainTextResponse(
                refusal.body(), refusal.status, headers={"Content-Type": refusal.content_type}
            )
        log.info("checkpoint cosigned", origin=parsed.checkpoint.origin, size=latest.size)
        return PlainTextResponse(cosignature.line())

    async def checkpoint(self, request: Request) -> Response:
        wanted = request.path_params["origin_hash"]
        for origin, latest in self.state.items():
            if origin_hash(origin) == wanted:
                return PlainTextResponse(latest.note)
        return PlainTextResponse("no checkpoint cosigned for that log\n", 404)

    def _persist(self, state: witness.State) -> None:
        temporary = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(witness.dump_state(state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.state_file)


def create_app(node: Witness) -> Starlette:
    return Starlette(
        routes=[
            Route("/add-checkpoint", node.add_checkpoint, methods=["POST"]),
            Route("/{origin_hash:str}/checkpoint", node.checkpoint, methods=["GET"]),
        ]
    )


def log_keys(vkeys: list[str]) -> dict[str, list[note.Verifier]]:
    """The logs to witness, by origin, from their verifier keys (a log's key name is its
    origin; rujuk's heads verify with its Ed25519 vkey, `rujuk audit keygen` prints it)."""
    logs: dict[str, list[note.Verifier]] = {}
    for text in vkeys:
        verifier = note.parse_vkey(text)
        logs.setdefault(verifier.name, []).append(verifier)
    return logs
