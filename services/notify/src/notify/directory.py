"""Notify's directory: each agency's channels and language, and each on-call contact's (a
role paged when a referral's chain runs out, keyed by its contact id, with the same fields).

From ``NOTIFY_PARTNERS_FILE`` (JSON, one entry per agency), and ``NOTIFY_WEBHOOK_BASE_URL``
for agencies without a webhook of their own::

    {"rsud-bangil": {"webhook_url": "https://…", "email": "ppa@rsud.example",
                     "sms_number": "+62…", "language": "id"}}

Addresses in the directory are the agency's service desk, never a survivor's.
"""

import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter

from rujuk_contracts.events import DeliveryChannel
from rujuk_contracts.subjects import check_agency_id


class Language(StrEnum):
    INDONESIAN = "id"
    ENGLISH = "en"


class AgencyChannels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = None
    email: str | None = None
    sms_number: str | None = None
    language: Language = Language.INDONESIAN


_FILE = TypeAdapter(dict[str, AgencyChannels])


class Directory:
    def __init__(self, agencies: dict[str, AgencyChannels], base_url: str | None) -> None:
        for agency_id in agencies:
            check_agency_id(agency_id)
        self._agencies = agencies
        self._base_url = base_url.rstrip("/") if base_url else None

    @classmethod
    def load(cls, path: Path | None, base_url: str | None) -> "Directory":
        agencies = _FILE.validate_python(json.loads(path.read_text())) if path else {}
        return cls(agencies, base_url)

    def agencies(self) -> list[str]:
        """The agencies the directory names (with a base URL, others may be delivered to)."""
        return sorted(self._agencies)

    def entry(self, agency_id: str) -> AgencyChannels:
        return self._agencies.get(agency_id) or AgencyChannels()

    def webhook_url(self, agency_id: str) -> str | None:
        own = self.entry(agency_id).webhook_url
        if own:
            return own
        return f"{self._base_url}/{agency_id}" if self._base_url else None

    def language(self, agency_id: str) -> Language:
        return self.entry(agency_id).language

    def channels_for(
        self, agency_id: str, available: set[DeliveryChannel]
    ) -> list[DeliveryChannel]:
        """The channels a referral to the agency goes out on: its NATS feed always, and each
        other channel the agency has an address for and notify has a sender for."""
        entry = self.entry(agency_id)
        wanted = [DeliveryChannel.NATS]
        if self.webhook_url(agency_id):
            wanted.append(DeliveryChannel.WEBHOOK)
        if entry.email:
            wanted.append(DeliveryChannel.EMAIL)
        if entry.sms_number:
            wanted.append(DeliveryChannel.SMS)
        return [c for c in wanted if c in available]

    def page_channels(
        self,
        contact_id: str,
        wanted: list[DeliveryChannel],
        available: set[DeliveryChannel],
    ) -> tuple[list[DeliveryChannel], list[str]]:
        """The channels a page to an on-call contact goes out on: each of ``wanted`` (the SOP's
        channels for that role) that the contact has an address for and notify has a sender
        for, never the NATS feed (a page is for a person, not a partner's system); and, for
        each channel left out, why."""
        entry = self.entry(contact_id)
        addresses = {
            DeliveryChannel.SMS: entry.sms_number,
            DeliveryChannel.EMAIL: entry.email,
            DeliveryChannel.WEBHOOK: self.webhook_url(contact_id),
        }
        usable: list[DeliveryChannel] = []
        missing: list[str] = []
        for channel in dict.fromkeys(wanted):  # each once, in the SOP's order
            if channel not in addresses:
                missing.append(f"{channel}: pages never go on the NATS feed")
            elif not addresses[channel]:
                missing.append(f"{channel}: {NO_ADDRESS[channel]} for {contact_id!r}")
            elif channel not in available:
                missing.append(f"{channel}: {NO_SENDER[channel]}")
            else:
                usable.append(channel)
        if missing and contact_id not in self._agencies:
            missing.append(f"{contact_id!r} is not in NOTIFY_PARTNERS_FILE")
        return usable, missing


NO_ADDRESS = {
    DeliveryChannel.SMS: "no sms_number in NOTIFY_PARTNERS_FILE",
    DeliveryChannel.EMAIL: "no email in NOTIFY_PARTNERS_FILE",
    DeliveryChannel.WEBHOOK: "no webhook_url in NOTIFY_PARTNERS_FILE (nor NOTIFY_WEBHOOK_BASE_URL)",
}
NO_SENDER = {
    DeliveryChannel.SMS: "no SMS gateway configured (NOTIFY_SMS_GATEWAY_URL)",
    DeliveryChannel.EMAIL: "no SMTP server configured (NOTIFY_SMTP_HOST)",
    DeliveryChannel.WEBHOOK: "no webhook sender",
}


WebhookDirectory = Directory  # the earlier name
