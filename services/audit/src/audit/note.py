"""Signed notes, checkpoints and cosignatures in the C2SP text forms (no I/O).

- c2sp.org/signed-note: a text ending in a newline, a blank line, then signature lines
  ``— <key name> base64(4-byte key ID || signature)``. Key ID = first four bytes of
  SHA-256(key name || 0x0A || signature type || public key). Verifier keys ("vkeys") are
  ``<name>+<hex key ID>+base64(type || public key)``.
- c2sp.org/tlog-checkpoint: the note text is the origin line, the tree size, the base64 root
  hash (RFC 9162), and optional extension lines (rujuk writes none).
- c2sp.org/tlog-cosignature: type 0x04, Ed25519 over ``cosignature/v1\\ntime <T>\\n`` followed
  by the checkpoint text; the signature is an 8-byte big-endian POSIX time then 64 bytes.

rujuk's log signs each head twice with its one Ed25519 key, under the origin as key name: a
plain Ed25519 note signature (type 0x01, what Go's sumdb/note and most witnesses verify) and
a timestamped one (type 0x04, the cosignature form tlog-checkpoint recommends for logs), which
is where a head's signed time comes from. The two messages cannot be confused: a cosigned
message starts with ``cosignature/v1``, which no origin may be.
"""

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
SIGNATURE_TYPES = {ED25519: "Ed25519", COSIGNATURE_V1: "Ed25519 cosignature/v1"}
EM_DASH = "\u2014"
COSIGNATURE_HEADER = "cosignature/v1"
HASH_SIZE = 32
MAX_SIGNATURES = 64  # the spec asks verifiers to take at least 16


class NoteError(ValueError):
    """Text that is not a well-formed note, checkpoint or key; the message says what is wrong."""


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Signature:
    """One signature line: the key's name and 4-byte ID, and what it signed (after the ID)."""

    name: str
    key_id: bytes
    data: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.data).decode()}\n"

    @property
    def timestamp(self) -> int | None:
        """The POSIX time of a timestamped signature (cosignature/v1), if it is one's shape."""
        return struct.unpack(">Q", self.data[:8])[0] if len(self.data) == 72 else None


def parse_signature_line(line: str) -> Signature:
    body = line.removesuffix("\n")
    prefix = f"{EM_DASH} "
    if not body.startswith(prefix):
        raise NoteError(f"a signature line starts with '{prefix}': {body[:40]!r}")
    name, _, encoded = body[len(prefix) :].partition(" ")
    _check_name(name)
    raw = _b64decode(encoded, f"the signature of {name}")
    if len(raw) < 5:
        raise NoteError(f"the signature of {name} is too short")
    return Signature(name, raw[:4], raw[4:])


