"""The monitoring & evaluation figures (routing's ``/v1/stats``) as charts and tables."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from console.charts import BarChart, bar_chart
from console.i18n import Translator

# The agency charts show the slowest few; every agency is in the table under them and in the
# CSV. A province's year has about 650 agencies: 650 bars are no chart on a phone, and drawing
# them twice was most of the page's time (docs/operations.md, "A province's five years").
CHART_AGENCIES = 15


@dataclass(frozen=True)
class StatsView:
    by_type: BarChart
    by_month: BarChart
    median: BarChart
    worst: BarChart
    deadlines: BarChart
    # Each agency's row of the table as written: (agency, answers, median, worst). Formatted
    # here, not in the template: 650 rows of a province's year cost the page 25 ms in Jinja.
    acknowledgement: list[tuple[str, str, str, str]]
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
        median=_slowest(t, "coord.median", agencies, "median_minutes"),
        worst=_slowest(t, "coord.worst", agencies, "worst_minutes"),
        deadlines=bar_chart(
            t("coord.deadlines"),
            [(t("coord.met"), float(met)), (t("coord.missed_count"), float(missed))],
            count,
        ),
        acknowledgement=[
            (
                str(a["agency_id"]),
                str(a["acknowledged"]),
                count(a["median_minutes"], 1),
                count(a["worst_minutes"], 1),
            )
            for a in agencies
        ],
        met=met,
        missed=missed,
        share="—" if share is None else t.percent(float(share)),
        empty=not (by_type or by_month or agencies or met or missed),
    )


def _slowest(t: Translator, title: str, agencies: list[Mapping[str, Any]], figure: str) -> BarChart:
    """The agencies slowest by ``figure``, slowest first (ties in agency order); the title
    says how many of how many when some are left to the table."""
    ranked = sorted(agencies, key=lambda a: (-float(a[figure]), a["agency_id"]))
    shown = ranked[:CHART_AGENCIES]
    if len(ranked) > len(shown):
        title = t("coord.slowest", title=t(title), shown=len(shown), total=len(ranked))
    else:
        title = t(title)
    return bar_chart(title, [(a["agency_id"], float(a[figure])) for a in shown], t.minutes)
