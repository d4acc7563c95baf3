"""`rujuk audit witness` as its own process: its own key and state file, the C2SP witness
protocol over real HTTP, and a state that survives a restart (no rollback after one)."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from audit import merkle, note, signing
from audit.copies import origin_hash
from audit.cosigning import request_body
from rujuk_runtime.embedded import free_port, wait_for_port

pytestmark = pytest.mark.integration

ORIGIN = "example.org/rujuk-audit-process"
LOG = signing.generate().signer(ORIGIN)
LEAVES = [merkle.leaf_hash(f"entry {n}".encode()) for n in range(9)]


def head(size: int) -> str:
    checkpoint = note.Checkpoint(ORIGIN, size, merkle.root_of(LEAVES[:size]))
    return note.sign_head(LOG, checkpoint, datetime.now(UTC)).render()


@contextmanager
def witness_process(folder: Path, port: int) -> Iterator[str]:
    command = [
        str(Path(sys.executable).with_name("rujuk")), "audit", "witness",
        "--name", "witness.example/w1", "--key-file", str(folder / "witness.key"),
        "--state", str(folder / "state.json"), "--log", LOG.verifier(note.ED25519).vkey(),
        "--port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, 30, process)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        (folder / "stderr.txt").write_bytes(stderr)


def test_the_witness_process_cosigns_keeps_its_state_and_refuses_a_rollback_after_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    nodes = {(l, i): h for l, i, h in merkle.append_leaves([], 0, LEAVES)[0]}  # noqa: E741
    proof = merkle.consistency_proof(5, 9, lambda keys: nodes)
    with witness_process(tmp_path, port) as url:
        first = httpx.post(f"{url}/add-checkpoint", content=request_body(0, [], head(5)))
        second = httpx.post(f"{url}/add-checkpoint", content=request_body(5, proof, head(9)))
    printed = (tmp_path / "stderr.txt").read_text()
    vkey = note.parse_vkey(printed.split("its verifier key: ")[1].split()[0])
    with witness_process(tmp_path, port) as url:  # restarted: reads its state file
        kept = httpx.get(f"{url}/{origin_hash(ORIGIN)}/checkpoint")
        rollback = httpx.post(f"{url}/add-checkpoint", content=request_body(9, [], head(5)))

    assert (first.status_code, second.status_code) == (200, 200), second.text
    cosignature = note.parse_signature_line(second.text)
    assert vkey.verify(note.parse_note(head(9)).text, cosignature)
    assert kept.status_code == 200
    assert note.parse_checkpoint(note.parse_note(kept.text).text).size == 9
    assert (rollback.status_code, "rollback refused" in rollback.text) == (400, True)
    assert oct((tmp_path / "state.json").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "witness.key").stat().st_mode & 0o777) == "0o600"
