"""The rakor's monitoring page: the period a coordinator chose (month, quarter, year or custom)
and routing's ``/v1/monitoring`` figures as the page's rows, in the page's language. No I/O."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from console import formats
from console.i18n import Translator

KINDS = ("month", "quarter", "year", "custom")
QUARTERS_OFFERED = 8
YEARS_OFFERED = 6
ESCALATION_REASONS = ("deadline_missed", "declined", "delivery_failed")
DECLINE_REASONS = ("no_capacity", "out_of_mandate", "out_of_area", "survivor_declined", "other")
ROMAN = ("I", "II", "III", "IV")


class BadPeriod(ValueError):
    """A period the page cannot read (a month, quarter, year or date that is none)."""


@dataclass(frozen=True)
class ChosenPeriod:
    kind: str
    start: date
    end: date
    month: str  # YYYY-MM of the start: what the month field shows
    quarter: str  # YYYY-Qn of the start
    year: int


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def _month_end(year: int, month: int) -> date:
    following = date(year + month // 12, month % 12 + 1, 1)
    return following - timedelta(days=1)


def _chosen(kind: str, start: date, end: date) -> ChosenPeriod:
    return ChosenPeriod(kind, start, end, f"{start:%Y-%m}", quarter_of(start), start.year)


def chosen_period(
    kind: str, month: str, quarter: str, year: str, since: str, until: str, today: date
) -> ChosenPeriod:
    """The period asked for; each kind reads its own field, and without one it is the one
    that holds ``today``. Custom: ``since``..``until`` (the last 30 days by default), earlier
    date first. BadPeriod for a value that is no month, quarter, year or date."""
    kind = kind if kind in KINDS else "month"
    try:
        if kind == "month":
            first = date.fromisoformat(f"{month}-01") if month else today.replace(day=1)
            return _chosen(kind, first, _month_end(first.year, first.month))
        if kind == "quarter":
            shown, _, number = (quarter or quarter_of(today)).partition("-Q")
            if number not in ("1", "2", "3", "4"):
                raise BadPeriod(quarter)
            first_month = 3 * int(number) - 2
            first = date(int(shown), first_month, 1)
            return _chosen(kind, first, _month_end(first.year, first_month + 2))
        if kind == "year":
            whole = int(year) if year else today.year
            if whole >= date.max.year:
                raise BadPeriod(year)
            return _chosen(kind, date(whole, 1, 1), date(whole, 12, 31))
        start = date.fromisoformat(since) if since else today - timedelta(days=29)
        end = date.fromisoformat(until) if until else today
    except ValueError as exc:
        raise BadPeriod(str(exc)) from exc
    if max(start, end) >= date.max:  # its end is counted up to the next day's start
        raise BadPeriod(until)
    return _chosen(kind, min(start, end), max(start, end))


def period_label(period: ChosenPeriod, t: Translator) -> str:
    """``Maret 2026``, ``Triwulan I 2026``, ``Tahun 2026``, ``1 Mar 2026 \u2013 15 Mar 2026``."""
    if period.kind == "month":
        return formats.month_year(period.start, t.language)
    if period.kind == "quarter":
        number = (period.start.month - 1) // 3
        return t("mon.quarter_label", roman=ROMAN[number], number=number + 1, year=period.year)
    if period.kind == "year":
        return t("mon.year_label", year=period.year)
    return (
        f"{formats.day_month_year(period.start, t.language)} \u2013 "
        f"{formats.day_month_year(period.end, t.language)}"
    )


def quarter_choices(today: date, t: Translator) -> list[tuple[str, str]]:
    """The last quarters, newest first: (value, label)."""
    choices = []
    year, index = today.year, (today.month - 1) // 3
    for _ in range(QUARTERS_OFFERED):
        label = t("mon.quarter_label", roman=ROMAN[index], number=index + 1, year=year)
        choices.append((f"{year}-Q{index + 1}", label))
        year, index = (year, index - 1) if index else (year - 1, 3)
    return choices


def year_choices(today: date) -> list[int]:
    return [today.year - n for n in range(YEARS_OFFERED)]


@dataclass(frozen=True)
class AgencyRow:
    agency_id: str
    referrals: str
    acknowledged: str
    p50: str
    p90: str
    deadline: str
    share: str
    missed: str
    pending: str
    escalations: list[str]  # by ESCALATION_REASONS
    declines: list[str]  # by DECLINE_REASONS
    escalated_or_declined: bool


@dataclass(frozen=True)
class FunctionRow:
    function: str
    label: str
    cases: str
    counted: str


@dataclass(frozen=True)
class MonitoringView:
    agencies: list[AgencyRow]
    everyone: AgencyRow
    functions: list[FunctionRow]
    cases_reported: str
    cases_unrouted: int
    channel_unknown: int
    empty: bool


def _row(agency: Mapping[str, Any], t: Translator) -> AgencyRow:
    def minutes(key: str) -> str:
        value = agency.get(key)
        return "—" if value is None else t.minutes(float(value))

    share = agency.get("within_deadline_share")
    escalations = agency.get("escalations_by_reason") or {}
    declines = agency.get("declined_by_reason") or {}
    return AgencyRow(
        agency_id=str(agency.get("agency_id", "")),
        referrals=t.number(int(agency.get("referrals", 0))),
        acknowledged=t.number(int(agency.get("acknowledged", 0))),
        p50=minutes("acknowledgement_p50_minutes"),
        p90=minutes("acknowledgement_p90_minutes"),
        deadline=minutes("deadline_p50_minutes"),
        share="—" if share is None else t.percent(float(share)),
        missed=t.number(int(agency.get("deadline_missed", 0))),
        pending=t.number(int(agency.get("pending", 0))),
        escalations=[t.number(int(escalations.get(r, 0))) for r in ESCALATION_REASONS],
        declines=[t.number(int(declines.get(r, 0))) for r in DECLINE_REASONS],
        escalated_or_declined=bool(agency.get("escalations") or agency.get("declined")),
    )


def _function(figure: Mapping[str, Any], t: Translator) -> FunctionRow:
    function = str(figure.get("function", ""))
    services: Sequence[str] = figure.get("services") or []
    if services:
        counted = t("mon.counted_referred", services=", ".join(
            t.enum("service", s) for s in services
        ))  # fmt: skip
    else:
        counted = t(f"mon.counted.{function}")
    return FunctionRow(
        function=function,
        label=t(f"mon.function.{function}"),
        cases=t.number(int(figure.get("cases", 0))),
        counted=counted,
    )


def monitoring_view(figures: Mapping[str, Any], t: Translator) -> MonitoringView:
    agencies = [_row(a, t) for a in figures.get("agencies") or []]
    return MonitoringView(
        agencies=agencies,
        everyone=_row(figures.get("all_agencies") or {}, t),
        functions=[_function(f, t) for f in figures.get("service_functions") or []],
        cases_reported=t.number(int(figures.get("cases_reported", 0))),
        cases_unrouted=int(figures.get("cases_unrouted", 0)),
        channel_unknown=int(figures.get("cases_channel_unknown", 0)),
        empty=not agencies and not figures.get("cases_reported"),
    )
