"""The vault's master key setting and what its refusals say (issue 26: each test here kills
mutants of intake/vault.py that survived)."""

import base64
import json
from dataclasses import replace

import pytest

from intake.vault import NONCE_BYTES, Vault, VaultError, parse_master_keys

KEY = bytes(range(32))  # invented, for the tests only
ENCODED = base64.b64encode(KEY).decode()
TAG_BYTES = 16


def test_several_master_keys_are_read_in_order_the_first_current() -> None:
    other = bytes(reversed(KEY))
    spec = f" k2026:{base64.b64encode(other).decode()} , k2025:{ENCODED} ,"
    keys = parse_master_keys(spec)
    assert keys == {"k2026": other, "k2025": KEY}
    assert Vault(keys).current_key_id == "k2026"


@pytest.mark.parametrize("spec", [f":{ENCODED}", "k1", f"k1{ENCODED}"])
def test_a_master_key_without_its_id_is_refused_with_the_format(spec: str) -> None:
    with pytest.raises(VaultError) as refused:
        parse_master_keys(spec)
    assert str(refused.value) == "master keys are written as KEY_ID:BASE64KEY, comma-separated"


def test_the_key_id_ends_at_the_first_colon() -> None:
    with pytest.raises(VaultError) as refused:
        parse_master_keys(f"k:1:{ENCODED}")
    assert str(refused.value) == "master key 'k' is not valid base64"


def test_a_master_key_with_characters_outside_base64_is_refused() -> None:
    spec = f"k1:{ENCODED[:10]}!{ENCODED[10:]}"
    with pytest.raises(VaultError) as refused:
        parse_master_keys(spec)
    assert str(refused.value) == "master key 'k1' is not valid base64"


def test_a_master_key_of_the_wrong_length_says_its_length() -> None:
    with pytest.raises(VaultError) as refused:
        parse_master_keys(f"k1:{base64.b64encode(KEY[:16]).decode()}")
    assert str(refused.value) == "master key 'k1' must be 32 bytes, got 16"


@pytest.mark.parametrize("spec", ["", " , ,"])
def test_no_master_key_at_all_is_refused(spec: str) -> None:
    with pytest.raises(VaultError) as refused:
        parse_master_keys(spec)
    assert str(refused.value) == "no master key configured"


def test_a_vault_without_master_keys_is_refused() -> None:
    with pytest.raises(VaultError) as refused:
        Vault({})
    assert str(refused.value) == "no master key configured"


def test_a_record_that_does_not_decrypt_names_its_case() -> None:
    vault = Vault({"k1": KEY})
    sealed = vault.seal("3514-AAAAAAAAAA", {"CONTOH": 1})
    with pytest.raises(VaultError) as moved:  # the data key is bound to its case
        vault.open("3514-BBBBBBBBBB", sealed)
    assert str(moved.value) == "case 3514-BBBBBBBBBB: data key does not unwrap"
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    tampered = replace(sealed, ciphertext=sealed.ciphertext[:-1] + flipped)
    with pytest.raises(VaultError) as refused:
        vault.open("3514-AAAAAAAAAA", tampered)
    assert str(refused.value) == "case 3514-AAAAAAAAAA: vault record does not decrypt"


def test_the_sealed_data_is_compact_json() -> None:
    data = {"victim": {"name": "CONTOH Nama Rekaan", "age_years": 30}}
    sealed = Vault({"k1": KEY}).seal("3514-AAAAAAAAAA", data)
    compact = json.dumps(data, separators=(",", ":")).encode()
    assert len(sealed.ciphertext) == NONCE_BYTES + len(compact) + TAG_BYTES


def test_a_note_opens_only_under_its_own_case_and_note_id() -> None:
    vault = Vault({"k1": KEY})
    record = vault.seal("3514-AAAAAAAAAA", {"CONTOH": 1})
    first, other = "note-" + "1" * 32, "note-" + "2" * 32
    sealed = vault.seal_note("3514-AAAAAAAAAA", record, first, "catatan contoh")
    assert vault.open_note("3514-AAAAAAAAAA", record, first, sealed) == "catatan contoh"
    with pytest.raises(VaultError) as moved:  # a note's text moved under another note's id
        vault.open_note("3514-AAAAAAAAAA", record, other, sealed)
    assert str(moved.value) == f"case 3514-AAAAAAAAAA: note {other} does not decrypt"
