"""Signed checkpoints and export bundles, checked offline: no database, no network."""

import base64
import json
from datetime import UTC, datetime

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import bundle, merkle, note, signing
from audit.chain import Entry, FailureKind, body_of
from audit.replay import aggregate_and_event
from rujuk_contracts.ledger import Checkpoint, key_id
from tests.unit.test_audit_chain import CASE_ID, case_story, chained

OTHER_CASE_ID = "3513-0123456789"
SIGNED_AT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> signing.SigningKey:
    return signing.generate()


def interleaved() -> list[Entry]:
    """Two cases' events interleaved, as the ledger would hold them: seqs 1-10."""
    events = [e for pair in zip(case_story(OTHER_CASE_ID), case_story(), strict=True) for e in pair]
    return chained(events)


def test_a_checkpoint_signs_the_rfc8785_form_and_verifies_with_any_ed25519(
    key: signing.SigningKey,
) -> None:
    checkpoint = key.sign(seq=7, hash=bytes(range(32)), time=SIGNED_AT)
    published = Checkpoint.model_validate_json(checkpoint.to_bytes())

    expected = rfc8785.dumps(
        {
            "type": "id.rujuk.audit.checkpoint.v1",
            "ledger": "rujuk",
            "seq": 7,
            "hash": bytes(range(32)).hex(),
            "time": "2026-03-02T02:00:00.000000Z",
            "key_id": key_id(key.public_raw),
        }
    )
    assert published == checkpoint
    assert published.signed_bytes() == expected
    # What an outsider does: the contracts model, the raw public key, any Ed25519 library.
    Ed25519PublicKey.from_public_bytes(key.public_raw).verify(
        published.signature_bytes(), published.signed_bytes()
    )
    assert signing.check_signature(published, key.public_raw) is None


def test_an_altered_or_foreign_checkpoint_is_refused(key: signing.SigningKey) -> None:
    checkpoint = key.sign(seq=7, hash=bytes(32), time=SIGNED_AT)
    moved = checkpoint.model_copy(update={"seq": 6})
    other = signing.generate()

    assert "does not match" in (signing.check_signature(moved, key.public_raw) or "")
    assert "not by the trusted key" in (signing.check_signature(checkpoint, other.public_raw) or "")


def test_keys_read_as_base64_and_refuse_the_wrong_size(key: signing.SigningKey) -> None:
    assert signing.parse_private_key(key.private_base64()).public_raw == key.public_raw
    assert signing.parse_public_key(key.public_base64()) == key.public_raw
    with pytest.raises(signing.InvalidKey, match="32 bytes"):
        signing.parse_public_key(base64.b64encode(b"short").decode())
    with pytest.raises(signing.InvalidKey, match="base64"):
        signing.parse_private_key("not base64 at all!")


ORIGIN = "example.org/rujuk-audit-test"
WITNESS = signing.generate().signer("witness.example/w1")


def make_bundle(
    key: signing.SigningKey, entries: list[Entry], head_size: int, *, cosigned: bool = True
) -> bytes:
    """The bundle export writes: the case's entries under a head of ``head_size``."""
    leaves = [merkle.leaf_hash(body_of(entry)) for entry in entries]
    created, _ = merkle.append_leaves([], 0, leaves[:head_size])
    nodes = {(level, index): digest for level, index, digest in created}
    checkpoint = note.Checkpoint(ORIGIN, head_size, merkle.root_at(head_size, nodes))
    head = note.sign_head(key.signer(ORIGIN), checkpoint, SIGNED_AT)
    if cosigned:
        head = head.with_signatures([WITNESS.cosign(head.text, SIGNED_AT)])
    case = [entry for entry in entries if entry.case_id == CASE_ID]
    proofs = {
        entry.seq: merkle.inclusion_proof(entry.seq - 1, head_size, lambda keys: nodes)
        for entry in case
        if entry.seq <= head_size
    }
    return json.dumps(bundle.build(CASE_ID, case, head.render(), proofs, SIGNED_AT)).encode()


def test_a_good_bundle_verifies_offline_and_holds_nothing_of_another_case(
    key: signing.SigningKey,
) -> None:
    entries = interleaved()
    raw = make_bundle(key, entries, head_size=10)
    witness = WITNESS.verifier(note.COSIGNATURE_V1)

    result = bundle.verify_bundle(raw, key.public_raw, witnesses=[witness])

    assert result.ok, result.failure
    assert (result.case_entries, result.head_size, result.witnesses) == (
        5,
        10,
        ("witness.example/w1",),
    )
    assert [item["seq"] for item in json.loads(raw)["entries"]] == [2, 4, 6, 8, 10]
    others = [entry for entry in entries if entry.case_id != CASE_ID]
    for entry in others:  # no other case's id, event id, or event content
        assert entry.event_id.encode() not in raw
        assert entry.event.encode() not in raw
    assert OTHER_CASE_ID.encode() not in raw


def test_a_bundle_with_one_altered_entry_names_it(key: signing.SigningKey) -> None:
    document = json.loads(make_bundle(key, interleaved(), head_size=10))
    altered = next(item for item in document["entries"] if item["seq"] == 6)
    event = json.loads(altered["event"])
    event["data"]["agency_id"] = "rsud-lain"
    altered["event"] = rfc8785.dumps(event).decode()

    result = bundle.verify_bundle(json.dumps(document).encode(), key.public_raw)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (6, FailureKind.HASH_MISMATCH)


def test_a_bundle_carrying_another_cases_entry_is_refused(key: signing.SigningKey) -> None:
    document = json.loads(make_bundle(key, interleaved(), head_size=10))
    document["entries"][1]["case_id"] = OTHER_CASE_ID

    result = bundle.verify_bundle(json.dumps(document).encode(), key.public_raw)

    assert result.failure is not None
    assert result.failure.seq == 4
    assert "another case's" in result.failure.detail


def test_a_bundle_needs_the_trusted_key_a_covering_head_and_its_witnesses(
    key: signing.SigningKey,
) -> None:
    entries = interleaved()
    stranger = signing.generate()
    witness = WITNESS.verifier(note.COSIGNATURE_V1)

    wrong_key = bundle.verify_bundle(make_bundle(key, entries, 10), stranger.public_raw)
    uncovered = bundle.verify_bundle(make_bundle(key, entries, 6), key.public_raw)
    unwitnessed = bundle.verify_bundle(
        make_bundle(key, entries, 10, cosigned=False), key.public_raw, witnesses=[witness]
    )

    assert wrong_key.failure is not None
    assert wrong_key.failure.kind is FailureKind.BAD_HEAD
    assert uncovered.failure is not None
    assert (uncovered.failure.seq, uncovered.failure.kind) == (7, FailureKind.STALE_HEAD)
    assert "2 later entries of the case" in uncovered.failure.detail
    assert unwitnessed.failure is not None
    assert "cosigned by 0 of the 1 witnesses required" in unwitnessed.failure.detail


def test_replayed_events_get_token_safe_subjects() -> None:
    assert aggregate_and_event("id.rujuk.case.reported.v1") == ("case", "reported")
    assert aggregate_and_event("id.rujuk.referral.reply_refused.v1") == (
        "referral",
        "reply_refused",
    )
    assert aggregate_and_event("org.example.thing happened") == (
        "other",
        "org_example_thing_happened",
    )
