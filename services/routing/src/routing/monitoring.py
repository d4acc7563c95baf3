"""The rakor's monitoring figures of a district and period: per agency, and cases per service
function of the national standard (Permen PPPA 2/2022); their shapes and CSV. No I/O."""

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from routing.stats import Period
from rujuk_contracts.events import DeclineReason, EscalationReason, Service

CSV_HEADER = ("section", "key", "subkey", "metric", "value")
TOTAL = "*"  # the key of the all-agencies row in the CSV


class ServiceFunction(StrEnum):
    """The six service functions of Permen PPPA 2/2022, in the standard's order."""

    PENGADUAN = "pengaduan"  # complaint
    PENJANGKAUAN = "penjangkauan"  # outreach (jemput bola)
    PENGELOLAAN_KASUS = "pengelolaan_kasus"  # case management
    PENAMPUNGAN_SEMENTARA = "penampungan_sementara"  # temporary shelter
    MEDIASI = "mediasi"  # mediation
    PENDAMPINGAN = "pendampingan"  # accompaniment


# The referral services that carry a function out. Pengaduan and penjangkauan are no service:
# every case reported is a complaint, and a report whose channel is outreach was reached by it.
SERVICE_FUNCTIONS: Mapping[Service, ServiceFunction] = {
    Service.CASE_MANAGEMENT: ServiceFunction.PENGELOLAAN_KASUS,
    Service.SHELTER: ServiceFunction.PENAMPUNGAN_SEMENTARA,
    Service.MEDIATION: ServiceFunction.MEDIASI,
    Service.HEALTH: ServiceFunction.PENDAMPINGAN,
    Service.POLICE: ServiceFunction.PENDAMPINGAN,
    Service.LEGAL: ServiceFunction.PENDAMPINGAN,
    Service.PSYCHOSOCIAL: ServiceFunction.PENDAMPINGAN,
    Service.SOCIAL: ServiceFunction.PENDAMPINGAN,
}
OUTREACH_CHANNEL = "outreach"
# Cases closed as these were no complaint: they count under no function.
NOT_A_COMPLAINT = ("duplicate_report", "filed_in_error")


def services_of(function: ServiceFunction) -> list[Service]:
    return [service for service, f in SERVICE_FUNCTIONS.items() if f is function]


@dataclass(frozen=True)
class MonitoringRows:
    """What PostgreSQL counted (``routing.store.monitoring_rows``): per agency (``agency_id``
    None: all agencies together), escalations and declines by agency and reason, the cases
    reported and, for each function carried out by referrals, the cases referred for it."""

    agencies: Sequence[Mapping[str, object]]
    escalations: Sequence[Mapping[str, object]]
    declines: Sequence[Mapping[str, object]]
    cases: Mapping[str, int]
    function_cases: Mapping[str, int]


class AgencyFigures(BaseModel):
    agency_id: str = Field(description="The agency; '*' in the CSV for all agencies together")
    referrals: int = Field(description="Referrals made to it in the period (hand-ons included)")
    acknowledged: int = Field(description="Of those, answered (acknowledged, accepted, declined)")
    acknowledgement_p50_minutes: float | None = Field(
        description="Median time from the referral to the agency's first answer"
    )
    acknowledgement_p90_minutes: float | None = Field(description="90th percentile of that time")
    deadline_p50_minutes: float | None = Field(
        description="The median of the referrals' own acknowledgement deadlines (the SOP's, by "
        "priority; one of those deadlines, not an average): what the times above are measured "
        "against"
    )
    within_deadline: int = Field(description="First answer at or before the referral's deadline")
    deadline_missed: int = Field(
        description="First answer after the deadline, or none and the deadline passed (or the "
        "referral was handed on unanswered)"
    )
    pending: int = Field(description="Unanswered, deadline still ahead")
    within_deadline_share: float | None = Field(
        description="within_deadline / (within_deadline + deadline_missed); null when both are 0"
    )
    escalations: int = Field(description="Referrals handed on from this agency in the period")
    escalations_by_reason: dict[str, int] = Field(
        description="deadline_missed, declined, delivery_failed (every reason, 0 included)"
    )
    declined: int
    declined_by_reason: dict[str, int] = Field(description="Every DeclineReason code, 0 included")


class ServiceFunctionFigure(BaseModel):
    function: ServiceFunction
    cases: int
    counted: str = Field(description="What is counted, in English")
    services: list[Service] = Field(description="The referral services that carry it out")


class Monitoring(BaseModel):
    period: Period
    generated_at: datetime
    cases_reported: int = Field(
        description="Cases reported in the period, those still waiting to be routed included "
        "and those closed as duplicate_report or filed_in_error left out"
    )
    cases_unrouted: int = Field(description="Of those, still waiting to be routed")
    cases_channel_unknown: int = Field(
        description="Of those, routed before routing kept the channel: not counted as outreach"
    )
    agencies: list[AgencyFigures] = Field(description="Per agency, by agency id")
    all_agencies: AgencyFigures = Field(description="Every agency together (agency_id '*')")
    service_functions: list[ServiceFunctionFigure] = Field(
        description="Cases per service function of Permen PPPA 2/2022, in the standard's order"
    )


COUNTED = {
    ServiceFunction.PENGADUAN: "every case reported",
    ServiceFunction.PENJANGKAUAN: "cases reported through outreach (jemput bola)",
}


