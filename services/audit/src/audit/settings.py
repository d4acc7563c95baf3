"""Audit's settings, from AUDIT_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore")

    http_port: int = 8084
