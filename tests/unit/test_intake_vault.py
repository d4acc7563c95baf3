"""The vault: master key rotation keeps old cases readable; erasure is for ever."""

import base64
import json

import pytest

from intake.vault import SealedRecord, Vault, VaultError, new_master_key_spec, parse_master_keys
from rujuk.samples import INVENTED_NIK

# Invented; the NIK-shaped value has province code 99, which does not exist.
DATA: dict[str, object] = {"victim": {"name": "CONTOH Nama Rekaan", "nik": INVENTED_NIK}}


def test_rotation_new_cases_use_the_first_key_and_old_ones_stay_readable() -> None:
    old_spec, new_spec = new_master_key_spec("2025a"), new_master_key_spec("2026a")
    before = Vault(parse_master_keys(old_spec))
    old_case = before.seal("3514-AAAAAAAAAA", DATA)
    assert old_case.key_id == "2025a"

    rotated = Vault(parse_master_keys(f"{new_spec},{old_spec}"))  # the new key first
    new_case = rotated.seal("3514-BBBBBBBBBB", DATA)
    assert new_case.key_id == "2026a"
    assert rotated.open("3514-AAAAAAAAAA", old_case) == DATA
    assert rotated.open("3514-BBBBBBBBBB", new_case) == DATA

    # Retiring the old key is only safe once no case is sealed under it any more.
    retired = Vault(parse_master_keys(new_spec))
    with pytest.raises(VaultError, match="2025a"):
        retired.open("3514-AAAAAAAAAA", old_case)


def test_a_record_is_bound_to_its_case_and_to_its_key() -> None:
    vault = Vault(parse_master_keys(new_master_key_spec("k1")))
    sealed = vault.seal("3514-AAAAAAAAAA", DATA)
    with pytest.raises(VaultError):
        vault.open("3514-CCCCCCCCCC", sealed)  # moved to another case: refused
    other = Vault({"k1": base64.b64decode(new_master_key_spec("k1").split(":")[1])})
    with pytest.raises(VaultError):
        other.open("3514-AAAAAAAAAA", sealed)  # same id, another key: refused
    assert b"CONTOH" not in sealed.ciphertext + sealed.wrapped_key
    assert json.dumps(DATA).encode() not in sealed.ciphertext


def test_without_the_wrapped_key_nothing_opens() -> None:
    vault = Vault(parse_master_keys(new_master_key_spec("k1")))
    sealed = vault.seal("3514-AAAAAAAAAA", DATA)
    shredded = SealedRecord(sealed.key_id, b"", sealed.ciphertext)
    with pytest.raises((VaultError, ValueError)):
        vault.open("3514-AAAAAAAAAA", shredded)


@pytest.mark.parametrize(
    "spec", ["", "nokey", "k1:not-base64!", f"k1:{base64.b64encode(b'short').decode()}"]
)
def test_bad_master_key_settings_are_refused(spec: str) -> None:
    with pytest.raises(VaultError):
        parse_master_keys(spec)


# --- notes: free text sealed under the case's own key --------------------------------------

NOTE_TEXT = "CONTOH Korban pindah ke Jl. Fiktif No. 9, HP 0800-0000-0009"


def test_a_note_is_sealed_under_its_cases_key_and_only_that_case_and_note_open_it() -> None:
    vault = Vault(parse_master_keys(new_master_key_spec("k1")))
    case = vault.seal("3514-AAAAAAAAAA", DATA)
    other_case = vault.seal("3514-CCCCCCCCCC", DATA)
    note_id = "note-" + "11" * 16
    sealed = vault.seal_note("3514-AAAAAAAAAA", case, note_id, NOTE_TEXT)
    assert b"CONTOH" not in sealed
    assert vault.open_note("3514-AAAAAAAAAA", case, note_id, sealed) == NOTE_TEXT
    with pytest.raises(VaultError):  # another note's id: refused (no swapping notes)
        vault.open_note("3514-AAAAAAAAAA", case, "note-" + "22" * 16, sealed)
    with pytest.raises(VaultError):  # another case's key: refused
        vault.open_note("3514-CCCCCCCCCC", other_case, note_id, sealed)
    with pytest.raises(VaultError):  # a note is not the case's record, nor the other way
        vault.open("3514-AAAAAAAAAA", SealedRecord(case.key_id, case.wrapped_key, sealed))


def test_a_note_cannot_be_opened_or_written_once_its_case_key_is_gone() -> None:
    """What erasure leaves: the wrapped key is dropped, and with it every note of the case."""
    vault = Vault(parse_master_keys(new_master_key_spec("k1")))
    case = vault.seal("3514-AAAAAAAAAA", DATA)
    note_id = "note-" + "33" * 16
    sealed = vault.seal_note("3514-AAAAAAAAAA", case, note_id, NOTE_TEXT)
    shredded = SealedRecord(case.key_id, b"\x00" * len(case.wrapped_key), b"")
    with pytest.raises(VaultError):
        vault.open_note("3514-AAAAAAAAAA", shredded, note_id, sealed)
    with pytest.raises(VaultError):
        vault.seal_note("3514-AAAAAAAAAA", shredded, note_id, NOTE_TEXT)
