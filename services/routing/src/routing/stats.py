"""Monitoring & evaluation figures for a period, and the console's referral list: their
shapes (the OpenAPI schemas), the period's bounds and the CSV form. No I/O."""

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

CSV_HEADER = ("section", "key", "subkey", "metric", "value")


@dataclass(frozen=True)
class StatsRows:
    """The figures of one period, as PostgreSQL computed them (``routing.store.period_stats``)."""

    cases_total: int
    cases_by_violence_type: list[dict[str, object]]
    cases_by_month: list[dict[str, object]]
    acknowledgement_by_agency: list[dict[str, object]]
    deadlines: dict[str, int]
    open_referrals: list[dict[str, object]]
    escalations_by_reason: list[dict[str, object]]


class ReferralItem(BaseModel):
    referral_id: str
    case_id: str
    agency_id: str
    service: str
    priority: str
    state: str
    open: bool = Field(description="Not completed, declined, cancelled or handed on (escalated)")
    requested_at: datetime
    acknowledgement_deadline: datetime
    deadline_missed: bool = Field(
        description="First answer after the deadline, or none and the deadline passed (or the "
        "referral was handed on unanswered)"
    )
    escalation_step: int = Field(description="0 for an original referral, n after n hand-ons")
    escalated_from: str | None = Field(description="The referral this one took over from")
    escalation_reason: str | None = Field(
        description="Why it was handed to this agency: deadline_missed, declined, delivery_failed"
    )
    acknowledged_at: datetime | None = Field(
        description="The agency's first answer (acknowledged, or accepted/declined at once)"
    )
    accepted_at: datetime | None
    declined_at: datetime | None
    decline_reason: str | None
    completed_at: datetime | None
    escalated_at: datetime | None = Field(description="When routing handed it on")
    picked_by: str | None = Field(
        default=None,
        description="When the case's desa chose the agency (SOP pick: by_village): village "
        "(picked by village), kecamatan_no_village / fallback_no_village (by kecamatan, or the "
        "fallback, after no village matched), kecamatan_timeout / fallback_timeout (intake "
        "did not answer in time)",
    )


class ReferralPage(BaseModel):
    referrals: list[ReferralItem]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Pass as offset for the next page; null at the end")


