"""Triage facts: what routing and partners need to act on a report, and no identifying data."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ReportChannel(StrEnum):
    """How the report reached the programme."""

    HOTLINE = "hotline"
    WALK_IN = "walk_in"
    OUTREACH = "outreach"  # jemput bola
    SAPA_129 = "sapa_129"
    WEB_FORM = "web_form"
    PARTNER_AGENCY = "partner_agency"


class ViolenceType(StrEnum):
    """National categories (SIMFONI-PPA)."""

    PHYSICAL = "physical"  # kekerasan fisik
    PSYCHOLOGICAL = "psychological"  # kekerasan psikis
    SEXUAL = "sexual"  # kekerasan seksual
    EXPLOITATION = "exploitation"  # eksploitasi
    TRAFFICKING = "trafficking"  # trafiking / TPPO
    NEGLECT = "neglect"  # penelantaran
    OTHER = "other"  # lainnya


class AgeGroup(StrEnum):
    CHILD = "child"  # under 18 (UU 35/2014 on child protection)
    ADULT = "adult"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"


class ConsentGiver(StrEnum):
    SURVIVOR = "survivor"
    GUARDIAN = "guardian"


class Consent(BaseModel):
    """Which services the survivor (or guardian) agreed to share the case with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share_with_health: bool = False
    share_with_police: bool = False
    share_with_shelter: bool = False
    given_by: ConsentGiver = ConsentGiver.SURVIVOR


class TriageFacts(BaseModel):
    """The facts an SOP rule can match on. Never names, NIK, phones, addresses or narrative."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    violence_types: list[ViolenceType] = Field(min_length=1)
    age_group: AgeGroup
    sex: Sex
    disability: bool = False
    immediate_danger: bool = False
    injury: bool = False
    hours_since_sexual_assault: float | None = Field(
        default=None, ge=0, description="Hours between the sexual assault and the report, if any"
    )
    perpetrator_has_access: bool = False
    suicidal_thoughts: bool = False
    consent: Consent = Field(default_factory=Consent)
    district_code: str = Field(
        pattern=r"^\d{2}\.?\d{2}$", description="BPS regency code, e.g. 3514"
    )
    kecamatan: str | None = Field(default=None, max_length=64, description="Sub-district name")

    @property
    def district(self) -> str:
        """The district code without the dot: ``35.14`` -> ``3514``."""
        return self.district_code.replace(".", "")
