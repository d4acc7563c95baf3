"""Signed notes, checkpoints and cosignatures (C2SP) against the specs' own example and the
vectors an independent implementation made (tests/vectors/tlog.json, see tlog_interop.py)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import merkle, note

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "tlog.json").read_text())

# c2sp.org/signed-note's own example: its verifier key and the note it verifies.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYj"
    "OBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def signer(seed: str, name: str) -> note.Signer:
    return note.Signer(name, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed)))


def vector_tree() -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    leaves = [merkle.leaf_hash(entry.encode()) for entry in VECTORS["entries"]]
    created, _ = merkle.append_leaves([], 0, leaves)
    return leaves, {(level, index): digest for level, index, digest in created}


def test_the_signed_note_specs_example_verifies_and_an_altered_one_does_not() -> None:
    verifier = note.parse_vkey(SPEC_VKEY)
    parsed = note.parse_note(SPEC_NOTE)

    assert parsed.text == "This is an example message.\n"
    assert [v.verifier for v in note.verify_note(parsed, [verifier])] == [verifier]
    assert verifier.vkey() == SPEC_VKEY
    altered = note.Note("This is an altered message.\n", parsed.signatures)
    with pytest.raises(note.NoteError, match="does not verify"):
        note.verify_note(altered, [verifier])


def test_rujuk_makes_the_very_head_an_independent_implementation_makes() -> None:
    leaves, nodes = vector_tree()
    root = merkle.root_at(len(leaves), nodes)
    log = signer(VECTORS["log_seed"], VECTORS["origin"])
    head = note.sign_head(
        log,
        note.Checkpoint(VECTORS["origin"], len(leaves), root),
        datetime.fromtimestamp(VECTORS["log_time"], UTC),
    )
    witness = signer(VECTORS["witness_seed"], VECTORS["witness"])
    cosigned = head.with_signatures(
        [witness.cosign(head.text, datetime.fromtimestamp(VECTORS["witness_time"], UTC))]
    )

    assert root.hex() == VECTORS["root"]
    assert cosigned.render() == VECTORS["head"]
    assert log.verifier(note.ED25519).vkey() == VECTORS["log_vkey"]
    assert witness.verifier(note.COSIGNATURE_V1).vkey() == VECTORS["witness_vkey"]


def test_its_head_cosignatures_and_proofs_verify_with_rujuks_code() -> None:
    head = note.parse_note(VECTORS["head"])
    checkpoint = note.parse_checkpoint(head.text)
    plain, timed = note.log_verifiers(
        VECTORS["origin"], note.parse_vkey(VECTORS["log_vkey"]).public_key
    )
    witness = note.parse_vkey(VECTORS["witness_vkey"])
    found = note.verify_note(head, [plain, timed, witness])
    leaves, _ = vector_tree()

    assert checkpoint == note.Checkpoint(
        VECTORS["origin"], len(VECTORS["entries"]), bytes.fromhex(VECTORS["root"])
    )
    assert [(v.verifier, v.time) for v in found] == [
        (plain, None),
        (timed, datetime.fromtimestamp(VECTORS["log_time"], UTC)),
        (witness, datetime.fromtimestamp(VECTORS["witness_time"], UTC)),
    ]
    index = VECTORS["inclusion"]["index"]
    assert merkle.verify_inclusion(
        leaves[index],
        index,
        checkpoint.size,
        [bytes.fromhex(h) for h in VECTORS["inclusion"]["proof"]],
        checkpoint.root_hash,
    )
    assert merkle.verify_consistency(
        VECTORS["old_size"],
        checkpoint.size,
        [bytes.fromhex(h) for h in VECTORS["consistency"]],
        bytes.fromhex(VECTORS["old_root"]),
        checkpoint.root_hash,
    )


def test_a_cosignature_of_another_head_or_time_does_not_verify() -> None:
    head = note.parse_note(VECTORS["head"])
    witness = note.parse_vkey(VECTORS["witness_vkey"])
    cosignature = next(s for s in head.signatures if s.name == VECTORS["witness"])
    forked = note.Checkpoint(VECTORS["origin"], len(VECTORS["entries"]), bytes(32)).text()
    retimed = note.Signature(
        cosignature.name,
        cosignature.key_id,
        (VECTORS["witness_time"] + 1).to_bytes(8, "big") + cosignature.data[8:],
    )

    assert witness.verify(head.text, cosignature)
    assert not witness.verify(forked, cosignature)
    assert not witness.verify(head.text, retimed)


def test_unknown_signatures_are_ignored_but_a_note_needs_one_known() -> None:
    head = note.parse_note(VECTORS["head"])
    stranger = note.Signer("stranger.example/x", Ed25519PrivateKey.generate())
    with_stranger = head.with_signatures([stranger.sign(head.text)])
    witness = note.parse_vkey(VECTORS["witness_vkey"])

    assert len(note.verify_note(with_stranger, [witness])) == 1
    with pytest.raises(note.NoteError, match="no signature on the note is from a trusted key"):
        note.verify_note(head, [stranger.verifier(note.ED25519)])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no blank line\n\u2014 a AAAA\n", "blank line"),
        ("text\n\n", "no signature"),
        ("text\n\n- a AAAAAAAA\n", "starts with"),
        ("text\n\n\u2014 a+b AAAAAAAA\n", "without spaces"),
        ("text\n\n\u2014 a !!!\n", "base64"),
        ("te\txt\n\n\u2014 a AAAAAAAA\n", "control"),
    ],
)
def test_malformed_notes_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(note.NoteError, match=reason):
        note.parse_note(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("origin\n012\nAAAA\n", "leading zeros"),
        ("origin\n12\nAAAA\n", "32"),
        ("origin\n12\n", "three"),
        ("origin\n\n12\nAAAA\n", "three non-empty"),
    ],
)
def test_malformed_checkpoints_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(note.NoteError, match=reason):
        note.parse_checkpoint(text)


def test_a_vkey_whose_id_does_not_match_is_refused() -> None:
    name, _, key = SPEC_VKEY.split("+")
    with pytest.raises(note.NoteError, match="does not match"):
        note.parse_vkey(f"{name}+00000000+{key}")
