"""The bodies of intake's HTTP API, as the OpenAPI document names them: the erasure request
and every response."""

from datetime import datetime

from pydantic import BaseModel, Field


class ReportAccepted(BaseModel):
    case_id: str
    status: str
    status_url: str


class ReferralStatus(BaseModel):
    referral_id: str
    agency_id: str
    service: str
    priority: str
    state: str
    updated_at: datetime


class CaseStatus(BaseModel):
    case_id: str
    district_code: str
    channel: str
    reported_at: datetime
    status: str
    violence_types: list[str]
    erased_at: datetime | None
    referrals: list[ReferralStatus]


class ErasureRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=200, description="No identifying data")


class WhoAmI(BaseModel):
    """Who a token belongs to: never its secret."""

    token_id: str
    role: str
    agency_id: str | None
    districts: list[str] | None = Field(
        description="The districts an operator, coordinator or auditor token serves; null "
        "for a province-level token (every district) and for a partner (bound to its agency)"
    )
    scope: str = Field(description="What the token is bound to: agency:…, province, or codes")


class Erasure(BaseModel):
    case_id: str
    erased_at: datetime
    already_erased: bool


class DisclosedVictim(BaseModel):
    name: str | None = None
    nik: str | None = None
    birth_date: str | None = None
    age_years: int | None = None
    sex: str | None = None
    disability: bool | None = None
    phone: str | None = None
    address: str | None = None


class DisclosedReporter(BaseModel):
    name: str | None = None
    phone: str | None = None


class DisclosedIncident(BaseModel):
    occurred_at: str | None = None
    place: str | None = None
    narrative: str | None = None


class DisclosedDetails(BaseModel):
    """Only the fields the partner's service needs; the others are absent."""

    victim: DisclosedVictim | None = None
    reporter: DisclosedReporter | None = None
    incident: DisclosedIncident | None = None
    village: str | None = None


class Disclosure(BaseModel):
    case_id: str
    agency_id: str
    referral_id: str
    services: list[str]
    fields: list[str]
    details: DisclosedDetails


class DisclosureLogEntry(BaseModel):
    event_id: str
    referral_id: str
    agency_id: str
    token_id: str
    fields: list[str]
    purpose: str
    disclosed_at: datetime
