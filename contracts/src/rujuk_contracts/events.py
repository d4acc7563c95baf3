"""Version 1 payloads of every event in the referral lifecycle.

Each payload class names its CloudEvents ``type`` (which carries the schema version) and
its NATS subject. A breaking change is a new class with a new version, published side by side.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from rujuk_contracts.subjects import AGENCY_ID_PATTERN, event_subject
from rujuk_contracts.triage import ReportChannel, TriageFacts

CASE_ID_PATTERN = r"^[0-9]{4}-[0-9A-HJKMNP-TV-Z]{10}$"
DISTRICT_CODE_PATTERN = r"^\d{4}$"  # BPS regency code without its dot, e.g. 3514
NOTE_ID_PATTERN = r"^note-[0-9a-f]{32}$"
TYPE_PREFIX = "id.rujuk"

CaseId = str
AgencyId = str
DistrictCode = Annotated[str, StringConstraints(pattern=DISTRICT_CODE_PATTERN)]
NoteRef = Annotated[
    str,
    StringConstraints(pattern=NOTE_ID_PATTERN),
    Field(
        description="The id of a free-text note kept, sealed under the case's key, in intake's "
        "vault (POST /v1/cases/{case_id}/notes at intake); never the text itself"
    ),
]
# Events written before purposes and reasons became codes carry what a person typed there;
# they stay readable (the ledger replays them), new writers put a code only.
LegacyText = Annotated[str, StringConstraints(max_length=200)]


# --- closed lists for what a person says of an action (free text goes to intake's vault) ---


class DisclosurePurpose(StrEnum):
    """Why a partner reads a case's identifying details."""

    FIRST_CONTACT = "first_contact"
    MEDICAL_CARE = "medical_care"
    POLICE_INVESTIGATION = "police_investigation"
    SHELTER_PLACEMENT = "shelter_placement"
    PSYCHOSOCIAL_SUPPORT = "psychosocial_support"
    LEGAL_AID = "legal_aid"
    CASE_REVIEW = "case_review"
    OTHER = "other"


class CloseReason(StrEnum):
    """Why a coordinator closes a case."""

    SERVICES_COMPLETED = "services_completed"
    SURVIVOR_WITHDREW = "survivor_withdrew"
    TRANSFERRED = "transferred"
    DUPLICATE_REPORT = "duplicate_report"
    FILED_IN_ERROR = "filed_in_error"
    OTHER = "other"


class EraseReason(StrEnum):
    """Why a coordinator erases a case's identifying data."""

    SURVIVOR_REQUEST = "survivor_request"
    RETENTION_EXPIRED = "retention_expired"
    FILED_IN_ERROR = "filed_in_error"
    COURT_ORDER = "court_order"
    OTHER = "other"


class NoteKind(StrEnum):
    """What a free-text note at intake explains: the action whose ``note_ref`` names it."""

    DECLINE_NOTE = "decline_note"  # a partner's decline (referral.declined)
    CLOSE_NOTE = "close_note"  # a coordinator's close (case.closed)
    DISCLOSURE_NOTE = "disclosure_note"  # a partner's reading of details (case.details_disclosed)


def district_of(case_id: CaseId) -> str:
    """The district a case belongs to: a case id begins with its district's code
    (``3514-…``), so every service can tell without a look-up."""
    return case_id[:4]


class Service(StrEnum):
    HEALTH = "health"
    POLICE = "police"
    SHELTER = "shelter"
    PSYCHOSOCIAL = "psychosocial"
    LEGAL = "legal"
    SOCIAL = "social"
    CASE_MANAGEMENT = "case_management"
    # Mediasi (Permen PPPA 2/2022): never for sexual violence (UU TPKS 12/2022, art. 23).
    MEDIATION = "mediation"


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
    # Optional properties the event gained after its version was released: left out of its
    # data while unset, so that an event not using one stays valid under the released schema
    # a partner may still validate with (its data refuses properties it does not name).
    added_within_version: ClassVar[frozenset[str]] = frozenset()

    def event_data(self) -> dict[str, Any]:
        """The payload as a CloudEvent's ``data``."""
        unset = {name for name in self.added_within_version if getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=unset or None)

    def released_data(self) -> dict[str, Any]:
        """The payload as its version was released, without the properties it gained since:
        what a partner receives, valid under the released schema it may validate with (a
        referral a partner's client refused as invalid would be a referral lost)."""
        return self.model_dump(mode="json", exclude=set(self.added_within_version) or None)

    def subject_id(self) -> str:
        """What the event is about: the CloudEvent ``subject`` (a case id, an SOP id)."""
        raise NotImplementedError

    @classmethod
    def event_type(cls) -> str:
        return f"{TYPE_PREFIX}.{cls.aggregate}.{cls.event}.v{cls.version}"

    @classmethod
    def subject(cls) -> str:
        return event_subject(cls.aggregate, cls.event)

    @classmethod
    def schema_uri(cls) -> str:
        return f"urn:rujuk:schema:{cls.aggregate}.{cls.event}:v{cls.version}"


