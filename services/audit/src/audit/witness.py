"""A witness: cosigns a log's checkpoint only if it is consistent with the last one it cosigned
(c2sp.org/tlog-witness ``add-checkpoint``; cosignatures per c2sp.org/tlog-cosignature). It
refuses a rollback (a smaller tree) and a fork (another tree of the same or a later size), and
says which. Any log whose key it is given: rujuk's audit or another. No I/O here: the state
is a value, persisted by the caller (audit.witness_server) before it answers.
"""

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from audit import merkle, note

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class Refusal(Exception):
    """Why the witness does not cosign: the HTTP status and body the protocol asks for."""

    def __init__(
        self, status: int, reason: str, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.content_type = content_type

    def body(self) -> str:
        return self.reason if self.reason.endswith("\n") else self.reason + "\n"


@dataclass(frozen=True)
class Latest:
    """The newest checkpoint a witness cosigned for one log: the note with both signatures."""

    size: int
    root_hash: bytes
    note: str


State = Mapping[str, Latest]  # by origin


@dataclass(frozen=True)
class Request:
    old_size: int
    proof: list[bytes]
    checkpoint: note.Checkpoint
    signed: note.Note


def parse_request(body: bytes) -> Request:
    """An add-checkpoint body: ``old N``, proof lines, a blank line, the checkpoint note."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise Refusal(400, "the body is not UTF-8") from exc
    head, separator, rest = text.partition("\n\n")
    if not separator:
        raise Refusal(400, "the body is an old size line, proof lines, a blank line, a checkpoint")
    lines = head.split("\n")
    old = lines[0].removeprefix("old ")
    if not lines[0].startswith("old ") or not old.isdigit() or (old != "0" and old[0] == "0"):
        raise Refusal(400, f"the first line must be 'old <size>', not {lines[0][:40]!r}")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, f"more than {MAX_PROOF_LINES} proof lines")
    proof = []
    for line in lines[1:]:
        try:
            digest = base64.b64decode(line, validate=True)
        except ValueError as exc:
            raise Refusal(400, "a proof line is not base64") from exc
        if len(digest) != merkle.HASH_SIZE:
            raise Refusal(400, "a proof line is not a 32-byte hash")
        proof.append(digest)
    try:
        signed = note.parse_note(rest)
        checkpoint = note.parse_checkpoint(signed.text)
    except note.NoteError as exc:
        raise Refusal(400, f"the checkpoint: {exc}") from exc
    return Request(int(old), proof, checkpoint, signed)


def add_checkpoint(
    request: Request,
    state: State,
    logs: Mapping[str, list[note.Verifier]],
    signer: note.Signer,
    now: datetime,
) -> tuple[Latest, note.Signature]:
    """Cosign ``request``'s checkpoint if it is consistent with ``state``; the new latest (to
    persist before answering) and the cosignature. Refusal otherwise, in the protocol's
    terms (404 unknown log, 403 bad signature, 400/409 size, 422 inconsistent)."""
    checkpoint = request.checkpoint
    keys = logs.get(checkpoint.origin)
    if keys is None:
        raise Refusal(404, f"unknown log {checkpoint.origin!r}")
    try:
        note.verify_note(request.signed, keys)
    except note.NoteError as exc:
        raise Refusal(403, f"not signed by the log's key: {exc}") from exc
    latest = state.get(checkpoint.origin)
    latest_size = latest.size if latest else 0
    if request.old_size > checkpoint.size:
        raise Refusal(
            400,
            f"old size {request.old_size} is beyond the checkpoint's {checkpoint.size}"
            + (f": rollback refused, the last size cosigned is {latest_size}" if latest else ""),
        )
    if request.old_size != latest_size:
        raise Refusal(409, f"{latest_size}\n", SIZE_CONTENT_TYPE)
    if checkpoint.size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
        raise Refusal(422, "a checkpoint of size 0 must have the empty tree's root")
    old_root = latest.root_hash if latest else merkle.EMPTY_ROOT
    if request.old_size == 0 and request.proof:
        raise Refusal(422, "from size 0 the consistency proof is empty")
    if not merkle.verify_consistency(
        request.old_size, checkpoint.size, request.proof, old_root, checkpoint.root_hash
    ):
        raise Refusal(
            422,
            f"fork refused: the checkpoint of size {checkpoint.size} is not consistent with "
            f"the one of size {latest_size} cosigned before (its proof does not verify)",
        )
    cosignature = signer.cosign(request.signed.text, now)
    cosigned = request.signed.with_signatures([cosignature])
    return Latest(checkpoint.size, checkpoint.root_hash, cosigned.render()), cosignature


def dump_state(state: State) -> str:
    return json.dumps(
        {
            origin: {"size": latest.size, "root_hash": latest.root_hash.hex(), "note": latest.note}
            for origin, latest in sorted(state.items())
        },
        indent=1,
    )


def load_state(text: str) -> dict[str, Latest]:
    document = json.loads(text) if text.strip() else {}
    return {
        origin: Latest(int(item["size"]), bytes.fromhex(item["root_hash"]), str(item["note"]))
        for origin, item in document.items()
    }
