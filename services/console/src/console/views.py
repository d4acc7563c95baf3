"""What each page shows, worked out from the services' answers: ordering, the replies a
referral allows, deadlines and their countdowns, the ledger's hand-offs against their
deadlines. Pure functions, no I/O."""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

PRIORITY_RANK = {"emergency": 0, "urgent": 1, "routine": 2}

# The replies a partner can give in each state (routing's lifecycle decides in the end).
REPLIES_BY_STATE: dict[str, tuple[str, ...]] = {
    "requested": ("acknowledge", "accept", "decline"),
    "delivered": ("acknowledge", "accept", "decline"),
    "delivery_failed": ("acknowledge", "accept", "decline"),
    "acknowledged": ("accept", "decline"),
    "accepted": ("complete",),
}
HANDOFF_TYPES = (
    "requested",
    "delivered",
    "delivery_failed",
    "acknowledged",
    "accepted",
    "declined",
    "completed",
    "escalated",
)
ANSWERS = ("acknowledged", "accepted", "declined")


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local(value: object, zone: tzinfo) -> str:
    """``2026-11-23 11:05`` in the console's time zone, or "" for no time."""
    moment = value if isinstance(value, datetime) else parse_time(value)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""


@dataclass(frozen=True)
class InboxItem:
    referral: Mapping[str, Any]
    replies: tuple[str, ...]
    deadline: datetime | None
    overdue: bool
    remaining: timedelta | None  # to the deadline (past it: since), written by the template

    @property
    def referral_id(self) -> str:
        return str(self.referral.get("referral_id", ""))


def _newest_first_key(referral: Mapping[str, Any]) -> float:
    moment = parse_time(referral.get("requested_at")) or parse_time(
        referral.get("acknowledgement_deadline")
    )
    return -moment.timestamp() if moment else 0.0


def inbox(referrals: Sequence[Mapping[str, Any]], now: datetime) -> list[InboxItem]:
    """Most urgent first; within a priority, newest first."""
    ordered = sorted(
        referrals,
        key=lambda r: (PRIORITY_RANK.get(str(r.get("priority")), 9), _newest_first_key(r)),
    )
    items = []
    for referral in ordered:
        deadline = parse_time(referral.get("acknowledgement_deadline"))
        answered = referral.get("acknowledged_at") is not None
        state = str(referral.get("state", ""))
        waiting = not answered and state in ("requested", "delivered", "delivery_failed")
        overdue = bool(deadline and waiting and deadline < now) or bool(
            referral.get("deadline_missed")
        )
        items.append(
            InboxItem(
                referral=referral,
                replies=REPLIES_BY_STATE.get(state, ()),
                deadline=deadline if waiting else None,
                overdue=overdue,
                remaining=deadline - now if deadline and waiting else None,
            )
        )
    return items


@dataclass(frozen=True)
class TimelineStep:
    seq: int
    time: datetime | None
    since_report: timedelta | None
    actor: str
    event: str
    summary: str
    referral_id: str | None
    handoff: bool
    deadline: datetime | None
    on_time: bool | None  # for a partner's first answer: within the deadline?
    margin: timedelta | None  # how far within (or past) it


def short_type(event_type: str) -> str:
    """``id.rujuk.referral.accepted.v1`` -> ``referral.accepted``."""
    parts = event_type.split(".")
    core = parts[2:] if parts[:2] == ["id", "rujuk"] else parts
    if core and core[-1].startswith("v") and core[-1][1:].isdigit():
        core = core[:-1]
    return ".".join(core)


def timeline(history: Mapping[str, Any]) -> list[TimelineStep]:
    """The ledger's entries of one case; each partner's first answer is set against the
    acknowledgement deadline its referral was requested with."""
    entries: Sequence[Mapping[str, Any]] = history.get("entries", [])
    deadlines: dict[str, datetime] = {}
    answered: set[str] = set()
    steps = []
    for entry in entries:
        data = entry.get("event", {}).get("data", {}) or {}
        event = short_type(str(entry.get("event_type", "")))
        aggregate, _, name = event.partition(".")
        referral_id = data.get("referral_id")
        moment = parse_time(entry.get("time"))
        deadline = None
        on_time: bool | None = None
        margin: timedelta | None = None
        if aggregate == "referral" and name == "requested" and referral_id:
            found = parse_time(data.get("acknowledgement_deadline"))
            if found:
                deadlines[referral_id] = found
        if referral_id in deadlines:
            deadline = deadlines[referral_id]
            if name in ANSWERS and referral_id not in answered and moment:
                answered.add(referral_id)
                on_time = moment <= deadline
                margin = deadline - moment
        since = entry.get("since_report_seconds")
        steps.append(
            TimelineStep(
                seq=int(entry.get("seq", 0)),
                time=moment,
                since_report=timedelta(seconds=float(since))
                if isinstance(since, int | float)
                else None,
                actor=str(entry.get("actor", "")),
                event=event,
                summary=str(entry.get("summary", "")),
                referral_id=referral_id,
                handoff=aggregate == "referral" and name in HANDOFF_TYPES,
                deadline=deadline,
                on_time=on_time,
                margin=margin,
            )
        )
    return steps