class CaseEvent(EventPayload):
    """An event about one case; its CloudEvent subject is the pseudonymous case id."""

    case_id: CaseId = Field(pattern=CASE_ID_PATTERN, description="Pseudonymous case id")

    def subject_id(self) -> str:
        return self.case_id


class CaseReported(CaseEvent):
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
    acknowledgement_deadline: datetime | None = None
    consent_override: str | None = Field(
        default=None, description="Legal basis when the SOP overrode a refusal of consent"
    )


class WithheldReferral(BaseModel):
    """A referral an SOP rule asked for but consent did not allow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Service
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    rule_ids: list[str]
    reason: str = Field(max_length=200)


class CaseRouted(CaseEvent):
    """Routing applied the district SOP; says which rules fired and what followed."""

    aggregate = "case"
    event = "routed"

    sop_id: str
    sop_version: int
    rules_fired: list[str]
    referrals: list[ReferralSummary]
    withheld: list[WithheldReferral] = Field(default_factory=list)


class PickedBy(StrEnum):
    """How a referral's agency was chosen when the SOP lets the case's desa decide it
    (``pick: by_village``): intake was asked which candidate lists the case's desa."""

    VILLAGE = "village"  # intake answered: the agency that lists the case's desa
    KECAMATAN_NO_VILLAGE = "kecamatan_no_village"  # no candidate lists it: the kecamatan's
    FALLBACK_NO_VILLAGE = "fallback_no_village"  # ... and no kecamatan agency: the fallback
    KECAMATAN_TIMEOUT = "kecamatan_timeout"  # intake did not answer in time: the kecamatan's
    FALLBACK_TIMEOUT = "fallback_timeout"  # ... and no kecamatan agency: the fallback


class ReferralRequested(CaseEvent):
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
    consent_override: str | None = Field(
        default=None,
        description="Set when the SOP sends this referral against a refusal of consent "
        "(e.g. mandatory reporting of a child's case): the legal basis it names",
    )
    added_within_version = frozenset({"picked_by"})

    picked_by: PickedBy | None = Field(
        default=None,
        description="Set when the case's desa decided the agency (SOP pick: by_village): "
        "village (the agency that lists the desa), kecamatan_no_village / fallback_no_village "
        "(no agency lists it: the kecamatan's agency, else the fallback), kecamatan_timeout / "
        "fallback_timeout (intake did not answer in time, so the desa's own agency was never "
        "asked). Null or absent for every other referral, escalations included",
    )


class DeliveryChannel(StrEnum):
    NATS = "nats"
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"


class ReferralDelivered(CaseEvent):
    aggregate = "referral"
    event = "delivered"

    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    channels: list[DeliveryChannel]
    attempts: int = Field(ge=1)


class ReferralDeliveryFailed(CaseEvent):
    aggregate = "referral"
    event = "delivery_failed"

    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    reason: str = Field(max_length=500)
    attempts: int = Field(ge=1)


class _PartnerReply(CaseEvent):
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
    note: str | None = Field(
        default=None,
        max_length=280,
        description="Deprecated: free text is refused in a partner's reply (notify parks it "
        "without the text). Write it at intake (POST /v1/cases/{case_id}/notes, kind "
        "decline_note) and send its id as note_ref. Kept so that events written before stay "
        "readable.",
    )
    note_ref: NoteRef | None = None