@dataclass(frozen=True)
class Note:
    text: str  # ends with a newline; the signed message
    signatures: tuple[Signature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(signature.line() for signature in self.signatures)

    def with_signatures(self, extra: Iterable[Signature]) -> "Note":
        """This note with more signatures; one already on it (same line) is not repeated."""
        lines = list(self.signatures)
        for signature in extra:
            if signature not in lines:
                lines.append(signature)
        return Note(self.text, tuple(lines))


def parse_note(raw: str | bytes) -> Note:
    """A signed note; NoteError says why not."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as exc:
            raise NoteError("a note is UTF-8 text") from exc
    if any(ord(c) < 0x20 and c != "\n" for c in raw):
        raise NoteError("a note holds no control characters but newlines")
    split = raw.rfind("\n\n")
    if split < 0 or not raw.endswith("\n"):
        raise NoteError("a note is text, a blank line, then signature lines, each ending in \\n")
    text, lines = raw[: split + 1], raw[split + 2 :].splitlines(keepends=True)
    if not lines:
        raise NoteError("the note has no signature")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(parse_signature_line(line) for line in lines))


# Checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, size, root hash (c2sp.org/tlog-checkpoint)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
        raise NoteError("a checkpoint is at least three non-empty lines, each ending in \\n")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size != "0" and size.startswith("0")) or not size.isascii():
        raise NoteError(f"the tree size {size!r} is not a decimal without leading zeros")
    root_hash = _b64decode(root, "the root hash")
    if len(root_hash) != HASH_SIZE:
        raise NoteError(f"the root hash is {len(root_hash)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin, int(size), root_hash, tuple(lines[3:-1]))


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: its header, the time, and the checkpoint text."""
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{text}".encode()


# Keys


@dataclass(frozen=True)
class Verifier:
    """A public key under a name, for one signature type (a vkey)."""

    name: str
    signature_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.signature_type not in SIGNATURE_TYPES:
            raise NoteError(f"signature type 0x{self.signature_type:02x} is not supported")
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    def vkey(self) -> str:
        material = base64.b64encode(bytes([self.signature_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def matches(self, signature: Signature) -> bool:
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, text: str, signature: Signature) -> bool:
        """True if ``signature`` (one of this key's) signs ``text`` (a cosignature: with the
        time it carries)."""
        if not self.matches(signature):
            return False
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        if self.signature_type == COSIGNATURE_V1:
            if signature.timestamp is None or signature.timestamp >= 2**63:
                return False
            message, raw = cosigned_message(text, signature.timestamp), signature.data[8:]
        else:
            message, raw = text.encode(), signature.data
        try:
            key.verify(raw, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(text: str) -> Verifier:
    """``name+hexid+base64(type||key)``; NoteError if malformed or its ID does not match."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"a verifier key is name+id+key, not {text[:60]!r}")
    name, hex_id, encoded = parts
    material = _b64decode(encoded, "the verifier key")
    if not material:
        raise NoteError("the verifier key is empty")
    verifier = Verifier(name, material[0], material[1:])
    if verifier.key_id.hex() != hex_id.lower():
        raise NoteError(f"the verifier key's ID {hex_id} does not match its name and key")
    return verifier


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key under a name: signs notes (0x01) and cosigns checkpoints (0x04)."""

    name: str
    private_key: Ed25519PrivateKey

    def verifier(self, signature_type: int) -> Verifier:
        return Verifier(self.name, signature_type, self.private_key.public_key().public_bytes_raw())

    def sign(self, text: str) -> Signature:
        verifier = self.verifier(ED25519)
        return Signature(self.name, verifier.key_id, self.private_key.sign(text.encode()))

    def cosign(self, text: str, when: datetime) -> Signature:
        timestamp = int(when.timestamp())
        verifier = self.verifier(COSIGNATURE_V1)
        raw = self.private_key.sign(cosigned_message(text, timestamp))
        return Signature(self.name, verifier.key_id, struct.pack(">Q", timestamp) + raw)


# Checking notes


@dataclass(frozen=True)
class Verified:
    verifier: Verifier
    signature: Signature

    @property
    def time(self) -> datetime | None:
        stamp = self.signature.timestamp
        if self.verifier.signature_type != COSIGNATURE_V1 or stamp is None:
            return None
        return datetime.fromtimestamp(stamp, UTC)

    def time_or_now(self) -> datetime:
        return self.time or datetime.now(UTC)


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> list[Verified]:
    """The signatures of ``note`` made by known keys, all checked. NoteError if a known key's
    signature fails (a malformed note, per signed-note) or none is known."""
    found: list[Verified] = []
    for signature in note.signatures:
        for verifier in verifiers:
            if verifier.matches(signature):
                if not verifier.verify(note.text, signature):
                    raise NoteError(
                        f"the signature of {signature.name} ({signature.key_id.hex()}) does "
                        "not verify: the note was altered or forged"
                    )
                found.append(Verified(verifier, signature))
    if not found:
        raise NoteError("no signature on the note is from a trusted key")
    return found


def log_verifiers(origin: str, public_key: bytes) -> tuple[Verifier, Verifier]:
    """The two keys a rujuk head is signed under: plain Ed25519 and timestamped."""
    return Verifier(origin, ED25519, public_key), Verifier(origin, COSIGNATURE_V1, public_key)


def sign_head(signer: Signer, checkpoint: Checkpoint, when: datetime) -> Note:
    """A rujuk head: the checkpoint signed under the origin, plainly and with its time."""
    if checkpoint.origin != signer.name:
        raise NoteError("the log signs under its origin")
    if checkpoint.origin == COSIGNATURE_HEADER:
        raise NoteError(f"an origin may not be {COSIGNATURE_HEADER!r}")
    text = checkpoint.text()
    return Note(text, (signer.sign(text), signer.cosign(text, when)))
