"""The SOP proposal pages: routing's proposals, rule-by-rule diffs and impact simulations as
the pages' rows, in the page's language; the publish form's effective date. No I/O."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from console.i18n import Translator
from console.views import parse_time
from rujuk_contracts.events import DutyChange, ObjectionReason, OverrideReason

DUTY_CHANGES = tuple(code.value for code in DutyChange)
OBJECTION_REASONS = tuple(reason.value for reason in ObjectionReason)
OVERRIDE_REASONS = tuple(reason.value for reason in OverrideReason)
SIMULATION_DAYS = (30, 90, 180, 365)  # the periods offered; routing's default is 90
DEFAULT_SIMULATION_DAYS = 90
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2100, 12, 31)  # what routing accepts
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"  # an <input type="datetime-local">'s value
FINISHED = ("done", "failed")


class BadInput(ValueError):
    """A form value the page cannot read; routing is not asked."""


# --- a proposal: who is asked, who answered ------------------------------------------------


@dataclass(frozen=True)
class AskedRow:
    agency_id: str
    duties: list[str]  # each duty change, translated, with its detail
    answer: str  # agreed | objected | awaiting
    reason: str  # the objection's reason, translated ("" otherwise)
    answered_at: datetime | None
    via: str


@dataclass(frozen=True)
class ExampleRow:
    """One of the SOP's examples as routing ran it through the proposal."""

    example_id: str
    speaks_for: str
    passed: bool
    failures: list[str]  # routing's sentences, bilingual


def example_rows(examples: Any) -> list[ExampleRow]:
    return [
        ExampleRow(
            example_id=str(e.get("example_id", "")),
            speaks_for=str(e.get("speaks_for", "")),
            passed=bool(e.get("passed")),
            failures=[str(f) for f in e.get("failures") or []],
        )
        for e in _dicts(examples)
    ]


@dataclass(frozen=True)
class ProposalView:
    proposal_id: str
    district_code: str
    sop_id: str
    version: int
    base_version: int | None
    state: str
    proposed_at: datetime | None
    closed_at: datetime | None
    asked: list[AskedRow]
    agreed: int
    objected: int
    awaiting: int
    examples: list[ExampleRow] = field(default_factory=list)
    examples_dropped: list[ExampleRow] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.state == "open"

    @property
    def everyone_agreed(self) -> bool:
        """No asked agency objects or has yet to answer: publishing needs no override."""
        return self.objected == 0 and self.awaiting == 0

    def asked_row(self, agency_id: str | None) -> AskedRow | None:
        return next((row for row in self.asked if row.agency_id == agency_id), None)


def duty_line(change: Mapping[str, Any], t: Translator) -> str:
    """``Batas waktu lebih singkat — Bantuan hukum, aturan adult-legal: 1440 min → 720 min``."""
    text = t.enum("duty_change", change.get("code", ""))
    where = []
    if change.get("service"):
        where.append(t.enum("service", change["service"]))
    if change.get("rule_id"):
        where.append(t("sop.rule_named", rule=change["rule_id"]))
    detail = ", ".join(where)
    if change.get("before") or change.get("after"):
        detail += f": {change.get('before') or '—'} → {change.get('after') or '—'}"
    return f"{text} — {detail}" if detail else text


def proposal_view(proposal: Mapping[str, Any], t: Translator) -> ProposalView:
    details = proposal.get("duty_changes")
    details = details if isinstance(details, Mapping) else {}
    rows = []
    for asked in _dicts(proposal.get("asked")):
        agency_id = str(asked.get("agency_id", ""))
        changes = _dicts(details.get(agency_id))
        duties = [duty_line(c, t) for c in changes] or [
            t.enum("duty_change", code) for code in asked.get("duty_changes") or []
        ]
        answer = asked.get("answer") if isinstance(asked.get("answer"), Mapping) else None
        if answer is None:
            rows.append(AskedRow(agency_id, duties, "awaiting", "", None, ""))
            continue
        objected = answer.get("decision") == "object"
        rows.append(
            AskedRow(
                agency_id,
                duties,
                "objected" if objected else "agreed",
                t.enum("objection_reason", answer.get("reason")) if objected else "",
                parse_time(answer.get("answered_at")),
                str(answer.get("via") or ""),
            )
        )
    return ProposalView(
        proposal_id=str(proposal.get("proposal_id", "")),
        district_code=str(proposal.get("district_code", "")),
        sop_id=str(proposal.get("sop_id", "")),
        version=int(proposal.get("version") or 0),
        base_version=proposal.get("base_version"),
        state=str(proposal.get("state", "")),
        proposed_at=parse_time(proposal.get("proposed_at")),
        closed_at=parse_time(proposal.get("closed_at")),
        asked=rows,
        agreed=sum(row.answer == "agreed" for row in rows),
        objected=sum(row.answer == "objected" for row in rows),
        awaiting=sum(row.answer == "awaiting" for row in rows),
        examples=example_rows(proposal.get("examples")),
        examples_dropped=example_rows(proposal.get("examples_dropped")),
    )


