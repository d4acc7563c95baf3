"""The district SOP as data: a versioned YAML document, validated on load with line numbers.

An SOP names its partner ``directory``, a ``consent`` policy and ordered ``rules``. A rule's
``when`` holds conditions on the triage facts (all must hold; a list inside one condition
means "any of"), and its ``refer`` items say which service goes to which agency, how urgently,
within how many minutes the agency must acknowledge, and who to escalate to.

Choices worth knowing when writing an SOP:
- Escalation always ends at the coordinator: ``decide`` appends it when ``escalate_to`` leaves
  it out, so a chain may be empty in the YAML. The coordinator may appear only last.
- ``pick: by_kecamatan`` chooses the first directory agency that offers the service and lists
  the case's kecamatan by name; agencies serving ``all`` never win a pick, the ``fallback`` does.
  Nor do desa-level agencies (those that list ``villages``): they serve their villages only.
- ``pick: by_village`` chooses the desa-level agency whose ``villages`` (``Kecamatan/Desa``)
  list the case's desa. The desa never leaves intake: ``decide`` cannot pick, so it yields a
  pending pick (the candidates and their villages, from this very SOP version); routing asks
  intake (``case.village_agency_asked``), intake answers with the one candidate that lists the
  case's desa or none (``case.village_agency_found``). When the answer is none, or no answer
  comes within ``ROUTING_VILLAGE_PICK_TIMEOUT_SECONDS``, the referral goes where
  ``pick: by_kecamatan`` would send it: the first agency offering the service that lists the
  case's kecamatan (and no villages), else the ``fallback``. Consent applies as to any
  referral: a withheld ``by_village`` item is withheld (recorded against that answer-none
  agency) and nothing is asked. Two ``by_village`` items of one service in the fired rules are
  one question (the most urgent terms; the first item's fallback).
- Consent is policy, not rule: a service in ``consent.requires_consent`` reaches an agency
  only when the named consent flag is true, unless ``consent.mandatory_reporting`` covers the
  victim's age group and that service, and then the referral records the legal basis.
- Every SOP must give every case a case manager: a rule with an empty ``when`` that refers
  ``case_management``.
- Every SOP names who is paged when a chain runs out, the coordinator included: ``on_call``,
  a list of roles (a duty phone, a head of office's desk: never a person's name) with the
  channels each is paged on, and a ``repeat`` policy (how many rounds, how many minutes apart)
  that pages until someone acknowledges. Their addresses are notify's, never the SOP's.
- An SOP carries its own ``examples``: triage facts and what must follow from them, each on
  behalf of the agency whose mandate it expresses (``speaks_for``). The loader runs them
  (``routing.sop.examples``) and refuses an SOP whose examples fail, as it refuses a typo.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from rujuk_contracts.events import (
    MAX_RETENTION_DAYS,
    VILLAGE_PART_CHARS,
    VILLAGE_PATTERN,
    VILLAGE_SEPARATOR,
    DeliveryChannel,
    Priority,
    Service,
)
from rujuk_contracts.subjects import check_agency_id
from rujuk_contracts.triage import AgeGroup, ConsentGiver, Sex, TriageFacts, ViolenceType

ConsentFlag = Literal["share_with_health", "share_with_police", "share_with_shelter"]

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(
    r"^(?P<first>mon|tue|wed|thu|fri|sat|sun)-(?P<last>mon|tue|wed|thu|fri|sat|sun) "
    r"(?P<opens>\d\d:\d\d)-(?P<closes>\d\d:\d\d)$"
)
ALWAYS_OPEN = "24/7"
MAX_ACKNOWLEDGE_MINUTES = 7 * 24 * 60


class _SopModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class WorkingHours:
    """Opening days and hours of an agency that is not open around the clock."""

    days: tuple[str, ...]
    opens: time
    closes: time


def parse_hours(text: str) -> WorkingHours | None:
    """``None`` for ``24/7``; else the days and hours of ``mon-fri 07:30-15:30``."""
    if text == ALWAYS_OPEN:
        return None
    match = _HOURS.fullmatch(text)
    if match is None:
        raise ValueError(f"must be '24/7' or like 'mon-fri 07:30-15:30', got {text!r}")
    first, last = WEEKDAYS.index(match["first"]), WEEKDAYS.index(match["last"])
    if first > last:
        raise ValueError(f"hours {text!r}: the day range runs backwards")
    try:
        opens, closes = time.fromisoformat(match["opens"]), time.fromisoformat(match["closes"])
    except ValueError as exc:
        raise ValueError(f"hours {text!r}: {exc}") from exc
    if opens >= closes:
        raise ValueError(f"hours {text!r}: opening time must come before closing time")
    return WorkingHours(WEEKDAYS[first : last + 1], opens, closes)


def _village(entry: str) -> str:
    village_parts(entry)
    # As case.village_agency_asked carries it: an SOP whose villages it cannot carry would
    # fail every case the pick fires for, after the case was decided.
    if re.fullmatch(VILLAGE_PATTERN, entry) is None:
        raise ValueError(
            f"a village's kecamatan and desa are at most {VILLAGE_PART_CHARS} characters "
            f"each, got {entry!r}"
        )
    return entry


class Agency(_SopModel):
    """A partner in the district's directory."""

    id: str = Field(description="NATS-token-safe: lowercase letters, digits, dashes")
    name: str = Field(min_length=1, max_length=200)
    services: list[Service] = Field(min_length=1, description="Services it can be referred")
    kecamatan: list[str] | Literal["all"] = Field(description="Kecamatan served, or all")
    hours: str = Field(description="'24/7' or working hours like 'mon-fri 07:30-15:30'")
    channels: list[DeliveryChannel] = Field(min_length=1)
    villages: list[Annotated[str, AfterValidator(_village)]] | None = Field(
        default=None,
        min_length=1,
        description="Desa-level agency: the villages it serves, each 'Kecamatan/Desa' (only "
        "`pick: by_village` reaches it)",
    )
    sample_data: bool = False

    @field_validator("id")
    @classmethod
    def _token_safe(cls, value: str) -> str:
        return check_agency_id(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @property
    def working_hours(self) -> WorkingHours | None:
        return parse_hours(self.hours)

    def serves(self, kecamatan: str) -> bool:
        """True only when the agency lists the kecamatan by name (``all`` never matches) and
        is not a desa-level agency (which serves its ``villages`` only)."""
        return (
            self.kecamatan != "all"
            and self.villages is None
            and normalise(kecamatan) in map(normalise, self.kecamatan)
        )


class ConsentCondition(_SopModel):
    share_with_health: bool | None = None
    share_with_police: bool | None = None
    share_with_shelter: bool | None = None
    given_by: ConsentGiver | None = None


class Condition(_SopModel):
    """Conditions on the triage facts; every one that is set must hold."""

    any_violence_types: list[ViolenceType] | None = Field(default=None, min_length=1)
    none_of_violence_types: list[ViolenceType] | None = Field(default=None, min_length=1)
    age_group: AgeGroup | None = None
    sex: Sex | None = None
    disability: bool | None = None
    immediate_danger: bool | None = None
    injury: bool | None = None
    perpetrator_has_access: bool | None = None
    suicidal_thoughts: bool | None = None
    max_hours_since_sexual_assault: float | None = Field(
        default=None, ge=0, description="Holds when the hours are known and at most this"
    )
    min_hours_since_sexual_assault: float | None = Field(
        default=None, ge=0, description="Holds when the hours are known and more than this"
    )
    sexual_assault_time_known: bool | None = None
    consent: ConsentCondition | None = None
    kecamatan: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _hours_range(self) -> "Condition":
        low, high = self.min_hours_since_sexual_assault, self.max_hours_since_sexual_assault
        if low is not None and high is not None and low >= high:
            raise ValueError(
                "min_hours_since_sexual_assault must be below max_hours_since_sexual_assault"
            )
        return self

    def is_unconditional(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Referral(_SopModel):
    """One ``refer`` item of a rule: a service asked of one agency."""

    service: Service
    agency: str | None = Field(default=None, description="A directory agency id")
    pick: Literal["by_kecamatan", "by_village"] | None = Field(
        default=None,
        description="Choose the agency by the case's kecamatan, or by its desa (intake answers "
        "which desa-level agency lists it) instead",
    )
    fallback: str | None = Field(default=None, description="With pick: when none matches")
    priority: Priority
    acknowledge_within_minutes: int = Field(ge=1, le=MAX_ACKNOWLEDGE_MINUTES)
    escalate_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_way_to_the_agency(self) -> "Referral":
        if (self.agency is None) == (self.pick is None):
            raise ValueError(
                "give either 'agency' or 'pick' (by_kecamatan, by_village), not both or neither"
            )
        if self.pick is not None and self.fallback is None:
            raise ValueError(f"'pick: {self.pick}' needs a 'fallback' agency")
        if self.agency is not None and self.fallback is not None:
            raise ValueError("'fallback' goes with 'pick', not with a fixed 'agency'")
        return self

    def named_agencies(self) -> Iterator[tuple[str, str]]:
        """(field name, agency id) of every agency this item names."""
        if self.agency is not None:
            yield "agency", self.agency
        if self.fallback is not None:
            yield "fallback", self.fallback


class Rule(_SopModel):
    id: str = Field(pattern=SLUG_PATTERN)
    description: str = Field(min_length=1)
    when: Condition
    refer: list[Referral] = Field(min_length=1)


class MandatoryReporting(_SopModel):
    """Services a case of this age group reaches even without consent, and the law saying so."""

    age_group: AgeGroup
    services: list[Service] = Field(min_length=1)
    legal_basis: str = Field(min_length=1, max_length=300)


class ConsentPolicy(_SopModel):
    requires_consent: dict[Service, ConsentFlag] = Field(
        description="Service -> the consent flag that must be true for the case to reach it"
    )
    mandatory_reporting: list[MandatoryReporting] = Field(default_factory=list)

    @model_validator(mode="after")
    def _survivor_decides(self) -> "ConsentPolicy":
        # A guarantee of the system, not a district's choice: no SOP can send an adult's case
        # to the police without the survivor's consent.
        if self.requires_consent.get(Service.POLICE) != "share_with_police":
            raise ValueError("requires_consent must map police to share_with_police")
        for entry in self.mandatory_reporting:
            if entry.age_group == AgeGroup.ADULT and Service.POLICE in entry.services:
                raise ValueError("mandatory reporting to the police is for children only")
            needless = [s.value for s in entry.services if s not in self.requires_consent]
            if needless:
                raise ValueError(
                    f"mandatory_reporting names {', '.join(needless)}, which needs no consent"
                )
        return self

    def mandatory_basis(self, age_group: AgeGroup, service: Service) -> str | None:
        for entry in self.mandatory_reporting:
            if entry.age_group == age_group and service in entry.services:
                return entry.legal_basis
        return None


PageChannel = Literal["sms", "email", "webhook"]
MAX_PAGE_ROUNDS = 20


class OnCallEntry(_SopModel):
    """A role on the on-call list: who, by function, and the channels it is paged on."""

    id: str = Field(pattern=SLUG_PATTERN, description="The role's id (notify holds its addresses)")
    role: str = Field(min_length=1, max_length=200, description="The function, not a name")
    channels: list[PageChannel] = Field(min_length=1)

    @field_validator("channels")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    def page_channels(self) -> list[DeliveryChannel]:
        return [DeliveryChannel(channel) for channel in self.channels]


class RepeatPolicy(_SopModel):
    """Pages repeat, a round at a time, until someone acknowledges or the rounds run out."""

    rounds: int = Field(ge=1, le=MAX_PAGE_ROUNDS)
    every_minutes: int = Field(ge=1, le=MAX_ACKNOWLEDGE_MINUTES)


class OnCall(_SopModel):
    """Who is paged when a referral's escalation chain runs out, the coordinator included."""

    contacts: list[OnCallEntry] = Field(min_length=1)
    repeat: RepeatPolicy


class Retention(_SopModel):
    """How long the district keeps a closed case's identifying data (UU PDP 27/2022: no longer
    than its purpose needs). Intake crypto-shreds the vault record of a case closed this many
    days ago, as a coordinator's erasure does; the case's history stays in the ledger."""

    vault_days_after_close: int = Field(ge=1, le=MAX_RETENTION_DAYS)


class ExpectedReferral(_SopModel):
    """A referral an example expects: the service, and optionally who and how urgently.

    With ``pick: by_village`` it expects a pending pick (the desa decides, which an example's
    facts do not hold); its ``agency``, if given, is the one the case reaches when intake
    answers that no listed village is the case's (or does not answer in time)."""

    service: Service
    agency: str | None = Field(default=None, description="A directory agency id")
    pick: Literal["by_village"] | None = Field(
        default=None, description="A pick by the case's desa, asked of intake"
    )
    min_priority: Priority | None = Field(
        default=None, description="This priority or a more urgent one"
    )
    max_acknowledge_minutes: int | None = Field(
        default=None, ge=1, le=MAX_ACKNOWLEDGE_MINUTES, description="This deadline or a shorter one"
    )


def _one_or_more(value: Any) -> Any:
    """``never: mediation`` reads as ``never: [mediation]``."""
    return [value] if isinstance(value, str) else value


class Expectation(_SopModel):
    """What must follow from an example's facts; each part that is given must hold."""

    refer: list[ExpectedReferral] = Field(
        default_factory=list, description="Referrals that must follow (a service name suffices)"
    )
    never: list[str] = Field(
        default_factory=list, description="Services or agency ids no referral may go to"
    )
    withheld: list[Service] = Field(
        default_factory=list, description="Services withheld for lack of consent"
    )
    consent_override: list[Service] = Field(
        default_factory=list,
        description="Services referred without consent, with the legal basis recorded",
    )

    @field_validator("refer", mode="before")
    @classmethod
    def _service_names(cls, value: Any) -> Any:
        value = _one_or_more(value)
        if isinstance(value, list):
            return [{"service": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("never", "withheld", "consent_override", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _one_or_more(value)

    @model_validator(mode="after")
    def _says_something(self) -> "Expectation":
        if not (self.refer or self.never or self.withheld or self.consent_override):
            raise ValueError("say what must follow: refer, never, withheld or consent_override")
        return self


class Example(_SopModel):
    """An SOP test kept in the SOP: triage facts, what must follow, and whose mandate it is."""

    id: str = Field(pattern=SLUG_PATTERN)
    speaks_for: str = Field(description="The agency (or the coordinator) whose mandate it states")
    description: str | None = Field(default=None, min_length=1, max_length=300)
    facts: TriageFacts = Field(description="district_code defaults to the SOP's")
    expect: Expectation


class Sop(_SopModel):
    """One district's SOP, one version."""

    sop_id: str = Field(pattern=SLUG_PATTERN)
    version: int = Field(ge=1)
    district_code: str = Field(pattern=r"^\d{4}$", description="BPS regency code, e.g. 3514")
    name: str = Field(min_length=1)
    programme: str | None = None
    sample_data: bool
    kecamatan: list[str] = Field(min_length=1, description="Kecamatan of the district")
    coordinator: str = Field(description="Agency id of the coordinator, the end of escalation")
    consent: ConsentPolicy
    directory: list[Agency] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)
    on_call: OnCall = Field(description="Paged when an escalation chain runs out")
    retention: Retention | None = Field(
        default=None, description="Without it, the vault keeps a case until it is erased"
    )
    examples: list[Example] = Field(
        default_factory=list, description="Facts and what must follow; publishing runs them"
    )

    @model_validator(mode="before")
    @classmethod
    def _examples_in_the_district(cls, data: Any) -> Any:
        """An example's facts are of the SOP's district unless they say otherwise."""
        if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
            return data
        district = data.get("district_code")
        district = str(district) if isinstance(district, int) else district
        if not isinstance(district, str) or not re.fullmatch(r"\d{4}", district):
            return data
        return {**data, "examples": [_in_district(item, district) for item in data["examples"]]}

    @field_validator("district_code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def label(self) -> str:
        return f"SOP {self.district_code} v{self.version}"

    def lists_agency(self, agency_id: str) -> bool:
        """Whether the directory names the agency."""
        return any(agency.id == agency_id for agency in self.directory)

    def agency(self, agency_id: str) -> Agency:
        for agency in self.directory:
            if agency.id == agency_id:
                return agency
        raise KeyError(f"{self.label}: agency {agency_id!r} is not in the directory")


def _in_district(example: Any, district: str) -> Any:
    facts = example.get("facts") if isinstance(example, dict) else None
    if not isinstance(facts, dict) or "district_code" in facts:
        return example
    return {**example, "facts": {**facts, "district_code": district}}


def normalise(kecamatan: str) -> str:
    return " ".join(kecamatan.split()).casefold()


def village_parts(entry: str) -> tuple[str, str]:
    """``"Kraksaan/Desa Contoh"`` -> (kecamatan, desa); ValueError naming what is wrong."""
    kecamatan, separator, desa = entry.partition(VILLAGE_SEPARATOR)
    if not separator or not kecamatan.strip() or not desa.strip() or VILLAGE_SEPARATOR in desa:
        raise ValueError(f"a village is written 'Kecamatan/Desa', got {entry!r}")
    return kecamatan.strip(), desa.strip()


def village_key(entry: str) -> tuple[str, str]:
    """A village as compared: (kecamatan, desa) ignoring case and repeated spaces."""
    kecamatan, desa = village_parts(entry)
    return normalise(kecamatan), normalise(desa)