@dataclass(frozen=True)
class OpenOverview:
    by_agency_and_state: list[tuple[str, str, int]]
    deadlines_missed: list[Mapping[str, Any]]
    escalations_waiting: list[Mapping[str, Any]]


def in_district(
    referrals: Sequence[Mapping[str, Any]], district: str | None
) -> list[Mapping[str, Any]]:
    """The referrals of one district's cases (a case id begins with its district's code), or
    all of them for None. A narrowing for the page: routing already keeps to the token's."""
    if district is None:
        return list(referrals)
    return [r for r in referrals if str(r.get("case_id", "")).startswith(f"{district}-")]


def open_overview(referrals: Sequence[Mapping[str, Any]]) -> OpenOverview:
    """The coordinator's watch list from the open referrals."""
    counts: dict[tuple[str, str], int] = {}
    for referral in referrals:
        key = (str(referral.get("agency_id")), str(referral.get("state")))
        counts[key] = counts.get(key, 0) + 1
    return OpenOverview(
        by_agency_and_state=[(a, s, n) for (a, s), n in sorted(counts.items())],
        deadlines_missed=[r for r in referrals if r.get("deadline_missed")],
        escalations_waiting=[r for r in referrals if int(r.get("escalation_step") or 0) > 0],
    )


# --- on call: chains that ran out, until someone acknowledges -------------------------------

MARKS_AT_MOST = 300  # what the section's refresh URL carries back: 3.3 kB at most


@dataclass(frozen=True)
class OnCallRow:
    alert: Mapping[str, Any]
    opened_at: datetime | None
    open_for: timedelta | None
    round_paged: int
    rounds: int | None  # None: the first round is not paged yet
    next_page_at: datetime | None  # None (once paged): no more pages will go out
    contacts: list[tuple[str, list[str]]]  # who is paged, on which channels

    @property
    def alert_id(self) -> str:
        return str(self.alert.get("alert_id", ""))


@dataclass(frozen=True)
class OnCallBoard:
    """The open alerts as the coordinator page lists them. ``announce`` is true when the
    list holds an alert the page did not show before, or routing stopped answering: only then
    is the section's summary a live alert, so a refresh every few seconds is not read out
    again and again by a screen reader."""

    rows: list[OnCallRow]
    unreadable: bool  # routing gave no list: what is open is unknown
    announce: bool
    marks: str  # the alerts shown, for the next refresh to compare with

    @property
    def count(self) -> int:
        return len(self.rows)


def alert_mark(alert_id: str) -> str:
    """A short, fixed-length stand-in for an alert id in the refresh URL."""
    return hashlib.sha256(alert_id.encode()).hexdigest()[:10]


def _marks(marks: str) -> frozenset[str]:
    return frozenset(mark for mark in marks.split(",")[:MARKS_AT_MOST] if mark)


def _contacts(alert: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    listed = alert.get("contacts") or []
    return [
        (str(c.get("contact_id", "")), [str(channel) for channel in c.get("channels") or []])
        for c in listed
        if isinstance(c, Mapping)
    ]


def oncall_row(alert: Mapping[str, Any], now: datetime) -> OnCallRow:
    opened = parse_time(alert.get("opened_at"))
    rounds = alert.get("rounds")
    return OnCallRow(
        alert=alert,
        opened_at=opened,
        open_for=now - opened if opened else None,
        round_paged=int(alert.get("rounds_paged") or 0),
        rounds=int(rounds) if isinstance(rounds, int) else None,
        next_page_at=parse_time(alert.get("next_page_at")),
        contacts=_contacts(alert),
    )


def oncall_board(
    alerts: Sequence[Mapping[str, Any]] | None,
    now: datetime,
    shown_before: str | None = None,
    unreadable_before: bool = False,
) -> OnCallBoard:
    """``alerts``: routing's open alerts, or None when routing gave no list. ``shown_before``:
    the marks of the alerts the section showed before this refresh (None: the page was just
    opened, so anything open is announced); ``unreadable_before``: it said routing gave none."""
    if alerts is None:  # announced once, not on every refresh while routing is away
        return OnCallBoard([], True, not unreadable_before, "")
    rows = [oncall_row(alert, now) for alert in alerts]
    marks = [alert_mark(row.alert_id) for row in rows][:MARKS_AT_MOST]
    # Back from an outage, what is open is news again.
    seen = _marks(shown_before) if shown_before is not None else frozenset()
    fresh = shown_before is None or unreadable_before or not set(marks) <= seen
    return OnCallBoard(rows, False, bool(rows) and fresh, ",".join(marks))
