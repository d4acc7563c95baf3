"""The audit ledger's signed checkpoint of its hash chain, as published on
``rujuk.audit.checkpoint`` before the ledger became a Merkle tree. Audit signs no new ones:
it now publishes signed tree heads there, C2SP checkpoint notes in plain text (a body that
does not start with ``{``; see docs/audit.md). Old checkpoints stay valid and are read with
this model.

A checkpoint says "the ledger's entry ``seq`` has hash ``hash``", signed by audit with
Ed25519. Everything needed to check one offline is here, with pydantic and the standard
library only; the signature itself is checked with any Ed25519 implementation::

    checkpoint = Checkpoint.model_validate_json(message_body)
    assert checkpoint.key_id == key_id(public_key_raw32)
    ed25519_verify(public_key_raw32, checkpoint.signature_bytes(), checkpoint.signed_bytes())

What is signed (``signed_bytes``) is the RFC 8785 (JCS) form of this object, all ASCII::

    {"hash":"<64 hex>","key_id":"<16 hex>","ledger":"rujuk","seq":1234,
     "time":"2026-03-02T01:00:00.000000Z","type":"id.rujuk.audit.checkpoint.v1"}

``key_id`` is the first 8 bytes of sha256(raw 32-byte public key), in hex. The hash rule of
the entries themselves is in docs/audit.md: sha256(prev_hash || RFC 8785 body).
"""

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CHECKPOINT_TYPE: Final = "id.rujuk.audit.checkpoint.v1"
LEDGER_NAME: Final = "rujuk"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
HEX_HASH_PATTERN = r"^[0-9a-f]{64}$"
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"


def key_id(public_key: bytes) -> str:
    """The short, public name of an Ed25519 public key (its raw 32 bytes)."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:8].hex()


def checkpoint_time(moment: datetime) -> str:
    """A time as checkpoints sign it: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("a checkpoint time must carry its offset")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode_base64(text: str, size: int, what: str) -> bytes:
    """Standard base64 of exactly ``size`` bytes; ValueError says what is wrong."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, not {len(raw)}")
    return raw


class Checkpoint(BaseModel):
    """A signed statement of the ledger's head at one moment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["id.rujuk.audit.checkpoint.v1"] = CHECKPOINT_TYPE
    ledger: Literal["rujuk"] = LEDGER_NAME
    seq: int = Field(ge=1, description="The last entry the checkpoint covers")
    hash: str = Field(pattern=HEX_HASH_PATTERN, description="That entry's hash, hex")
    time: datetime = Field(description="When audit signed it (UTC)")
    key_id: str = Field(pattern=KEY_ID_PATTERN, description="Which public key verifies it")
    signature: str = Field(description="Ed25519 signature of signed_bytes(), standard base64")

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry its offset")
        return value.astimezone(UTC)

    @field_validator("signature")
    @classmethod
    def _signature_size(cls, value: str) -> str:
        decode_base64(value, SIGNATURE_SIZE, "signature")
        return value

    def signed_bytes(self) -> bytes:
        return signed_bytes(seq=self.seq, hash=self.hash, time=self.time, key_id=self.key_id)

    def signature_bytes(self) -> bytes:
        return decode_base64(self.signature, SIGNATURE_SIZE, "signature")

    def hash_bytes(self) -> bytes:
        return bytes.fromhex(self.hash)

    def to_bytes(self) -> bytes:
        """The message body published on ``rujuk.audit.checkpoint``."""
        return json.dumps(
            {
                "type": self.type,
                "ledger": self.ledger,
                "seq": self.seq,
                "hash": self.hash,
                "time": checkpoint_time(self.time),
                "key_id": self.key_id,
                "signature": self.signature,
            },
            separators=(",", ":"),
        ).encode()


def signed_bytes(*, seq: int, hash: str, time: datetime, key_id: str) -> bytes:
    """The exact bytes an Ed25519 checkpoint signature covers (RFC 8785 form, ASCII only)."""
    document = {
        "hash": hash,
        "key_id": key_id,
        "ledger": LEDGER_NAME,
        "seq": seq,
        "time": checkpoint_time(time),
        "type": CHECKPOINT_TYPE,
    }
    # Sorted keys, no spaces, ASCII strings and a small integer: this is exactly RFC 8785.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