class ReferralCompleted(_PartnerReply):
    aggregate = "referral"
    event = "completed"


class EscalationReason(StrEnum):
    DEADLINE_MISSED = "deadline_missed"
    DECLINED = "declined"
    DELIVERY_FAILED = "delivery_failed"


class ReferralEscalated(CaseEvent):
    aggregate = "referral"
    event = "escalated"

    referral_id: str
    from_agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    to_agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    reason: EscalationReason
    step: int = Field(ge=1)


# --- on call: past the coordinator ---------------------------------------------------------


class OnCallContact(BaseModel):
    """One role on a district's on-call list and the channels it is paged on. The id names a
    role (a duty phone, a desk), never a person; notify holds its addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contact_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    channels: list[DeliveryChannel] = Field(min_length=1)


class OnCallPaged(CaseEvent):
    """A referral's escalation chain ran out, the coordinator included: routing pages the
    SOP's on-call list, one round at a time, until someone acknowledges the alert.
    ``alert_id`` names the alert; the event id is derived from it and the round, so a round
    is paged once, whatever restarts."""

    aggregate = "oncall"
    event = "paged"

    alert_id: str = Field(pattern=r"^[0-9A-Za-z-]{1,100}$")
    referral_id: str = Field(description="The referral nobody answered (the chain's last)")
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN, description="Its agency")
    priority: Priority
    reason: EscalationReason = Field(description="Why the chain's last step passed it on")
    round: int = Field(ge=1, description="This round of pages, from 1")
    rounds: int = Field(ge=1, description="How many rounds the SOP's repeat policy allows")
    next_round_at: datetime | None = Field(
        description="When the next round is due if nobody acknowledges; null after the last"
    )
    contacts: list[OnCallContact] = Field(min_length=1)
    sop_id: str
    sop_version: int


class OnCallPageDelivered(CaseEvent):
    """Notify delivered one round's page to one on-call contact, on these channels."""

    aggregate = "oncall"
    event = "page_delivered"

    alert_id: str
    round: int = Field(ge=1)
    contact_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    channels: list[DeliveryChannel]
    attempts: int = Field(ge=1)


class OnCallPageFailed(CaseEvent):
    """Notify could not deliver one round's page to one on-call contact."""

    aggregate = "oncall"
    event = "page_failed"

    alert_id: str
    round: int = Field(ge=1)
    contact_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    reason: str = Field(max_length=500)
    attempts: int = Field(ge=0)


class OnCallAckVia(StrEnum):
    CONSOLE = "console"  # a coordinator or operator in the console (routing's API)
    REPLY = "reply"  # an on-call contact replied to a page (notify's reply door)


class OnCallAcknowledged(CaseEvent):
    """Someone took the alert: pages stop. The first acknowledgement counts; later ones are
    recorded too (the ledger shows who answered)."""

    aggregate = "oncall"
    event = "acknowledged"

    alert_id: str
    via: OnCallAckVia
    by: str = Field(
        max_length=100,
        description="The token id (console) or the on-call contact id (reply); never a name",
    )
    channel: DeliveryChannel | None = Field(
        default=None, description="For a reply: the channel the page it answers went out on"
    )


class CaseDetailsDisclosed(CaseEvent):
    """An authorised partner read identifying details: who, which fields, why."""

    aggregate = "case"
    event = "details_disclosed"

    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    referral_id: str
    fields: list[str]
    purpose: DisclosurePurpose | LegacyText = Field(
        union_mode="left_to_right",
        description="A DisclosurePurpose code (free text only in events written before)",
    )
    token_id: str | None = Field(default=None, description="Which credential read them")
    note_ref: NoteRef | None = None


class CaseClosed(CaseEvent):
    aggregate = "case"
    event = "closed"

    closed_by: str
    reason: CloseReason | LegacyText = Field(
        union_mode="left_to_right",
        description="A CloseReason code (free text only in events written before)",
    )
    note_ref: NoteRef | None = None


class CaseErased(CaseEvent):
    """The case's identifying data was crypto-shredded; its events and the ledger remain."""

    aggregate = "case"
    event = "erased"

    erased_by: str = Field(max_length=100, description="Role and token id, never a name")
    reason: EraseReason | LegacyText = Field(
        union_mode="left_to_right",
        description="An EraseReason code (free text only in events written before). An "
        "erasure keeps no free text: its case's notes are shredded with it.",
    )


