"""The PII vault: identifying data sealed with AES-GCM under a per-case data key.

Each case gets a random 256-bit data key; the key is wrapped (AES-GCM) by the master key named
by its key id. Rotation: new cases use the current master key; older ones stay readable while
their key id is still configured. Destroying a case's wrapped key (crypto-shredding) makes its
ciphertext unreadable for ever.
"""

import base64
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class VaultError(Exception):
    pass


@dataclass(frozen=True)
class SealedRecord:
    key_id: str
    wrapped_key: bytes  # nonce || AES-GCM(master, data key)
    ciphertext: bytes  # nonce || AES-GCM(data key, JSON)


def parse_master_keys(spec: str) -> dict[str, bytes]:
    """``id1:base64key,id2:base64key`` -> {id: 32-byte key}. The first one is current."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id:
            raise VaultError("master keys are written as KEY_ID:BASE64KEY, comma-separated")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise VaultError(f"master key {key_id!r} is not valid base64") from exc
        if len(key) != 32:
            raise VaultError(f"master key {key_id!r} must be 32 bytes, got {len(key)}")
        keys[key_id] = key
    if not keys:
        raise VaultError("no master key configured")
    return keys


def new_master_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class Vault:
    def __init__(self, master_keys: dict[str, bytes]) -> None:
        if not master_keys:
            raise VaultError("no master key configured")
        self._keys = master_keys
        self.current_key_id = next(iter(master_keys))

    def seal(self, case_id: str, data: dict[str, object]) -> SealedRecord:
        data_key = AESGCM.generate_key(bit_length=256)
        plaintext = json.dumps(data, separators=(",", ":")).encode()
        aad = case_id.encode()  # binds the ciphertext to its case
        return SealedRecord(
            key_id=self.current_key_id,
            wrapped_key=_encrypt(self._keys[self.current_key_id], data_key, aad),
            ciphertext=_encrypt(data_key, plaintext, aad),
        )

    def open(self, case_id: str, record: SealedRecord) -> dict[str, object]:
        data_key = self._data_key(case_id, record)
        try:
            data: dict[str, object] = json.loads(
                _decrypt(data_key, record.ciphertext, case_id.encode())
            )
        except InvalidTag as exc:
            raise VaultError(f"case {case_id}: vault record does not decrypt") from exc
        return data

    def seal_note(self, case_id: str, record: SealedRecord, note_id: str, text: str) -> bytes:
        """A note's text under its case's own data key, so that erasing the case (dropping
        its wrapped key) makes the note unreadable too; bound to its case and note id."""
        data_key = self._data_key(case_id, record)
        return _encrypt(data_key, text.encode(), _note_aad(case_id, note_id))

    def open_note(self, case_id: str, record: SealedRecord, note_id: str, sealed: bytes) -> str:
        data_key = self._data_key(case_id, record)
        try:
            return _decrypt(data_key, sealed, _note_aad(case_id, note_id)).decode()
        except InvalidTag as exc:
            raise VaultError(f"case {case_id}: note {note_id} does not decrypt") from exc

    def _data_key(self, case_id: str, record: SealedRecord) -> bytes:
        master = self._keys.get(record.key_id)
        if master is None:
            raise VaultError(f"master key {record.key_id!r} is not configured")
        try:
            return _decrypt(master, record.wrapped_key, case_id.encode())
        except InvalidTag as exc:
            raise VaultError(f"case {case_id}: data key does not unwrap") from exc


def _note_aad(case_id: str, note_id: str) -> bytes:
    return f"{case_id}/notes/{note_id}".encode()


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
