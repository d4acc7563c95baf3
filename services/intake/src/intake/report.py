"""The report an operator files: a clinical-form model, and the triage facts derived from it."""

import hashlib
import secrets
from datetime import UTC, date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from rujuk_contracts.triage import (
    AgeGroup,
    Consent,
    ReportChannel,
    Sex,
    TriageFacts,
    ViolenceType,
)

ADULT_AGE_YEARS = 18  # UU 35/2014: a child is anyone under 18
CASE_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


class Relationship(StrEnum):
    """The reporter's relationship to the victim."""

    SELF = "self"
    PARENT = "parent"
    RELATIVE = "relative"
    SPOUSE = "spouse"
    NEIGHBOUR = "neighbour"
    TEACHER = "teacher"
    HEALTH_WORKER = "health_worker"
    VILLAGE_OFFICIAL = "village_official"
    CADRE = "cadre"
    OTHER = "other"


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# What the model validator below says, in the OpenAPI document too: at least one of the two,
# and not as null.
NEEDS_AN_AGE: JsonDict = {
    "anyOf": [
        {"required": ["birth_date"], "properties": {"birth_date": {"type": "string"}}},
        {"required": ["age_years"], "properties": {"age_years": {"type": "integer"}}},
    ]
}


class Victim(_Form):
    """Identifying fields go to the vault; only age group, sex and disability leave intake.
    Give ``birth_date`` or ``age_years`` (at least one); the age on the day of the report
    (from the birth date when both are given) makes ``triage.age_group``: ``child`` under 18
    (UU 35/2014), else ``adult``."""

    model_config = ConfigDict(json_schema_extra=NEEDS_AN_AGE)

    name: str = Field(min_length=1, max_length=120)
    nik: str | None = Field(default=None, pattern=r"^\d{16}$", description="16-digit NIK")
    birth_date: date | None = Field(
        default=None,
        description="Give this or age_years. The age on the day of the report (UTC) makes "
        "triage.age_group: under 18 is a child (vault; never leaves intake)",
    )
    age_years: int | None = Field(
        default=None,
        ge=0,
        le=120,
        description="Give this or birth_date (birth_date wins when both are given): under 18 "
        "is a child (vault)",
    )
    sex: Sex
    disability: bool = False
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{6,20}$")
    address: str | None = Field(default=None, max_length=300)

    @model_validator(mode="after")
    def _needs_an_age(self) -> "Victim":
        if self.birth_date is None and self.age_years is None:
            raise ValueError("give victim.birth_date or victim.age_years")
        return self

    def age_on(self, day: date) -> int:
        if self.birth_date is None:
            assert self.age_years is not None
            return self.age_years
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years


class Reporter(_Form):
    name: str | None = Field(default=None, max_length=120)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{6,20}$")
    relationship: Relationship


class Incident(_Form):
    violence_types: list[ViolenceType] = Field(min_length=1, max_length=7)
    occurred_at: datetime | None = Field(default=None, description="When, if known (ISO 8601)")
    place: str | None = Field(default=None, max_length=300, description="Where (vault)")
    narrative: str | None = Field(default=None, max_length=10_000, description="Story (vault)")


class RiskFacts(_Form):
    immediate_danger: bool = False
    injury: bool = False
    hours_since_sexual_assault: float | None = Field(default=None, ge=0, le=24 * 365)
    perpetrator_has_access: bool = False
    suicidal_thoughts: bool = False


class Report(_Form):
    """One report of violence, as filed by an operator."""

    channel: ReportChannel
    district_code: str = Field(pattern=r"^\d{2}\.?\d{2}$", examples=["3514"])
    kecamatan: str | None = Field(
        default=None,
        max_length=64,
        description="Sub-district name, passed on as triage.kecamatan as typed; SOP rules and "
        "`pick: by_kecamatan` compare it ignoring case and repeated spaces",
    )
    village: str | None = Field(default=None, max_length=64, description="Desa/kelurahan (vault)")
    victim: Victim
    reporter: Reporter
    incident: Incident
    risk: RiskFacts = Field(default_factory=RiskFacts)
    consent: Consent = Field(default_factory=Consent)

    @property
    def district(self) -> str:
        """The district's BPS code without its dot: ``35.14`` is ``3514``."""
        return self.district_code.replace(".", "")

    @model_validator(mode="after")
    def _sexual_assault_hours_need_sexual_violence(self) -> "Report":
        if (
            self.risk.hours_since_sexual_assault is not None
            and ViolenceType.SEXUAL not in self.incident.violence_types
        ):
            raise ValueError(
                "risk.hours_since_sexual_assault is given but incident.violence_types "
                "has no 'sexual'"
            )
        return self


IDENTIFYING_FIELDS = (
    "victim.name",
    "victim.nik",
    "victim.birth_date",
    "victim.phone",
    "victim.address",
    "reporter.name",
    "reporter.phone",
    "incident.place",
    "incident.narrative",
    "village",
)


def triage_of(report: Report, today: date | None = None) -> TriageFacts:
    """What routing and partners may know: no names, NIK, phones, addresses or narrative."""
    age = report.victim.age_on(today or datetime.now(UTC).date())
    return TriageFacts(
        violence_types=sorted(set(report.incident.violence_types)),
        age_group=AgeGroup.CHILD if age < ADULT_AGE_YEARS else AgeGroup.ADULT,
        sex=report.victim.sex,
        disability=report.victim.disability,
        immediate_danger=report.risk.immediate_danger,
        injury=report.risk.injury,
        hours_since_sexual_assault=report.risk.hours_since_sexual_assault,
        perpetrator_has_access=report.risk.perpetrator_has_access,
        suicidal_thoughts=report.risk.suicidal_thoughts,
        consent=report.consent,
        district_code=report.district,
        kecamatan=report.kecamatan,
    )


def identifying_data(report: Report) -> dict[str, object]:
    """The part of the report that only the vault holds."""
    return {
        "victim": report.victim.model_dump(
            mode="json", include={"name", "nik", "birth_date", "age_years", "phone", "address"}
        ),
        "reporter": report.reporter.model_dump(
            # equivalent: without mode="json" too, the reporter's fields are text either way
            mode="json",  # pragma: no mutate
            include={"name", "phone"},
        ),
        "incident": report.incident.model_dump(
            mode="json", include={"place", "narrative", "occurred_at"}
        ),
        "village": report.village,
    }


def new_case_id(district: str) -> str:
    """A pseudonymous case id: the district, then 10 random Crockford base32 characters."""
    return f"{district}-" + "".join(secrets.choice(CASE_ID_ALPHABET) for _ in range(10))


def request_hash(report: Report) -> bytes:
    """What tells a retry of this report from another report under the same Idempotency-Key."""
    return hashlib.sha256(report.model_dump_json().encode()).digest()
