"""Which signing key and which trusted public key audit uses, from its settings."""

from audit import signing
from audit.settings import AuditSettings
from audit.signing import SigningKey


def signing_key(settings: AuditSettings) -> SigningKey | None:
    """The checkpoint key: AUDIT_SIGNING_KEY, else AUDIT_SIGNING_KEY_FILE (created if missing)."""
    if settings.signing_key is not None:
        return signing.parse_private_key(settings.signing_key.get_secret_value())
    if settings.signing_key_file is not None:
        return signing.load_or_create_key_file(settings.signing_key_file)
    return None


def log_origin(settings: AuditSettings, key: SigningKey | None = None) -> str | None:
    """The origin the log's heads carry: AUDIT_LOG_ORIGIN, else one named after the key."""
    if settings.log_origin:
        return settings.log_origin
    key = key or signing_key(settings)
    return None if key is None else f"{DEFAULT_ORIGIN_PREFIX}{key.key_id}"


DEFAULT_ORIGIN_PREFIX = "rujuk.local/audit/"


def trusted_public_key(settings: AuditSettings, given: str | None = None) -> bytes | None:
    """The public key to check checkpoints against: given, AUDIT_PUBLIC_KEY, or the signer's."""
    text = given or settings.public_key
    if text:
        return signing.parse_public_key(text)
    if settings.signing_key is not None or (
        settings.signing_key_file is not None and settings.signing_key_file.exists()
    ):
        key = signing_key(settings)
        return key.public_raw if key else None
    return None
