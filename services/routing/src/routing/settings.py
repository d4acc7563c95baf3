"""Routing's settings, from ROUTING_* environment variables (plus NATS_URL, DATABASE_URL)."""

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from rujuk_runtime.settings import ServiceSettings

SHIPPED_SOPS = Path(__file__).parent / "sops"


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")

    http_port: int = 8082
    sop_dir: Path = Field(
        default=SHIPPED_SOPS,
        description="Folder of <district>.yaml SOPs, the fallback where none was published "
        "through the API (default: the shipped ones)",
    )
    stats_timezone: str = Field(
        default="Asia/Jakarta",
        description="The time zone in which /v1/stats counts days and months (WIB for East Java)",
    )

    @field_validator("stats_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    minute_seconds: float = Field(
        default=60.0,
        gt=0,
        le=60,
        description="How many seconds one SOP minute lasts. 60 in production; tests and demos "
        "compress time with a smaller value (the published deadlines say the real time)",
    )
    village_pick_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="How long a referral picked by village (SOP pick: by_village) waits for "
        "intake's answer before it goes to the agency for no match (by kecamatan, else the "
        "fallback). Real seconds, not compressed with minute_seconds",
    )
    deadline_poll_seconds: float = Field(
        default=0.2, gt=0, le=10, description="How often the deadline watcher looks"
    )
    simulation_chunk_cases: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Cases an impact simulation reads and decides at a time; its progress is "
        "written after each chunk",
    )
