"""Audit's settings, from AUDIT_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    # An empty variable (compose passes `${AUDIT_LOG_ORIGIN:-}`) means the default.
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore", env_ignore_empty=True)

    http_port: int = 8084
    signing_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 private key for checkpoints: standard base64 of its raw 32 bytes "
        "(`rujuk audit keygen` makes one)",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="A file holding the signing key as above; created with a new key if missing",
    )
    public_key: str | None = Field(
        default=None,
        description="The trusted public key (base64, or a file) `verify` checks checkpoints with",
    )
    log_origin: str | None = Field(
        default=None,
        pattern=r"^[^\s+]+$",
        description="The log's name on its signed heads (C2SP checkpoint origin), unique per "
        "ledger, e.g. dp3ak.example.go.id/rujuk [default: rujuk.local/audit/<key id>]",
    )
    witnesses: list[str] = Field(
        default_factory=list,
        description="Witnesses asked to cosign each head (c2sp.org/tlog-witness): "
        "'<vkey> <submission URL prefix>' each",
    )
    checkpoint_every: int = Field(
        default=1000, ge=1, description="Sign a checkpoint after this many new entries"
    )
    checkpoint_interval_seconds: float = Field(
        default=60.0, gt=0, description="...or after this long, whichever comes first"
    )
