"""The rakor's monitoring figures from known rows: per agency and all together, reasons filled
in, cases per service function of Permen PPPA 2/2022, and the CSV."""

import csv
import io
from datetime import UTC, date, datetime

from routing.monitoring import (
    SERVICE_FUNCTIONS,
    MonitoringRows,
    ServiceFunction,
    monitoring_of,
    render_csv,
    services_of,
)
from routing.stats import Period
from rujuk_contracts.events import Service

PERIOD = Period.model_validate(
    {"from": date(2026, 1, 1), "to": date(2026, 3, 31), "timezone": "Asia/Jakarta",
     "districts": ["3514"]}
)  # fmt: skip
GENERATED = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
ROWS = MonitoringRows(
    agencies=[
        {"agency_id": "rsud", "referrals": 10, "acknowledged": 8, "p50_minutes": 42.25,
         "p90_minutes": 130.04, "deadline_minutes": 60.0, "met": 6, "missed": 2, "pending": 2},
        {"agency_id": "uptppa", "referrals": 4, "acknowledged": 0, "p50_minutes": None,
         "p90_minutes": None, "deadline_minutes": 120.0, "met": 0, "missed": 0, "pending": 4},
        {"agency_id": None, "referrals": 14, "acknowledged": 8, "p50_minutes": 42.25,
         "p90_minutes": 130.04, "deadline_minutes": 60.0, "met": 6, "missed": 2, "pending": 6},
    ],
    escalations=[
        {"agency_id": "rsud", "reason": "deadline_missed", "escalations": 2},
        {"agency_id": "rsud", "reason": "declined", "escalations": 1},
        # handed on in the period, its own referral made before it: still named
        {"agency_id": "polres", "reason": "delivery_failed", "escalations": 1},
    ],
    declines=[
        {"agency_id": "rsud", "reason": "no_capacity", "declined": 1},
        {"agency_id": "rsud", "reason": "some_new_reason", "declined": 1},
    ],
    cases={"routed": 20, "routed_outreach": 3, "channel_unknown": 2, "unrouted": 1,
           "unrouted_outreach": 1},
    function_cases={"pengelolaan_kasus": 19, "penampungan_sementara": 2, "pendampingan": 15},
)  # fmt: skip


def test_every_service_carries_out_one_function_of_the_national_standard() -> None:
    assert set(SERVICE_FUNCTIONS) == set(Service)
    assert services_of(ServiceFunction.PENGELOLAAN_KASUS) == [Service.CASE_MANAGEMENT]
    assert services_of(ServiceFunction.PENAMPUNGAN_SEMENTARA) == [Service.SHELTER]
    assert services_of(ServiceFunction.MEDIASI) == [Service.MEDIATION]
    assert set(services_of(ServiceFunction.PENDAMPINGAN)) == {
        Service.HEALTH, Service.POLICE, Service.LEGAL, Service.PSYCHOSOCIAL, Service.SOCIAL
    }  # fmt: skip
    assert services_of(ServiceFunction.PENGADUAN) == services_of(ServiceFunction.PENJANGKAUAN) == []


def test_each_agency_gets_its_figures_and_the_share_answered_in_time() -> None:
    figures = monitoring_of(ROWS, PERIOD, GENERATED)
    assert [a.agency_id for a in figures.agencies] == ["polres", "rsud", "uptppa"]
    polres, rsud, upt = figures.agencies
    assert (rsud.referrals, rsud.acknowledged, rsud.within_deadline, rsud.deadline_missed) == (
        10, 8, 6, 2
    )  # fmt: skip
    assert (rsud.acknowledgement_p50_minutes, rsud.acknowledgement_p90_minutes) == (42.2, 130.0)
    assert rsud.deadline_p50_minutes == 60.0
    assert rsud.within_deadline_share == 0.75
    assert rsud.escalations_by_reason == {"deadline_missed": 2, "declined": 1,
                                          "delivery_failed": 0}  # fmt: skip
    assert rsud.escalations == 3
    assert rsud.declined_by_reason == {"no_capacity": 1, "out_of_mandate": 0, "out_of_area": 0,
                                       "survivor_declined": 0, "other": 0,
                                       "some_new_reason": 1}  # fmt: skip
    assert rsud.declined == 2
    # nothing due yet: no share rather than 0 %
    assert upt.within_deadline_share is None
    assert upt.acknowledgement_p50_minutes is None
    assert upt.escalations == 0
    assert upt.declined_by_reason["no_capacity"] == 0
    # named by its hand-on alone
    assert (polres.referrals, polres.escalations) == (0, 1)
    assert polres.deadline_p50_minutes is None


def test_all_agencies_together_take_the_databases_percentiles_and_sum_the_reasons() -> None:
    everyone = monitoring_of(ROWS, PERIOD, GENERATED).all_agencies
    assert everyone.agency_id == "*"
    assert (everyone.referrals, everyone.pending, everyone.within_deadline_share) == (14, 6, 0.75)
    assert everyone.acknowledgement_p90_minutes == 130.0
    assert everyone.escalations_by_reason == {"deadline_missed": 2, "declined": 1,
                                              "delivery_failed": 1}  # fmt: skip
    assert everyone.escalations == 4
    assert everyone.declined == 2


def test_cases_per_service_function_in_the_standards_order() -> None:
    figures = monitoring_of(ROWS, PERIOD, GENERATED)
    assert [(f.function.value, f.cases) for f in figures.service_functions] == [
        ("pengaduan", 21),  # every case reported, the one waiting to be routed included
        ("penjangkauan", 4),  # outreach, routed or waiting
        ("pengelolaan_kasus", 19),
        ("penampungan_sementara", 2),
        ("mediasi", 0),  # no row: none
        ("pendampingan", 15),
    ]
    assert (figures.cases_reported, figures.cases_unrouted, figures.cases_channel_unknown) == (
        21, 1, 2
    )  # fmt: skip
    mediasi = figures.service_functions[4]
    assert mediasi.services == [Service.MEDIATION]
    assert mediasi.counted == "cases referred for mediation"


def test_no_rows_is_a_page_of_zeros_not_an_error() -> None:
    empty = MonitoringRows(agencies=[], escalations=[], declines=[], cases={},
                           function_cases={})  # fmt: skip
    figures = monitoring_of(empty, PERIOD, GENERATED)
    assert figures.agencies == []
    assert figures.all_agencies.referrals == 0
    assert figures.all_agencies.within_deadline_share is None
    assert [f.cases for f in figures.service_functions] == [0] * 6


def test_the_csv_holds_every_figure_in_long_form() -> None:
    figures = monitoring_of(ROWS, PERIOD, GENERATED)
    rows = list(csv.reader(io.StringIO(render_csv(figures))))
    assert rows[0] == ["section", "key", "subkey", "metric", "value"]
    value = {tuple(r[:4]): r[4] for r in rows[1:]}
    assert value[("period", "", "", "from")] == "2026-01-01"
    assert value[("period", "", "", "districts")] == "3514"
    assert value[("period", "", "", "generated_at")] == "2026-04-01T02:00:00+00:00"
    assert value[("cases", "", "", "reported")] == "21"
    assert value[("agency", "rsud", "", "within_deadline_share")] == "0.75"
    assert value[("agency", "uptppa", "", "within_deadline_share")] == ""
    assert value[("agency", "*", "", "referrals")] == "14"
    assert value[("agency_escalations", "*", "delivery_failed", "escalations")] == "1"
    assert value[("agency_declines", "rsud", "no_capacity", "declined")] == "1"
    assert value[("service_function", "pengaduan", "", "cases")] == "21"
    assert len(rows) == len(value) + 1  # no figure twice