# --- the rule-by-rule diff ------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    kind: str  # added | removed | changed | moved
    position: str  # "3", or "2 → 4" for a rule moved
    fields: list[str]  # what changed in it
    text: str  # the unified diff of its YAML


@dataclass(frozen=True)
class DiffView:
    before: str
    after: str
    unchanged: bool
    rules: list[RuleRow]
    agencies: list[tuple[str, str, list[str]]]  # agency, added|removed|changed, fields
    sections: list[tuple[str, str]]  # section, its unified diff
    counts: dict[str, int] = field(default_factory=dict)  # added/removed/changed/moved


def diff_view(diff: Mapping[str, Any]) -> DiffView:
    rules = [
        RuleRow(
            str(change.get("rule_id", "")),
            str(change.get("kind", "")),
            str(change.get("position", "")),
            [str(c.get("path", "")) for c in _dicts(change.get("changes"))],
            str(change.get("text", "")),
        )
        for change in _dicts(diff.get("rules"))
    ]
    rules += [
        RuleRow(
            str(move.get("rule_id", "")),
            "moved",
            f"{move.get('position_before')} → {move.get('position_after')}",
            [],
            "",
        )
        for move in _dicts(diff.get("moved"))
    ]
    agencies = [
        (
            str(a.get("agency_id", "")),
            str(a.get("kind", "")),
            [str(c.get("path", "")) for c in _dicts(a.get("changes"))],
        )
        for a in _dicts(diff.get("directory"))
    ]
    sections = [
        (str(s.get("section", "")), str(s.get("text", ""))) for s in _dicts(diff.get("sections"))
    ]
    counts = {
        kind: sum(r.kind == kind for r in rules)
        for kind in ("added", "removed", "changed", "moved")
    }
    return DiffView(
        before=str(diff.get("before", "")),
        after=str(diff.get("after", "")),
        unchanged=bool(diff.get("unchanged")) or not (rules or agencies or sections),
        rules=rules,
        agencies=agencies,
        sections=sections,
        counts=counts,
    )


# --- the impact simulation ------------------------------------------------------------------


@dataclass(frozen=True)
class ChangedCase:
    """A case referred differently: only what differs on each side, and how many of its
    referrals stay the same."""

    case_id: str
    week: str
    before: list[str]
    after: list[str]
    same: int


@dataclass(frozen=True)
class SimulationView:
    simulation_id: str
    state: str
    cases_done: int
    cases_total: int | None
    failure: str
    period_from: datetime | None
    period_to: datetime | None
    result: Mapping[str, Any] | None
    changed: list[ChangedCase]
    weekly: list[tuple[str, list[tuple[str, int, int]]]]  # agency -> (week, before, after)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def progress_max(self) -> int:
        return max(self.cases_total or 0, 1)


def referral_line(referral: Mapping[str, Any], t: Translator) -> str:
    """``Kesehatan · rsud-waluyo-jati · Darurat · 30 mnt`` (and the consent override)."""
    parts = [
        t.enum("service", referral.get("service", "")),
        str(referral.get("agency_id", "")),
        t.enum("priority", referral.get("priority", "")),
        t.minutes(float(referral.get("acknowledge_within_minutes") or 0), 0),
    ]
    if referral.get("consent_override"):
        parts.append(t("sim.overrides_consent"))
    return " · ".join(parts)


