"""A proposed SOP version as routing keeps it, the asked agencies' answers, and where they
stand: who agreed, who objected (a reason code), who has yet to answer (pure)."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StoredAnswer:
    """An asked agency's current answer to a proposal."""

    agency_id: str
    decision: str  # agree | object
    reason: str | None
    note_ref: str | None
    via: str
    answered_by: str
    answered_at: datetime


@dataclass(frozen=True)
class StoredProposal:
    proposal_id: str
    district_code: str
    sop_id: str
    version: int
    yaml: str
    sha256: str
    base_version: int | None
    proposed_by: str
    proposed_at: datetime
    state: str
    agency_ids: list[str]
    closed_at: datetime | None
    closed_by: str | None
    asked: dict[str, list[str]]  # agency id -> DutyChange codes
    answers: dict[str, StoredAnswer]  # agency id -> its current answer


@dataclass(frozen=True)
class Standing:
    """Where the answers to a proposal stand."""

    agreed: list[str]
    objected: list[tuple[str, str]]  # (agency id, ObjectionReason code)
    awaiting: list[str]

    @property
    def not_agreed(self) -> list[str]:
        """The asked agencies that did not agree: objected or yet to answer."""
        return sorted([agency for agency, _ in self.objected] + self.awaiting)


def standing_of(proposal: StoredProposal) -> Standing:
    """Who agreed, who objected (with the reason) and who has yet to answer."""
    answers = proposal.answers
    return Standing(
        agreed=[a for a in proposal.asked if a in answers and answers[a].decision == "agree"],
        objected=[
            (a, answers[a].reason or "other")
            for a in proposal.asked
            if a in answers and answers[a].decision == "object"
        ],
        awaiting=[a for a in proposal.asked if a not in answers],
    )
