"""Intake's settings, from INTAKE_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    http_port: int = 8081
    master_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Vault master keys, KEY_ID:BASE64(32 bytes), comma-separated, current first",
    )
    max_body_bytes: int = Field(default=64 * 1024, description="Larger report bodies get 413")
    bootstrap_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Tokens installed at start, ROLE[:AGENCY]=SECRET, comma-separated "
        "(stored hashed; a revoked one stays revoked)",
    )
    retention_check_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How often intake looks for closed cases whose vault retention (the "
        "SOP's retention.vault_days_after_close) has run out",
    )
    day_seconds: float = Field(
        default=86_400.0,
        gt=0,
        le=86_400,
        description="How many seconds one retention day lasts. 86400 in production; tests "
        "and demos compress time with a smaller value",
    )
