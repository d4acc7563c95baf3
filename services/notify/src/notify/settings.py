"""Notify's settings, from NOTIFY_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    http_port: int = 8083
    webhook_base_url: str | None = Field(
        default=None,
        description="If set, every agency without its own URL gets POSTs at <base>/<agency_id>",
    )
    partners_file: Path | None = Field(
        default=None, description='JSON {"<agency_id>": {"webhook_url": "..."}} per agency'
    )
    webhook_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key from which each partner's Standard Webhooks secret is derived",
    )
    webhook_timeout_seconds: float = 5.0
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
