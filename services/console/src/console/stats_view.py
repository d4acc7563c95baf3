"""The monitoring & evaluation figures (routing's ``/v1/stats``) as charts and tables."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from console.charts import BarChart, bar_chart
from console.i18n import Translator


@dataclass(frozen=True)
class StatsView:
    by_type: BarChart
    by_month: BarChart
    median: BarChart
    worst: BarChart
    deadlines: BarChart
    acknowledgement: list[Mapping[str, Any]]
    met: int
    missed: int
    share: str  # "87,5%" (id) / "87.5%" (en), or "—" when nothing was due yet
    empty: bool


def stats_view(stats: Mapping[str, Any], t: Translator) -> StatsView:
    count = t.number
    by_type = [
        (t.enum("violence_type", r["violence_type"]), float(r["cases"]))
        for r in stats.get("cases_by_violence_type", [])
    ]
    by_month = [(str(r["month"]), float(r["cases"])) for r in stats.get("cases_by_month", [])]
    agencies = list(stats.get("acknowledgement_by_agency", []))
    deadlines = stats.get("deadlines", {})
    met, missed = int(deadlines.get("met", 0)), int(deadlines.get("missed", 0))
    share = deadlines.get("met_share")
    return StatsView(
        by_type=bar_chart(t("coord.by_type"), by_type, count),
        by_month=bar_chart(t("coord.by_month"), by_month, count),
        median=bar_chart(
            t("coord.median"),
            [(a["agency_id"], float(a["median_minutes"])) for a in agencies],
            t.minutes,
        ),
        worst=bar_chart(
            t("coord.worst"),
            [(a["agency_id"], float(a["worst_minutes"])) for a in agencies],
            t.minutes,
        ),
        deadlines=bar_chart(
            t("coord.deadlines"),
            [(t("coord.met"), float(met)), (t("coord.missed_count"), float(missed))],
            count,
        ),
        acknowledgement=agencies,
        met=met,
        missed=missed,
        share="—" if share is None else t.percent(float(share)),
        empty=not (by_type or by_month or agencies or met or missed),
    )
