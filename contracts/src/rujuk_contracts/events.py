"""Version 1 payloads of every event in the referral lifecycle.

Each payload class names its CloudEvents ``type`` (which carries the schema version) and
its NATS subject. A breaking change is a new class with a new version, published side by side.
"""

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from rujuk_contracts.subjects import AGENCY_ID_PATTERN, event_subject
from rujuk_contracts.triage import ReportChannel, TriageFacts

CASE_ID_PATTERN = r"^[0-9]{4}-[0-9A-HJKMNP-TV-Z]{10}$"
TYPE_PREFIX = "id.rujuk"

CaseId = str
AgencyId = str


class Service(StrEnum):
    HEALTH = "health"
    POLICE = "police"
    SHELTER = "shelter"
    PSYCHOSOCIAL = "psychosocial"
    LEGAL = "legal"
    SOCIAL = "social"
    CASE_MANAGEMENT = "case_management"


class Priority(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class EventPayload(BaseModel):
    """Base of every payload: the aggregate and event name decide type and subject."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aggregate: ClassVar[str]
    event: ClassVar[str]
    version: ClassVar[int] = 1

    case_id: CaseId = Field(pattern=CASE_ID_PATTERN, description="Pseudonymous case id")

    @classmethod
    def event_type(cls) -> str:
        return f"{TYPE_PREFIX}.{cls.aggregate}.{cls.event}.v{cls.version}"

    @classmethod
    def subject(cls) -> str:
        return event_subject(cls.aggregate, cls.event)

    @classmethod
    def schema_uri(cls) -> str:
        return f"urn:rujuk:schema:{cls.aggregate}.{cls.event}:v{cls.version}"


class CaseReported(EventPayload):
    """A report was accepted at intake. Identifying data stays in intake's vault."""

    aggregate = "case"
    event = "reported"

    channel: ReportChannel
    reported_at: datetime
    triage: TriageFacts


class ReferralSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    referral_id: str
    service: Service
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    priority: Priority


class CaseRouted(EventPayload):
    """Routing applied the district SOP; says which rules fired and what followed."""

    aggregate = "case"
    event = "routed"

    sop_id: str
    sop_version: int
    rules_fired: list[str]
    referrals: list[ReferralSummary]


class ReferralRequested(EventPayload):
    """One agency is asked to act. ``referral_id`` is the delivery idempotency key."""

    aggregate = "referral"
    event = "requested"

    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    service: Service
    priority: Priority
    acknowledgement_deadline: datetime
    escalation_chain: list[AgencyId]
    sop_id: str
    sop_version: int
    rule_ids: list[str]


class DeliveryChannel(StrEnum):
    NATS = "nats"
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"


class ReferralDelivered(EventPayload):
    aggregate = "referral"
    event = "delivered"

    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    channels: list[DeliveryChannel]
    attempts: int = Field(ge=1)


class ReferralDeliveryFailed(EventPayload):
    aggregate = "referral"
    event = "delivery_failed"

    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    reason: str = Field(max_length=500)
    attempts: int = Field(ge=1)


class _PartnerReply(EventPayload):
    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)


class ReferralAcknowledged(_PartnerReply):
    aggregate = "referral"
    event = "acknowledged"


class ReferralAccepted(_PartnerReply):
    aggregate = "referral"
    event = "accepted"


class DeclineReason(StrEnum):
    NO_CAPACITY = "no_capacity"
    OUT_OF_MANDATE = "out_of_mandate"
    OUT_OF_AREA = "out_of_area"
    SURVIVOR_DECLINED = "survivor_declined"
    OTHER = "other"


class ReferralDeclined(_PartnerReply):
    aggregate = "referral"
    event = "declined"

    reason: DeclineReason
    note: str | None = Field(default=None, max_length=280, description="No identifying data")


class ReferralCompleted(_PartnerReply):
    aggregate = "referral"
    event = "completed"


class EscalationReason(StrEnum):
    DEADLINE_MISSED = "deadline_missed"
    DECLINED = "declined"
    DELIVERY_FAILED = "delivery_failed"


class ReferralEscalated(EventPayload):
    aggregate = "referral"
    event = "escalated"

    referral_id: str
    from_agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    to_agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    reason: EscalationReason
    step: int = Field(ge=1)


class CaseDetailsDisclosed(EventPayload):
    """An authorised partner read identifying details: who, which fields, why."""

    aggregate = "case"
    event = "details_disclosed"

    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    referral_id: str
    fields: list[str]
    purpose: str = Field(max_length=200)


class CaseClosed(EventPayload):
    aggregate = "case"
    event = "closed"

    closed_by: str
    reason: str = Field(max_length=200)


EVENT_MODELS: dict[str, type[EventPayload]] = {
    model.event_type(): model
    for model in (
        CaseReported,
        CaseRouted,
        ReferralRequested,
        ReferralDelivered,
        ReferralDeliveryFailed,
        ReferralAcknowledged,
        ReferralAccepted,
        ReferralDeclined,
        ReferralCompleted,
        ReferralEscalated,
        CaseDetailsDisclosed,
        CaseClosed,
    )
}


def model_for_type(event_type: str) -> type[EventPayload] | None:
    return EVENT_MODELS.get(event_type)