class Period(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    timezone: str = Field(description="Days and months are counted in this time zone")
    districts: list[str] | None = Field(
        default=None, description="The districts counted; null: every district (province level)"
    )


class ViolenceTypeCount(BaseModel):
    violence_type: str
    cases: int


class MonthCount(BaseModel):
    month: str = Field(description="YYYY-MM")
    cases: int


class AgencyAcknowledgement(BaseModel):
    agency_id: str
    acknowledged: int = Field(description="Referrals the agency answered")
    median_minutes: float = Field(description="From the referral to the agency's first answer")
    worst_minutes: float


class Deadlines(BaseModel):
    met: int
    missed: int
    pending: int = Field(description="Unanswered, deadline still ahead")
    met_share: float | None = Field(description="met / (met + missed); null when both are 0")


class OpenReferralCount(BaseModel):
    agency_id: str
    state: str
    referrals: int


class EscalationCount(BaseModel):
    reason: str
    escalations: int


class Stats(BaseModel):
    period: Period
    cases_total: int
    cases_by_violence_type: list[ViolenceTypeCount] = Field(
        description="A case with two violence types counts under each"
    )
    cases_by_month: list[MonthCount]
    acknowledgement_by_agency: list[AgencyAcknowledgement]
    deadlines: Deadlines
    open_referrals: list[OpenReferralCount] = Field(
        description="Referrals made in the period that are still open now"
    )
    escalations_total: int
    escalations_by_reason: list[EscalationCount]


def period_bounds(start: date, end: date, timezone: str) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in the time zone."""
    zone = ZoneInfo(timezone)
    return (
        datetime.combine(start, time(), tzinfo=zone),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=zone),
    )


def whole_months(start: datetime, end: datetime, timezone: str) -> list[tuple[datetime, datetime]]:
    """The calendar months of the time zone that lie wholly in [start, end), first to last:
    those a period may read from their roll-ups (routing.store.roll_up_months)."""
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    first = datetime(local.year, local.month, 1, tzinfo=zone)
    if first < start:
        first = _next_month(first)
    months = []
    # December 9999 ends past what a datetime holds: no period holds it wholly.
    while (first.year, first.month) < (MAXYEAR, 12) and (after := _next_month(first)) <= end:
        months.append((first, after))
        first = after
    return months


def _next_month(first: datetime) -> datetime:
    year, month = divmod(first.year * 12 + first.month, 12)
    return first.replace(year=year, month=month + 1)


def uncovered(
    start: datetime, end: datetime, covered: Sequence[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) outside ``covered`` (disjoint ranges within it, in order):
    what a period reads live, around its rolled-up months."""
    gaps = []
    at = start
    for since, until in covered:
        if since > at:
            gaps.append((at, since))
        at = max(at, until)
    if at < end:
        gaps.append((at, end))
    return gaps


def stats_of(rows: StatsRows, period: Period) -> Stats:
    met, missed = rows.deadlines["met"], rows.deadlines["missed"]
    escalations = [EscalationCount.model_validate(r) for r in rows.escalations_by_reason]
    return Stats(
        period=period,
        cases_total=rows.cases_total,
        cases_by_violence_type=[
            ViolenceTypeCount.model_validate(r) for r in rows.cases_by_violence_type
        ],
        cases_by_month=[MonthCount.model_validate(r) for r in rows.cases_by_month],
        acknowledgement_by_agency=[
            AgencyAcknowledgement.model_validate(r) for r in rows.acknowledgement_by_agency
        ],
        deadlines=Deadlines(
            met=met,
            missed=missed,
            pending=rows.deadlines["pending"],
            met_share=round(met / (met + missed), 4) if met + missed else None,
        ),
        open_referrals=[OpenReferralCount.model_validate(r) for r in rows.open_referrals],
        escalations_total=sum(e.escalations for e in escalations),
        escalations_by_reason=escalations,
    )


def csv_rows(stats: Stats) -> Iterator[tuple[str, str, str, str, object]]:
    """The same figures, long format: section, key, subkey, metric, value."""
    period = stats.period
    yield "period", "", "", "from", period.from_.isoformat()
    yield "period", "", "", "to", period.to.isoformat()
    yield "period", "", "", "timezone", period.timezone
    counted = "all" if period.districts is None else " ".join(period.districts)
    yield "period", "", "", "districts", counted
    yield "cases", "", "", "cases", stats.cases_total
    for by_type in stats.cases_by_violence_type:
        yield "cases_by_violence_type", by_type.violence_type, "", "cases", by_type.cases
    for by_month in stats.cases_by_month:
        yield "cases_by_month", by_month.month, "", "cases", by_month.cases
    for agency in stats.acknowledgement_by_agency:
        for metric in ("acknowledged", "median_minutes", "worst_minutes"):
            yield "acknowledgement_by_agency", agency.agency_id, "", metric, getattr(agency, metric)
    deadlines = stats.deadlines
    for metric in ("met", "missed", "pending", "met_share"):
        value = getattr(deadlines, metric)
        yield "deadlines", "", "", metric, "" if value is None else value
    for still_open in stats.open_referrals:
        yield (
            "open_referrals",
            still_open.agency_id,
            still_open.state,
            "referrals",
            (still_open.referrals),
        )
    yield "escalations", "", "", "escalations", stats.escalations_total
    for escalation in stats.escalations_by_reason:
        yield "escalations_by_reason", escalation.reason, "", "escalations", escalation.escalations


def render_csv(stats: Stats) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(csv_rows(stats))
    return out.getvalue()