def monitoring_of(rows: MonitoringRows, period: Period, generated_at: datetime) -> Monitoring:
    escalations = _by_agency_and_reason(rows.escalations, "escalations", list(EscalationReason))
    declines = _by_agency_and_reason(rows.declines, "declined", list(DeclineReason))
    counted = {str(row["agency_id"]): row for row in rows.agencies if row["agency_id"] is not None}
    total_row = next((row for row in rows.agencies if row["agency_id"] is None), {})
    named = sorted(set(counted) | set(escalations) | set(declines))
    agencies = [_agency(a, counted.get(a, {}), escalations, declines) for a in named]
    everyone = _agency(
        TOTAL,
        total_row,
        {TOTAL: _summed(escalations.values(), list(EscalationReason))},
        {TOTAL: _summed(declines.values(), list(DeclineReason))},
    )
    cases = rows.cases
    reported = cases.get("routed", 0) + cases.get("unrouted", 0)
    outreach = cases.get("routed_outreach", 0) + cases.get("unrouted_outreach", 0)
    return Monitoring(
        period=period,
        generated_at=generated_at,
        cases_reported=reported,
        cases_unrouted=cases.get("unrouted", 0),
        cases_channel_unknown=cases.get("channel_unknown", 0),
        agencies=agencies,
        all_agencies=everyone,
        service_functions=[
            _function(f, reported, outreach, rows.function_cases) for f in ServiceFunction
        ],
    )


def _function(
    function: ServiceFunction, reported: int, outreach: int, function_cases: Mapping[str, int]
) -> ServiceFunctionFigure:
    services = services_of(function)
    if function is ServiceFunction.PENGADUAN:
        cases = reported
    elif function is ServiceFunction.PENJANGKAUAN:
        cases = outreach
    else:
        cases = function_cases.get(function.value, 0)
    counted = COUNTED.get(function) or "cases referred for " + ", ".join(s.value for s in services)
    return ServiceFunctionFigure(function=function, cases=cases, counted=counted, services=services)


def _by_agency_and_reason(
    rows: Sequence[Mapping[str, object]], count: str, reasons: Sequence[StrEnum]
) -> dict[str, dict[str, int]]:
    """{agency: {reason: n}} with every known reason (0 included); an unknown one kept too."""
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        agency = str(row["agency_id"])
        by_reason = found.setdefault(agency, {reason.value: 0 for reason in reasons})
        reason = str(row["reason"])
        by_reason[reason] = by_reason.get(reason, 0) + _int(row[count])
    return found


def _summed(per_agency: Iterable[dict[str, int]], reasons: Sequence[StrEnum]) -> dict[str, int]:
    total = {reason.value: 0 for reason in reasons}
    for by_reason in per_agency:
        for reason, n in by_reason.items():
            total[reason] = total.get(reason, 0) + n
    return total


def _agency(
    agency_id: str,
    row: Mapping[str, object],
    escalations: Mapping[str, dict[str, int]],
    declines: Mapping[str, dict[str, int]],
) -> AgencyFigures:
    met, missed = _int(row.get("met")), _int(row.get("missed"))
    escalated = escalations.get(agency_id) or {r.value: 0 for r in EscalationReason}
    declined = declines.get(agency_id) or {r.value: 0 for r in DeclineReason}
    return AgencyFigures(
        agency_id=agency_id,
        referrals=_int(row.get("referrals")),
        acknowledged=_int(row.get("acknowledged")),
        acknowledgement_p50_minutes=_minutes(row.get("p50_minutes")),
        acknowledgement_p90_minutes=_minutes(row.get("p90_minutes")),
        deadline_p50_minutes=_minutes(row.get("deadline_minutes")),
        within_deadline=met,
        deadline_missed=missed,
        pending=_int(row.get("pending")),
        within_deadline_share=round(met / (met + missed), 4) if met + missed else None,
        escalations=sum(escalated.values()),
        escalations_by_reason=escalated,
        declined=sum(declined.values()),
        declined_by_reason=declined,
    )


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _minutes(value: object) -> float | None:
    return None if value is None else round(float(value), 1)  # type: ignore[arg-type]


# --- CSV ----------------------------------------------------------------------------------

AGENCY_METRICS = (
    "referrals",
    "acknowledged",
    "acknowledgement_p50_minutes",
    "acknowledgement_p90_minutes",
    "deadline_p50_minutes",
    "within_deadline",
    "deadline_missed",
    "pending",
    "within_deadline_share",
    "escalations",
    "declined",
)


def csv_rows(monitoring: Monitoring) -> Iterator[tuple[str, str, str, str, object]]:
    """The same figures, long format: section, key, subkey, metric, value."""
    period = monitoring.period
    yield "period", "", "", "from", period.from_.isoformat()
    yield "period", "", "", "to", period.to.isoformat()
    yield "period", "", "", "timezone", period.timezone
    yield (
        "period",
        "",
        "",
        "districts",
        "all" if period.districts is None else " ".join(period.districts),
    )
    yield "period", "", "", "generated_at", monitoring.generated_at.isoformat()
    yield "cases", "", "", "reported", monitoring.cases_reported
    yield "cases", "", "", "unrouted", monitoring.cases_unrouted
    yield "cases", "", "", "channel_unknown", monitoring.cases_channel_unknown
    for agency in [*monitoring.agencies, monitoring.all_agencies]:
        for metric in AGENCY_METRICS:
            value = getattr(agency, metric)
            yield "agency", agency.agency_id, "", metric, "" if value is None else value
        for reason, n in agency.escalations_by_reason.items():
            yield "agency_escalations", agency.agency_id, reason, "escalations", n
        for reason, n in agency.declined_by_reason.items():
            yield "agency_declines", agency.agency_id, reason, "declined", n
    for figure in monitoring.service_functions:
        yield "service_function", figure.function.value, "", "cases", figure.cases


def render_csv(monitoring: Monitoring) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(csv_rows(monitoring))
    return out.getvalue()
