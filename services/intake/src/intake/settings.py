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
