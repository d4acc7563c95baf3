"""Where each agency's webhook is: a per-agency file, or one base URL for all."""

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter

from rujuk_contracts.subjects import check_agency_id


class AgencyChannels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = None


_FILE = TypeAdapter(dict[str, AgencyChannels])


class WebhookDirectory:
    def __init__(self, agencies: dict[str, AgencyChannels], base_url: str | None) -> None:
        for agency_id in agencies:
            check_agency_id(agency_id)
        self._agencies = agencies
        self._base_url = base_url.rstrip("/") if base_url else None

    @classmethod
    def load(cls, path: Path | None, base_url: str | None) -> "WebhookDirectory":
        agencies = _FILE.validate_python(json.loads(path.read_text())) if path else {}
        return cls(agencies, base_url)

    def webhook_url(self, agency_id: str) -> str | None:
        own = self._agencies.get(agency_id)
        if own is not None and own.webhook_url:
            return own.webhook_url
        return f"{self._base_url}/{agency_id}" if self._base_url else None
