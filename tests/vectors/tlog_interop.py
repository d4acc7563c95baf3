"""Interoperability vectors for the ledger's heads, proofs and cosignatures, made and checked
by an independent implementation of the C2SP specs (aics-tlog, from PyPI).

aics-tlog needs Python 3.12 or newer and rujuk runs on 3.11, so it is not a dependency: this
script runs by hand in a venv of its own, and what it writes (tests/vectors/tlog.json) is what
tests/unit/test_audit_note.py holds rujuk's code to, byte for byte (Ed25519 is deterministic)::

    python3.12 -m venv /tmp/tlog && /tmp/tlog/bin/pip install aics-tlog==0.2.1
    /tmp/tlog/bin/python tests/vectors/tlog_interop.py

It also checks the other way: notes, cosignatures and proofs made by rujuk's own code
(audit.note, audit.merkle) verify under aics-tlog. It exits non-zero if anything disagrees.
"""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import aics_tlog
from aics_tlog import checkpoint as aics_checkpoint
from aics_tlog import cosign as aics_cosign
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services/audit/src"))
from audit import merkle, note  # noqa: E402

LOG_SEED = bytes(range(32))
WITNESS_SEED = bytes(range(32, 64))
ORIGIN = "example.org/rujuk-audit"
WITNESS = "witness.example/w1"
ENTRIES = [f'{{"invented":"entry {n}"}}'.encode() for n in range(13)]
LOG_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z
WITNESS_TIME = LOG_TIME + 7


def main() -> None:
    log_key = Ed25519PrivateKey.from_private_bytes(LOG_SEED)
    witness_key = Ed25519PrivateKey.from_private_bytes(WITNESS_SEED)
    tree = aics_tlog.MerkleTree(ENTRIES)
    size, old = len(ENTRIES), 5
    cp = aics_tlog.Checkpoint(ORIGIN, size, tree.root())
    signed = aics_checkpoint.sign_checkpoint(cp, log_key, ORIGIN)
    _, log_cosig = aics_tlog.sign_cosignature(log_key, ORIGIN, LOG_TIME, ORIGIN, size, tree.root())
    _, witness_cosig = aics_tlog.sign_cosignature(
        witness_key, WITNESS, WITNESS_TIME, ORIGIN, size, tree.root()
    )
    full = aics_tlog.Note(signed.text, (*signed.signatures, log_cosig, witness_cosig))
    vectors = {
        "made_by": f"aics-tlog {aics_tlog.__version__}",
        "log_seed": LOG_SEED.hex(),
        "witness_seed": WITNESS_SEED.hex(),
        "origin": ORIGIN,
        "witness": WITNESS,
        "entries": [entry.decode() for entry in ENTRIES],
        "log_time": LOG_TIME,
        "witness_time": WITNESS_TIME,
        "log_vkey": aics_tlog.format_vkey(
            aics_tlog.vkey_from_ed25519(ORIGIN, log_key.public_key())
        ),
        "witness_vkey": aics_tlog.format_vkey(
            aics_cosign.cosignature_vkey(WITNESS, witness_key.public_key())
        ),
        "root": tree.root().hex(),
        "old_size": old,
        "old_root": tree.root(old).hex(),
        "inclusion": {"index": 3, "proof": [h.hex() for h in tree.inclusion_proof(3)]},
        "consistency": [h.hex() for h in tree.consistency_proof(old, size)],
        "head": full.serialise(),
        "witness_response": f"{note.EM_DASH} {WITNESS} "
        + aics_tlog.Note("x\n", (witness_cosig,))
        .serialise()
        .split(f"{note.EM_DASH} {WITNESS} ")[1],
    }
    (ROOT / "tests/vectors/tlog.json").write_text(json.dumps(vectors, indent=1) + "\n")
    check_rujuk_under_aics(vectors)
    print("tests/vectors/tlog.json written; rujuk's notes and proofs verify under aics-tlog")


def check_rujuk_under_aics(vectors: dict[str, object]) -> None:
    signer = note.Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(LOG_SEED))
    leaves = [merkle.leaf_hash(entry) for entry in ENTRIES]
    nodes: dict[tuple[int, int], bytes] = {}
    created, _ = merkle.append_leaves([], 0, leaves)
    nodes.update({(level, index): digest for level, index, digest in created})
    root = merkle.root_at(len(leaves), nodes)
    head = note.sign_head(
        signer, note.Checkpoint(ORIGIN, len(leaves), root), datetime.fromtimestamp(LOG_TIME, UTC)
    )
    witness = note.Signer(WITNESS, Ed25519PrivateKey.from_private_bytes(WITNESS_SEED))
    cosigned = head.with_signatures(
        [witness.cosign(head.text, datetime.fromtimestamp(WITNESS_TIME, UTC))]
    )
    parsed = aics_tlog.parse_note(cosigned.render())
    result = aics_checkpoint.verify_checkpoint(
        parsed,
        aics_tlog.parse_vkey(signer.verifier(note.ED25519).vkey()),
        [aics_tlog.parse_vkey(witness.verifier(note.COSIGNATURE_V1).vkey())],
        quorum=1,
    )
    assert result.ok, result.error
    assert cosigned.render() == vectors["head"], "rujuk's head differs from aics-tlog's"
    proof = merkle.inclusion_proof(3, len(leaves), lambda keys: nodes)
    assert aics_tlog.verify_leaf_inclusion(ENTRIES[3], 3, len(leaves), proof, root)
    consistency = merkle.consistency_proof(5, len(leaves), lambda keys: nodes)
    assert aics_tlog.verify_consistency(5, len(leaves), merkle.root_at(5, nodes), root, consistency)


if __name__ == "__main__":
    main()
