"""Paging the on-call list, as pure functions: which alert a chain that ran out opens, when
each round is due, and what an alert says once acknowledged.

A referral whose escalation chain runs out (its last step, the coordinator, did not answer
either, declined, or could not be reached) opens one alert. Round 1 is paged at once; round
``k + 1`` is due ``every`` after round ``k``; after the SOP's last round nothing more is paged,
and the alert stays open (the console's coordinator page shows it at the top, the
``rujuk_oncall_alerts_open`` gauge counts it) until someone acknowledges it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from rujuk_contracts.events import (
    EscalationReason,
    OnCallAckVia,
    OnCallContact,
    Priority,
)


def alert_id_for(referral_id: str) -> str:
    """One alert per referral whose chain ran out, however often that is found."""
    return f"{referral_id}-oncall"


@dataclass(frozen=True)
class PagePlan:
    """Who is paged and how often: taken from the SOP in force at the first round, then kept."""

    sop_id: str
    sop_version: int
    contacts: tuple[OnCallContact, ...]
    rounds: int
    every: timedelta


@dataclass(frozen=True)
class OnCallAlert:
    alert_id: str
    case_id: str
    district_code: str
    referral_id: str
    agency_id: str
    priority: Priority
    reason: EscalationReason
    opened_at: datetime
    plan: PagePlan | None  # None until the first round is paged
    rounds_paged: int
    next_page_at: datetime | None
    last_paged_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_via: OnCallAckVia | None = None

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None


@dataclass(frozen=True)
class Round:
    """The round to page now, and when the next one is due (None after the last)."""

    number: int
    next_at: datetime | None


def round_due(alert: OnCallAlert, plan: PagePlan, now: datetime) -> Round | None:
    """The round to page now, or None: acknowledged, every round paged, or not due yet.

    A round that comes late (routing was down) is paged once when it comes; missed rounds
    are not paged in a burst, and the next one is ``every`` after this one.
    """
    if not alert.open or alert.rounds_paged >= plan.rounds:
        return None
    if alert.next_page_at is None or alert.next_page_at > now:
        return None
    number = alert.rounds_paged + 1
    return Round(number, now + plan.every if number < plan.rounds else None)
