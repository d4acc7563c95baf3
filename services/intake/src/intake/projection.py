"""What intake shows an operator about a case after it left the door: routed, delivered, ...
Pure: the fold of a run of events over the referrals' rows (``intake.handlers`` reads and
writes them through ``intake.store``)."""

from dataclasses import dataclass, field, replace

from rujuk_contracts.events import (
    CaseClosed,
    CaseRouted,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralRequested,
)

REFERRAL_STATES: dict[type[EventPayload], str] = {
    ReferralDelivered: "delivered",
    ReferralDeliveryFailed: "delivery_failed",
    ReferralAcknowledged: "acknowledged",
    ReferralAccepted: "accepted",
    ReferralDeclined: "declined",
    ReferralCompleted: "completed",
    ReferralEscalated: "escalated",
}
_WAITING = ("requested", "delivered", "delivery_failed")
# The states each event moves a referral on from, as routing's lifecycle allows. Notify relays
# every well-formed reply and routing refuses the ones out of turn (``reply_refused``): those,
# and delivery reports arriving after a reply, leave the state as it is. Escalation is routing's.
MOVES_FROM: dict[type[EventPayload], tuple[str, ...] | None] = {
    ReferralDelivered: ("requested", "delivery_failed"),
    ReferralDeliveryFailed: ("requested",),
    ReferralAcknowledged: _WAITING,
    ReferralAccepted: (*_WAITING, "acknowledged"),
    ReferralDeclined: (*_WAITING, "acknowledged"),
    ReferralCompleted: ("accepted",),
    ReferralEscalated: None,
}


@dataclass(frozen=True)
class ProjectedReferral:
    """A referral as intake shows it to the operator."""

    referral_id: str
    case_id: str
    agency_id: str
    service: str
    priority: str
    state: str
    picked_by: str | None = None  # how the case's desa picked the agency (pick: by_village)


@dataclass
class Changes:
    """What a run of events changes: each touched referral's row as it ends, and each case's
    final status. ``fold`` computes it from the rows as they were; nothing here does I/O."""

    referrals: dict[str, ProjectedReferral] = field(default_factory=dict)
    case_status: dict[str, str] = field(default_factory=dict)


def referrals_read(payloads: list[EventPayload]) -> list[str]:
    """The referrals whose current row the fold needs."""
    ids: list[str] = []
    for payload in payloads:
        if isinstance(payload, CaseRouted):
            ids.extend(referral.referral_id for referral in payload.referrals)
        elif isinstance(referral_id := getattr(payload, "referral_id", None), str):
            ids.append(referral_id)
    return ids


def fold(payloads: list[EventPayload], current: dict[str, ProjectedReferral]) -> Changes:
    """Apply events in their order to the rows ``current`` holds (referral id -> row)."""
    rows = dict(current)
    changes = Changes()

    def put(row: ProjectedReferral) -> None:
        rows[row.referral_id] = changes.referrals[row.referral_id] = row

    for payload in payloads:
        if isinstance(payload, CaseRouted):
            changes.case_status[payload.case_id] = "routed"
            for made in payload.referrals:
                put(ProjectedReferral(made.referral_id, payload.case_id, made.agency_id,
                                      made.service, made.priority, "requested"))  # fmt: skip
        elif isinstance(payload, ReferralRequested):  # also referrals made by an escalation
            if payload.referral_id not in rows:
                put(ProjectedReferral(payload.referral_id, payload.case_id,
                                      payload.agency_id, payload.service,
                                      payload.priority, "requested",
                                      payload.picked_by))  # fmt: skip
        elif isinstance(payload, CaseClosed):
            changes.case_status[payload.case_id] = "closed"
        elif (state := REFERRAL_STATES.get(type(payload))) is not None:
            row = rows.get(getattr(payload, "referral_id", None) or "")
            allowed = MOVES_FROM[type(payload)]
            if row is not None and (allowed is None or row.state in allowed):
                put(replace(row, state=state))
    return changes


# The types that change what an operator sees; the fold ignores any other.
PROJECTED: tuple[type[EventPayload], ...] = (
    CaseRouted,
    ReferralRequested,
    CaseClosed,
    *REFERRAL_STATES,
)
