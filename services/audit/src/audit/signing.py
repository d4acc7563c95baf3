"""Ed25519 keys for checkpoints: load, generate, sign, and check (no database, no network).

Keys travel as standard base64 of their raw 32 bytes: ``AUDIT_SIGNING_KEY`` (private) or a
file holding that text (``AUDIT_SIGNING_KEY_FILE``); auditors get the public key the same way.
"""

import base64
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import note
from rujuk_contracts.ledger import PUBLIC_KEY_SIZE, Checkpoint, decode_base64, key_id, signed_bytes

PRIVATE_KEY_SIZE = 32


class InvalidKey(ValueError):
    """A key that cannot be read; the text says why."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes_raw()

    @property
    def key_id(self) -> str:
        return key_id(self.public_raw)

    def public_base64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    def private_base64(self) -> str:
        return base64.b64encode(self.private.private_bytes_raw()).decode()

    def signer(self, origin: str) -> note.Signer:
        """This key signing tree heads under the log's origin (audit.note)."""
        return note.Signer(origin, self.private)

    def sign(self, *, seq: int, hash: bytes, time: datetime) -> Checkpoint:
        """A checkpoint of entry ``seq`` with hash ``hash``, signed now."""
        hex_hash = hash.hex()
        message = signed_bytes(seq=seq, hash=hex_hash, time=time, key_id=self.key_id)
        signature = base64.b64encode(self.private.sign(message)).decode()
        return Checkpoint(
            seq=seq, hash=hex_hash, time=time, key_id=self.key_id, signature=signature
        )


def generate() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def parse_private_key(text: str) -> SigningKey:
    try:
        raw = decode_base64(text, PRIVATE_KEY_SIZE, "the signing key")
    except ValueError as exc:
        raise InvalidKey(str(exc)) from exc
    return SigningKey(Ed25519PrivateKey.from_private_bytes(raw))


def parse_public_key(text: str) -> bytes:
    """A public key given as base64 text, or as the path of a file holding it."""
    candidate = Path(text)
    if len(text) < 200 and candidate.is_file():
        text = candidate.read_text()
    try:
        return decode_base64(text, PUBLIC_KEY_SIZE, "the public key")
    except ValueError as exc:
        raise InvalidKey(str(exc)) from exc


def load_or_create_key_file(path: Path) -> SigningKey:
    """The key in ``path``; a missing file is created with a new key, readable by the owner only."""
    if path.exists():
        return parse_private_key(path.read_text())
    key = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key.private_base64() + "\n")
    return key


def check_signature(checkpoint: Checkpoint, public_key: bytes) -> str | None:
    """None when ``public_key`` signed ``checkpoint``; else why not."""
    if checkpoint.key_id != key_id(public_key):
        return f"signed by key {checkpoint.key_id}, not by the trusted key {key_id(public_key)}"
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            checkpoint.signature_bytes(), checkpoint.signed_bytes()
        )
    except InvalidSignature:
        return "the signature does not match: the checkpoint was altered or forged"
    return None