# --- a referral whose agency the case's desa decides (SOP ``pick: by_village``) -------------

VILLAGE_QUESTION_ID_PATTERN = r"^vq-[0-9a-f]{32}$"
VILLAGE_SEPARATOR = "/"  # a listed village is written "Kecamatan/Desa"
VILLAGE_PART_CHARS = 64  # a kecamatan's or desa's name, each side of the '/'
VILLAGE_PATTERN = rf"^[^/]{{1,{VILLAGE_PART_CHARS}}}/[^/]{{1,{VILLAGE_PART_CHARS}}}$"
MAX_VILLAGE_CANDIDATES = 500  # desa-level agencies a question names


class VillageCandidate(BaseModel):
    """A desa-level agency of the SOP's directory and the villages it lists: directory data,
    the same for every case, never the case's own desa."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    villages: list[Annotated[str, StringConstraints(pattern=VILLAGE_PATTERN)]] = Field(
        min_length=1,
        description="Each 'Kecamatan/Desa', compared with the case's kecamatan and desa "
        "ignoring case and repeated spaces",
    )


class CaseVillageAgencyAsked(CaseEvent):
    """Routing asks intake which desa-level agency lists the case's desa. Carries no case data
    but the case id: the candidates come from the SOP version that decided."""

    aggregate = "case"
    event = "village_agency_asked"

    question_id: str = Field(
        pattern=VILLAGE_QUESTION_ID_PATTERN,
        description="Derived from the decision's event id and the service: a replay asks the "
        "same question",
    )
    service: Service
    candidates: list[VillageCandidate] = Field(min_length=1, max_length=MAX_VILLAGE_CANDIDATES)
    answer_by: datetime | None = Field(
        default=None,
        description="When routing resolves the pick without an answer (its agency for no "
        "match): intake does not answer after this time. None (an event from before): answered "
        "whenever it is read",
    )


class CaseVillageAgencyFound(CaseEvent):
    """Intake's answer: the one candidate whose villages list the case's desa, or none (the
    desa is not listed, unknown, or the case's data was erased). Never the desa itself."""

    aggregate = "case"
    event = "village_agency_found"

    question_id: str = Field(pattern=VILLAGE_QUESTION_ID_PATTERN)
    agency_id: AgencyId | None = Field(
        default=None, pattern=AGENCY_ID_PATTERN, description="None: no candidate lists it"
    )


class ReplyKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ACCEPT = "accept"
    DECLINE = "decline"
    COMPLETE = "complete"


class ReferralReplyRefused(CaseEvent):
    """A partner's reply that the lifecycle does not allow; nothing changed."""

    aggregate = "referral"
    event = "reply_refused"

    referral_id: str
    agency_id: AgencyId = Field(pattern=AGENCY_ID_PATTERN)
    reply: ReplyKind
    reason: str = Field(max_length=300)


# --- SOP proposals: every agency whose duties change signs the new version off -----------

PROPOSAL_ID_PATTERN = r"^prop-[0-9a-f]{32}$"
SOP_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
ProposalId = Annotated[str, StringConstraints(pattern=PROPOSAL_ID_PATTERN)]
AgencyIdField = Annotated[str, StringConstraints(pattern=AGENCY_ID_PATTERN)]


class DutyChange(StrEnum):
    """How a proposed SOP version asks more of an agency than the version in force."""

    JOINS_DIRECTORY = "joins_directory"  # named in the directory for the first time
    NEW_SERVICE = "new_service"  # a service it was never referred under the version in force
    SHORTER_DEADLINE = "shorter_deadline"  # less time to acknowledge a referral
    HIGHER_PRIORITY = "higher_priority"  # a referral more urgent than before
    NEW_ESCALATION_STEP = "new_escalation_step"  # in an escalation chain where it was not
    # A rule that refers it is new or fires on other facts: other cases may now reach it.
    CONDITIONS_CHANGED = "conditions_changed"
    # Whether a service it offers needs the survivor's consent, or is reported without it for
    # an age group (mandatory reporting), changes.
    CONSENT_POLICY_CHANGED = "consent_policy_changed"
    # It becomes the coordinator: the end of every escalation chain.
    BECOMES_COORDINATOR = "becomes_coordinator"


class ObjectionReason(StrEnum):
    """Why an agency objects to a proposed SOP version."""

    CAPACITY_INSUFFICIENT = "capacity_insufficient"
    DEADLINE_UNACHIEVABLE = "deadline_unachievable"
    OUTSIDE_MANDATE = "outside_mandate"
    LEGAL_CONCERN = "legal_concern"
    NEEDS_RAKOR_DISCUSSION = "needs_rakor_discussion"
    OTHER = "other"


class OverrideReason(StrEnum):
    """Why a coordinator publishes an SOP version some bound agency has not agreed to."""

    URGENT_SAFETY_FIX = "urgent_safety_fix"
    AGENCY_UNRESPONSIVE = "agency_unresponsive"
    LEGAL_REQUIREMENT = "legal_requirement"
    RAKOR_DECISION = "rakor_decision"
    OTHER = "other"


class AnswerVia(StrEnum):
    """Where an agency's answer to a proposal came from."""

    CONSOLE = "console"  # a partner in the console
    API = "api"  # a partner's own client, on routing's HTTP API
    NATS = "nats"  # a reply on the partner's inbound subject, passed on by notify


class AskedAgency(BaseModel):
    """An agency asked to sign a proposal off, and what changes for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency_id: AgencyIdField
    duty_changes: list[DutyChange] = Field(min_length=1)


class SopProposed(EventPayload):
    """A coordinator proposed a new SOP version; every agency whose duties change is asked to
    sign it off before it binds them."""

    aggregate = "sop"
    event = "proposed"

    proposal_id: ProposalId
    sop_id: str = Field(pattern=SOP_ID_PATTERN)
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    sop_version: int = Field(ge=1)
    sha256: str = Field(pattern=SHA256_PATTERN, description="Of the proposed YAML document")
    base_version: int | None = Field(
        default=None, ge=1, description="The version in force when proposed (none: no SOP)"
    )
    proposed_by: str = Field(max_length=100, description="Role and token id, never a name")
    asked: list[AskedAgency] = Field(
        max_length=500, description="Every agency asked to sign off, with its duty changes"
    )

    def subject_id(self) -> str:
        return self.sop_id


class _SopAnswer(EventPayload):
    aggregate = "sop"

    proposal_id: ProposalId
    sop_id: str = Field(pattern=SOP_ID_PATTERN)
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    sop_version: int = Field(ge=1)
    sha256: str = Field(pattern=SHA256_PATTERN, description="Of the proposed YAML document")
    agency_id: AgencyIdField
    via: AnswerVia
    answered_by: str = Field(max_length=100, description="Role and token id, never a name")

    def subject_id(self) -> str:
        return self.sop_id


class SopSignedOff(_SopAnswer):
    """An asked agency agreed to a proposed SOP version. A later answer replaces it."""

    event = "signed_off"


class SopObjected(_SopAnswer):
    """An asked agency objected to a proposed SOP version, with a reason code. A later answer
    replaces it."""

    event = "objected"

    reason: ObjectionReason
    note_ref: NoteRef | None = None


class SopDecision(StrEnum):
    """What an asked agency answers to a proposed SOP version."""

    AGREE = "agree"
    OBJECT = "object"


class SopAnswerGiven(EventPayload):
    """An asked agency's answer to a proposed SOP version, sent by the partner on its own
    subject ``rujuk.partner.<agency>.in.sop_answer``; notify checks it and passes it on, and
    routing records it (``sop.signed_off`` / ``sop.objected``) or refuses it
    (``sop.answer_refused``)."""

    aggregate = "sop"
    event = "answer_given"

    proposal_id: ProposalId
    sop_id: str = Field(pattern=SOP_ID_PATTERN)
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    sop_version: int = Field(ge=1)
    agency_id: AgencyIdField = Field(description="The answering agency: the partner's own")
    decision: SopDecision
    reason: ObjectionReason | None = Field(default=None, description="Required to object")
    note_ref: NoteRef | None = Field(
        default=None, description="With an objection, optional: a note's id at intake"
    )

    @model_validator(mode="after")
    def _reason_with_objection(self) -> "SopAnswerGiven":
        if (self.decision is SopDecision.OBJECT) != (self.reason is not None):
            raise ValueError("an objection needs a reason code; an agreement takes none")
        if self.note_ref is not None and self.decision is not SopDecision.OBJECT:
            raise ValueError("note_ref goes with an objection")
        return self

    def subject_id(self) -> str:
        return self.sop_id


class SopAnswerRefusal(StrEnum):
    """Why an answer to a proposed SOP version was not recorded."""

    NOT_VALID = "not_valid"  # not a well-formed answer from the agency it came from (notify)
    UNKNOWN_PROPOSAL = "unknown_proposal"  # no such proposal the agency may see (routing)
    NOT_ASKED = "not_asked"  # the proposal does not ask this agency (routing)
    PROPOSAL_CLOSED = "proposal_closed"  # published, withdrawn or superseded (routing)


class SopAnswerRefused(EventPayload):
    """An agency's answer to a proposed SOP version that was not recorded: nothing changed.
    The agency reads it on its feed, ``rujuk.partner.<agency>.out.sop.answer_refused``."""

    aggregate = "sop"
    event = "answer_refused"

    proposal_id: ProposalId
    sop_id: str = Field(pattern=SOP_ID_PATTERN)
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    agency_id: AgencyIdField
    decision: SopDecision
    refusal: SopAnswerRefusal
    reason: str = Field(max_length=300, description="Why, in Bahasa Indonesia / English")

    def subject_id(self) -> str:
        return self.sop_id


class SopProposalWithdrawn(EventPayload):
    """A coordinator withdrew an open proposal: nobody is asked any more."""

    aggregate = "sop"
    event = "proposal_withdrawn"

    proposal_id: ProposalId
    sop_id: str = Field(pattern=SOP_ID_PATTERN)
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    sop_version: int = Field(ge=1)
    withdrawn_by: str = Field(max_length=100, description="Role and token id, never a name")
    superseded_by: ProposalId | None = Field(
        default=None,
        description="When a newer proposal replaced it (absent: withdrawn, or superseded by a "
        "version published directly, whose sop.published follows)",
    )

    def subject_id(self) -> str:
        return self.sop_id


class SopPublished(EventPayload):
    """A new SOP version is published for a district: it applies to new cases from
    ``effective_at`` (``sop.in_force`` says when it does)."""

    aggregate = "sop"
    event = "published"

    sop_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    sop_version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the YAML document")
    published_by: str = Field(max_length=100)
    proposal_id: ProposalId | None = Field(
        default=None, description="The proposal it was signed off as (none: published directly)"
    )
    effective_at: datetime | None = Field(
        default=None, description="From when routing applies it (none: at publication)"
    )
    override_reason: OverrideReason | None = Field(
        default=None,
        description="Set when it was published without every bound agency's agreement",
    )
    agencies_not_agreed: list[AgencyIdField] = Field(
        default_factory=list,
        max_length=500,
        description="With an override: the agencies whose duties change and had not agreed",
    )

    def subject_id(self) -> str:
        return self.sop_id


class SopOrigin(StrEnum):
    FILE = "file"  # routing's SOP folder, where nothing was published for the district
    PUBLISHED = "published"  # published through routing's API (``sop.published``)


MAX_RETENTION_DAYS = 36_500  # a hundred years: a bound, not advice


class SopInForce(EventPayload):
    """This SOP is the one routing applies to a district's new cases, with the agencies its
    directory names. Routing announces it when a version comes in force (published) and, at
    start, for every SOP in force not announced before (the files above all); once per
    document: the event id derives from district, version and sha256.

    Not ``sop.published``: that one records an act, by whom; this one states what is in force,
    whatever its origin, for whoever keeps a view of it (intake files reports only for these
    districts, and issues partner tokens only for agencies these directories name)."""

    aggregate = "sop"
    event = "in_force"

    sop_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    district_code: str = Field(pattern=DISTRICT_CODE_PATTERN)
    sop_version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the YAML document")
    origin: SopOrigin
    agency_ids: list[Annotated[str, StringConstraints(pattern=AGENCY_ID_PATTERN)]] = Field(
        min_length=1,
        max_length=500,
        description="Every agency id in the SOP's directory, the coordinator's included",
    )
    vault_days_after_close: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Days a closed case's identifying data is kept in intake's vault before "
        "intake crypto-shreds it (case.erased, reason retention_expired); none: kept until a "
        "coordinator erases it",
    )

    def subject_id(self) -> str:
        return self.sop_id


class Role(StrEnum):
    """What a bearer token may do; intake issues tokens, every service checks them."""

    OPERATOR = "operator"  # files reports, reads their status
    PARTNER = "partner"  # bound to one agency: its referrals, replies and case details
    COORDINATOR = "coordinator"  # the SOP, every referral, monitoring, closing and erasing
    AUDITOR = "auditor"  # the ledger and the disclosure log
    # A village cadre: bound to one district and to kecamatan or villages in it, files
    # reports there and reads the status of the reports it filed; nothing else.
    CADRE = "cadre"

    @property
    def district_bound(self) -> bool:
        """Operators, coordinators, auditors and cadres serve districts (or, all but cadres,
        the whole province); a partner is bound to its agency instead, and through it to the
        SOPs that name it."""
        return self is not Role.PARTNER


TOKEN_ID_PATTERN = r"^[a-z]{1,8}-[0-9a-f]{6,32}$"  # noqa: S105 (a pattern, not a secret)


class CaseNoteRead(CaseEvent):
    """Someone read a free-text note of the case at intake: who, which note; never the text."""

    aggregate = "case"
    event = "note_read"

    note_id: str = Field(pattern=NOTE_ID_PATTERN)
    kind: NoteKind
    token_id: str = Field(pattern=TOKEN_ID_PATTERN, description="Which credential read it")
    role: Role
    agency_id: AgencyId | None = Field(
        default=None, pattern=AGENCY_ID_PATTERN, description="Set when a partner read it"
    )


class TokenIssued(EventPayload):
    """Intake issued a bearer token; every service adds it to its own token projection.

    ``secret_sha256`` is the hash of a secret of 256 random bits: no one can find the secret
    from it (there is nothing to guess), so it is safe on the bus and in the ledger. The
    token's label is not here: it may name a person.
    """

    aggregate = "token"
    event = "issued"

    token_id: str = Field(pattern=TOKEN_ID_PATTERN)
    role: Role
    agency_id: AgencyId | None = Field(
        default=None, pattern=AGENCY_ID_PATTERN, description="Set for a partner token only"
    )
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the secret")
    districts: list[DistrictCode] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The district codes an operator, coordinator or auditor token serves. "
        "Absent (null) on such a token: province-level, every district; that is also what "
        "a token issued before tokens carried districts could reach, so an old event keeps "
        "exactly the access it gave. Never set on a partner token.",
    )

    @model_validator(mode="after")
    def _bound(self) -> "TokenIssued":
        if (self.role is Role.PARTNER) != (self.agency_id is not None):
            raise ValueError("a partner token names its agency_id; no other token does")
        if self.role is Role.PARTNER and self.districts is not None:
            raise ValueError("a partner token is bound to its agency, not to districts")
        return self

    def subject_id(self) -> str:
        return self.token_id


class TokenRevoked(EventPayload):
    """A token was revoked: every service refuses it from now on (within its cache time)."""

    aggregate = "token"
    event = "revoked"

    token_id: str = Field(pattern=TOKEN_ID_PATTERN)

    def subject_id(self) -> str:
        return self.token_id


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
        OnCallPaged,
        OnCallPageDelivered,
        OnCallPageFailed,
        OnCallAcknowledged,
        CaseDetailsDisclosed,
        CaseClosed,
        CaseErased,
        CaseNoteRead,
        CaseVillageAgencyAsked,
        CaseVillageAgencyFound,
        ReferralReplyRefused,
        SopProposed,
        SopSignedOff,
        SopObjected,
        SopProposalWithdrawn,
        SopAnswerGiven,
        SopAnswerRefused,
        SopPublished,
        SopInForce,
        TokenIssued,
        TokenRevoked,
    )
}


def model_for_type(event_type: str) -> type[EventPayload] | None:
    return EVENT_MODELS.get(event_type)