def _outcome_lines(case: Mapping[str, Any], side: str, t: Translator) -> list[str]:
    lines = [referral_line(r, t) for r in _dicts(case.get(f"referrals_{side}"))]
    lines += [
        t(
            "sim.withheld_line",
            service=t.enum("service", w.get("service", "")),
            agency=w.get("agency_id", ""),
        )
        for w in _dicts(case.get(f"withheld_{side}"))
    ]
    return lines


def _changed_case(case: Mapping[str, Any], t: Translator) -> ChangedCase:
    before, after = _outcome_lines(case, "before", t), _outcome_lines(case, "after", t)
    return ChangedCase(
        str(case.get("case_id", "")),
        str(case.get("week", "")),
        [line for line in before if line not in after],
        [line for line in after if line not in before],
        sum(line in after for line in before),
    )


def simulation_view(simulation: Mapping[str, Any], t: Translator) -> SimulationView:
    result = simulation.get("result") if isinstance(simulation.get("result"), Mapping) else None
    changed, weekly = [], []
    if result is not None:
        changed = [_changed_case(case, t) for case in _dicts(result.get("changed_cases"))]
        by_agency: dict[str, list[tuple[str, int, int]]] = {}
        for load in _dicts(result.get("weekly_referrals")):
            by_agency.setdefault(str(load.get("agency_id", "")), []).append(
                (
                    str(load.get("week", "")),
                    int(load.get("before") or 0),
                    int(load.get("after") or 0),
                )
            )
        weekly = sorted(by_agency.items())
    found = simulation.get("period")
    period: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    total = simulation.get("cases_total")
    return SimulationView(
        simulation_id=str(simulation.get("simulation_id", "")),
        state=str(simulation.get("state", "")),
        cases_done=int(simulation.get("cases_done") or 0),
        cases_total=int(total) if isinstance(total, int) else None,
        failure=str(simulation.get("failure") or ""),
        period_from=parse_time(period.get("from")),
        period_to=parse_time(period.get("to")),
        result=result,
        changed=changed,
        weekly=weekly,
    )


def simulation_of(simulation: Mapping[str, Any], proposal: Mapping[str, Any]) -> bool:
    """Whether a simulation ran this proposal's document (its district and sha256)."""
    candidate = simulation.get("candidate")
    return (
        isinstance(candidate, Mapping)
        and candidate.get("sha256") == proposal.get("sha256")
        and simulation.get("district_code") == proposal.get("district_code")
    )


def simulation_period(days: str, since: str, until: str) -> dict[str, str | int]:
    """Routing's query for the period chosen: both dates, else the last ``days`` days."""
    if since or until:
        try:
            start, end = date.fromisoformat(since), date.fromisoformat(until)
        except ValueError as exc:
            raise BadInput("from/to") from exc
        if not EARLIEST_DAY <= start <= end <= LATEST_DAY:
            raise BadInput("from/to")
        return {"from": start.isoformat(), "to": end.isoformat()}
    chosen = int(days) if days.isdigit() else DEFAULT_SIMULATION_DAYS if not days else -1
    if chosen not in SIMULATION_DAYS:
        raise BadInput("days")
    return {"days": chosen}


# --- the publish form -----------------------------------------------------------------------


def local_minute(now: datetime, zone: tzinfo) -> str:
    """``now`` as a datetime-local input shows it, in the district's time zone."""
    return now.astimezone(zone).strftime(LOCAL_MINUTE)


def effective_at(typed: str, shown: str, zone: tzinfo) -> str | None:
    """The effective date to send: None (now) when the field still holds the minute the
    form was shown with, else the typed local time in ``zone``, as ISO 8601."""
    typed = typed.strip()
    if not typed or typed == shown:
        return None
    try:
        moment = datetime.strptime(typed[:16], LOCAL_MINUTE)
    except ValueError as exc:
        raise BadInput("effective_at") from exc
    if not EARLIEST_DAY.year <= moment.year <= LATEST_DAY.year:
        raise BadInput("effective_at")
    return moment.replace(tzinfo=zone).isoformat()


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return (
        [item for item in value if isinstance(item, Mapping)]
        if isinstance(value, Sequence) and not isinstance(value, str)
        else []
    )
