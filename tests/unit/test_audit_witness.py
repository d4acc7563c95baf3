"""The witness's rules (c2sp.org/tlog-witness add-checkpoint): it cosigns a checkpoint only if
it is consistent with the last one it cosigned, and refuses rollbacks and forks, saying so."""

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle, note, witness
from audit.cosigning import WitnessConfigError, parse_witnesses, request_body

ORIGIN = "example.org/rujuk-audit"
LOG = note.Signer(ORIGIN, Ed25519PrivateKey.generate())
WITNESS = note.Signer("witness.example/w1", Ed25519PrivateKey.generate())
LOGS = {ORIGIN: [LOG.verifier(note.ED25519)]}
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
LEAVES = [merkle.leaf_hash(f"entry {n}".encode()) for n in range(20)]
FORKED = [*LEAVES[:8], *(merkle.leaf_hash(f"forged {n}".encode()) for n in range(8, 20))]


def nodes_of(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    created, _ = merkle.append_leaves([], 0, leaves)
    return {(level, index): digest for level, index, digest in created}


def head(size: int, leaves: list[bytes] = LEAVES, signer: note.Signer = LOG) -> note.Note:
    checkpoint = note.Checkpoint(ORIGIN, size, merkle.root_of(leaves[:size]))
    return note.sign_head(signer, checkpoint, NOW)


def submit(
    state: witness.State, old: int, size: int, leaves: list[bytes] = LEAVES
) -> tuple[witness.Latest, note.Signature]:
    proof = merkle.consistency_proof(old, size, lambda keys: nodes_of(leaves))
    body = request_body(old, proof, head(size, leaves).render())
    return witness.add_checkpoint(witness.parse_request(body), state, LOGS, WITNESS, NOW)


def test_a_consistent_head_is_cosigned_and_becomes_the_latest() -> None:
    first, _ = submit({}, 0, 5)
    second, cosignature = submit({ORIGIN: first}, 5, 12)
    verifier = WITNESS.verifier(note.COSIGNATURE_V1)

    assert (first.size, second.size) == (5, 12)
    assert verifier.verify(head(12).text, cosignature)
    assert cosignature.timestamp == int(NOW.timestamp())
    kept = note.parse_note(second.note)  # what the monitoring endpoint serves
    assert {v.verifier for v in note.verify_note(kept, [*LOGS[ORIGIN], verifier])} == {
        LOGS[ORIGIN][0],
        verifier,
    }


def test_a_fork_is_refused_and_said_so() -> None:
    latest, _ = submit({}, 0, 12)
    with pytest.raises(witness.Refusal) as same_size:
        submit({ORIGIN: latest}, 12, 12, FORKED)
    with pytest.raises(witness.Refusal) as later:
        submit({ORIGIN: latest}, 12, 16, FORKED)

    assert same_size.value.status == later.value.status == 422
    assert "fork refused" in same_size.value.reason
    assert "not consistent with the one of size 12" in later.value.reason


def test_a_rollback_is_refused_and_said_so() -> None:
    latest, _ = submit({}, 0, 12)
    body = request_body(12, [], head(5).render())
    with pytest.raises(witness.Refusal) as rollback:
        witness.add_checkpoint(witness.parse_request(body), {ORIGIN: latest}, LOGS, WITNESS, NOW)
    assert rollback.value.status == 400
    assert "rollback refused, the last size cosigned is 12" in rollback.value.reason


def test_an_old_size_other_than_the_latest_gets_409_with_the_latest_size() -> None:
    latest, _ = submit({}, 0, 12)
    with pytest.raises(witness.Refusal) as stale:
        submit({ORIGIN: latest}, 5, 16)
    assert (stale.value.status, stale.value.body(), stale.value.content_type) == (
        409,
        "12\n",
        "text/x.tlog.size",
    )


def test_an_unknown_log_or_a_forged_signature_is_refused() -> None:
    stranger = note.Signer(ORIGIN, Ed25519PrivateKey.generate())  # same origin, another key
    forged = request_body(0, [], head(5, signer=stranger).render())
    other = note.Signer("other.example/log", Ed25519PrivateKey.generate())
    unknown = request_body(
        0, [], note.sign_head(other, note.Checkpoint(other.name, 1, LEAVES[0]), NOW).render()
    )
    with pytest.raises(witness.Refusal) as not_signed:
        witness.add_checkpoint(witness.parse_request(forged), {}, LOGS, WITNESS, NOW)
    with pytest.raises(witness.Refusal) as not_known:
        witness.add_checkpoint(witness.parse_request(unknown), {}, LOGS, WITNESS, NOW)
    assert (not_signed.value.status, not_known.value.status) == (403, 404)


def test_a_bad_proof_or_a_malformed_body_is_refused() -> None:
    latest, _ = submit({}, 0, 5)
    wrong = request_body(5, [bytes(32)], head(12).render())
    with pytest.raises(witness.Refusal) as bad_proof:
        witness.add_checkpoint(witness.parse_request(wrong), {ORIGIN: latest}, LOGS, WITNESS, NOW)
    for body in (b"old x\n\n" + head(5).render().encode(), b"old 0\nnot base64!\n\nx"):
        with pytest.raises(witness.Refusal) as malformed:
            witness.parse_request(body)
        assert malformed.value.status == 400
    assert bad_proof.value.status == 422


def test_the_state_survives_a_round_trip() -> None:
    latest, _ = submit({}, 0, 7)
    assert witness.load_state(witness.dump_state({ORIGIN: latest})) == {ORIGIN: latest}


def test_the_log_reads_its_witnesses_as_vkey_and_url() -> None:
    vkey = WITNESS.verifier(note.COSIGNATURE_V1).vkey()
    [endpoint] = parse_witnesses([f"{vkey} http://127.0.0.1:8089/"])
    assert (endpoint.verifier.name, endpoint.url) == ("witness.example/w1", "http://127.0.0.1:8089")
    with pytest.raises(WitnessConfigError, match="cosignature key"):
        parse_witnesses([f"{WITNESS.verifier(note.ED25519).vkey()} http://x"])
    with pytest.raises(WitnessConfigError, match="URL"):
        parse_witnesses([vkey])
    body = request_body(3, [bytes(32)], "n\n\n— a b\n").decode()
    assert body.startswith(f"old 3\n{base64.b64encode(bytes(32)).decode()}\n\nn\n")
