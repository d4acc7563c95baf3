"""Routing's settings, from ROUTING_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings

SHIPPED_SOPS = Path(__file__).parent / "sops"


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")

    http_port: int = 8082
    sop_dir: Path = Field(
        default=SHIPPED_SOPS,
        description="Folder of <district>.yaml SOPs, read once at start (default: shipped ones)",
    )
