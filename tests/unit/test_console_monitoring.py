"""The console's monitoring summary for the rakor against a fake routing: the period chooser
(month, quarter, year, custom), one district, the tables, the one-page printable version and
the CSV; a district not served is refused before routing is asked."""

import re
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from console.i18n import Translator
from console.monitoring_view import BadPeriod, chosen_period, period_label, quarter_choices
from tests.fake_sessions import MemorySessions
from tests.unit.test_console import ORIGIN, SOPS_IN_FORCE, FakeServices, console_app, sign_in

TODAY = date(2026, 5, 20)


@pytest.fixture
def fake() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(fake: FakeServices) -> Iterator[TestClient]:
    app = console_app(fake, MemorySessions())
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as test_client:
        yield test_client


ID, EN = Translator("id"), Translator("en")


def agency(agency_id: str, **figures: object) -> dict[str, object]:
    return {
        "agency_id": agency_id, "referrals": 12, "acknowledged": 10,
        "acknowledgement_p50_minutes": 42.5, "acknowledgement_p90_minutes": 130.0,
        "deadline_p50_minutes": 60.0, "within_deadline": 9, "deadline_missed": 3, "pending": 0,
        "within_deadline_share": 0.75, "escalations": 0,
        "escalations_by_reason": {"deadline_missed": 0, "declined": 0, "delivery_failed": 0},
        "declined": 0,
        "declined_by_reason": {"no_capacity": 0, "out_of_mandate": 0, "out_of_area": 0,
                               "survivor_declined": 0, "other": 0},
    } | figures  # fmt: skip


FIGURES = {
    "period": {"from": "2026-01-01", "to": "2026-03-31", "timezone": "Asia/Jakarta",
               "districts": ["3514"]},
    "generated_at": "2026-05-20T03:00:00Z",
    "cases_reported": 1234,
    "cases_unrouted": 2,
    "cases_channel_unknown": 0,
    "agencies": [
        agency("rsud-bangil", escalations=3,
               escalations_by_reason={"deadline_missed": 2, "declined": 1, "delivery_failed": 0},
               declined=1,
               declined_by_reason={"no_capacity": 1, "out_of_mandate": 0, "out_of_area": 0,
                                   "survivor_declined": 0, "other": 0}),
        agency("uptppa-pasuruan", acknowledgement_p50_minutes=None,
               acknowledgement_p90_minutes=None, within_deadline_share=None),
    ],
    "all_agencies": agency("*", referrals=24),
    "service_functions": [
        {"function": "pengaduan", "cases": 1234, "counted": "every case reported", "services": []},
        {"function": "penjangkauan", "cases": 56, "counted": "outreach", "services": []},
        {"function": "pengelolaan_kasus", "cases": 1200, "counted": "",
         "services": ["case_management"]},
        {"function": "penampungan_sementara", "cases": 7, "counted": "", "services": ["shelter"]},
        {"function": "mediasi", "cases": 3, "counted": "", "services": ["mediation"]},
        {"function": "pendampingan", "cases": 900, "counted": "",
         "services": ["health", "police", "legal", "psychosocial", "social"]},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("asked", "start", "end"),
    [
        (("month", "2026-02", "", "", "", ""), date(2026, 2, 1), date(2026, 2, 28)),
        (("month", "", "", "", "", ""), date(2026, 5, 1), date(2026, 5, 31)),
        (("quarter", "", "2025-Q4", "", "", ""), date(2025, 10, 1), date(2025, 12, 31)),
        (("quarter", "", "", "", "", ""), date(2026, 4, 1), date(2026, 6, 30)),
        (("year", "", "", "2024", "", ""), date(2024, 1, 1), date(2024, 12, 31)),
        (("custom", "", "", "", "2026-03-15", "2026-03-01"), date(2026, 3, 1), date(2026, 3, 15)),
        (("custom", "", "", "", "", ""), date(2026, 4, 21), TODAY),
        (("nonsense", "2026-12", "", "", "", ""), date(2026, 12, 1), date(2026, 12, 31)),
    ],
)
def test_each_kind_of_period_reads_its_own_field(
    asked: tuple[str, ...], start: date, end: date
) -> None:
    chosen = chosen_period(*asked, today=TODAY)
    assert (chosen.start, chosen.end) == (start, end)


@pytest.mark.parametrize(
    "asked",
    [
        ("month", "2026-13", "", "", "", ""),
        ("quarter", "", "2026-Q5", "", "", ""),
        ("year", "", "", "twenty", "", ""),
        ("custom", "", "", "", "2026-02-30", ""),
        ("year", "", "", "9999", "", ""),  # routing counts to the start of the next day
        ("quarter", "", "9999-Q4", "", "", ""),
        ("custom", "", "", "", "2026-01-01", "9999-12-31"),
    ],
)
def test_a_period_that_is_none_is_refused(asked: tuple[str, ...]) -> None:
    with pytest.raises(BadPeriod):
        chosen_period(*asked, today=TODAY)


def test_periods_are_named_in_the_pages_language() -> None:
    def label(*asked: str, t: Translator = ID) -> str:
        return period_label(chosen_period(*asked, today=TODAY), t)

    assert label("month", "2026-03", "", "", "", "") == "Maret 2026"
    assert label("month", "2026-03", "", "", "", "", t=EN) == "March 2026"
    assert label("quarter", "", "2026-Q1", "", "", "") == "Triwulan I 2026"
    assert label("quarter", "", "2026-Q1", "", "", "", t=EN) == "Q1 2026"
    assert label("year", "", "", "2025", "", "") == "Tahun 2025"
    assert (
        label("custom", "", "", "", "2026-03-01", "2026-03-15") == "1 Mar 2026 \u2013 15 Mar 2026"
    )
    assert quarter_choices(TODAY, ID)[:3] == [
        ("2026-Q2", "Triwulan II 2026"),
        ("2026-Q1", "Triwulan I 2026"),
        ("2025-Q4", "Triwulan IV 2025"),
    ]


def test_the_page_shows_the_tables_for_the_chosen_quarter_and_district(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/monitoring", 200, json=FIGURES)
    sign_in(client, "co14")
    page = client.get("/coordinator/monitoring?period=quarter&quarter=2026-Q1")
    assert page.status_code == 200, page.text
    (asked,) = fake.sent("routing", "/v1/monitoring")
    assert dict(asked.url.params) == {"from": "2026-01-01", "to": "2026-03-31", "district": "3514"}
    text = page.text
    assert "<h1>Rekap pemantauan untuk rakor</h1>" in text
    assert "Kab. Pasuruan (3514) · Triwulan I 2026" in text
    assert "2026-05-20 10:00" in text  # generated, in the console's zone
    assert "Kasus dilaporkan dalam periode: 1.234" in text  # Indonesian groups with a dot
    assert "2 di antaranya belum dirutekan." in text
    timeliness = section(text, "timeliness")
    assert "42,5 mnt" in timeliness
    assert "130,0 mnt" in timeliness
    assert "75,0%" in timeliness
    assert "uptppa-pasuruan" in timeliness
    assert "—" in timeliness
    assert "Semua lembaga" in timeliness
    # only the agency that escalated or declined has a row of reasons
    reasons = section(text, "reasons")
    assert "rsud-bangil" in reasons
    assert "uptppa-pasuruan" not in reasons
    assert "Eskalasi: Batas waktu terlewat" in reasons
    assert "Ditolak: Kapasitas penuh" in reasons
    functions = section(text, "functions")
    assert [f for f in re.findall(r'data-function="(\w+)"', functions)] == [
        "pengaduan", "penjangkauan", "pengelolaan_kasus", "penampungan_sementara", "mediasi",
        "pendampingan",
    ]  # fmt: skip
    assert "kasus yang dirujuk ke layanan: Rumah aman" in functions
    assert "laporan yang masuk lewat jemput bola" in functions
    # the chooser keeps what was chosen, and the links carry the period and the district
    assert 'value="quarter" selected' in text
    assert 'value="2026-Q1" selected' in text
    assert 'id="district"' not in text  # one district: nothing to choose
    assert (
        "/coordinator/monitoring.csv?period=quarter&amp;from=2026-01-01&amp;to=2026-03-31" in text
    )
    assert "district=3514&amp;print=1" in text


def test_the_printable_version_names_district_period_and_time_without_menus(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/monitoring", 200, json=FIGURES)
    sign_in(client, "co14")
    client.cookies.set("lang", "en")
    page = client.get("/coordinator/monitoring?period=month&month=2026-03&print=1")
    assert page.status_code == 200
    text = page.text
    assert '<body class="printable">' in text
    assert "<nav" not in text
    assert "<form" not in text
    assert "Pasuruan Regency (3514)" in text
    assert "March 2026" in text
    assert "(2026-03-01 \u2013 2026-03-31)" in text
    assert "Generated: 2026-05-20 10:00 (Asia/Jakarta)" in text
    assert "Cases reported in the period: 1,234" in text
    assert "Outreach (penjangkauan)" in text
    assert page.headers["cache-control"] == "no-store"


def test_a_coordinator_of_several_districts_chooses_one_the_first_by_default(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/monitoring", 200, json=FIGURES)
    sign_in(client, "co2")
    client.get("/coordinator/monitoring")
    assert fake.sent("routing", "/v1/monitoring")[-1].url.params["district"] == "3513"
    page = client.get("/coordinator/monitoring?district=3514")
    assert fake.sent("routing", "/v1/monitoring")[-1].url.params["district"] == "3514"
    assert 'value="3514" selected' in page.text


def test_a_province_coordinator_chooses_among_the_districts_with_an_sop(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/monitoring", 200, json=FIGURES)
    fake.answer("routing", "GET", "/v1/sops", 200, json=SOPS_IN_FORCE)
    sign_in(client, "co")
    page = client.get("/coordinator/monitoring?district=3514")
    assert 'id="district"' in page.text
    assert fake.sent("routing", "/v1/monitoring")[-1].url.params["district"] == "3514"


def test_the_csv_is_routings_for_the_same_period_and_district(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer(
        "routing",
        "GET",
        "/v1/monitoring.csv",
        200,
        text="section,key,subkey,metric,value\r\n",
        headers={"content-disposition": 'attachment; filename="rujuk-monitoring-3514.csv"'},
    )
    sign_in(client, "co14")
    download = client.get("/coordinator/monitoring.csv?period=year&year=2025")
    assert download.status_code == 200
    assert download.text == "section,key,subkey,metric,value\r\n"
    assert 'filename="rujuk-monitoring-3514.csv"' in download.headers["content-disposition"]
    (asked,) = fake.sent("routing", "/v1/monitoring.csv")
    assert dict(asked.url.params) == {"from": "2025-01-01", "to": "2025-12-31", "district": "3514"}


def test_a_district_not_served_or_a_bad_period_is_refused_before_routing_is_asked(
    client: TestClient, fake: FakeServices
) -> None:
    sign_in(client, "co14")
    asked_before = len(fake.calls)
    for path in ("/coordinator/monitoring", "/coordinator/monitoring.csv"):
        refused = client.get(f"{path}?district=3513")
        assert refused.status_code == 403, path
        assert "tidak melayani kabupaten 3513" in refused.text
        assert client.get(f"{path}?period=month&month=2026-13").status_code == 400
    assert len(fake.calls) == asked_before


def test_only_a_coordinator_opens_it_and_the_coordinator_page_links_to_it(
    client: TestClient, fake: FakeServices
) -> None:
    sign_in(client, "pt")
    assert client.get("/coordinator/monitoring").status_code == 403
    fake.answer("routing", "GET", "/v1/referrals", 200, json={"referrals": []})
    fake.answer("routing", "GET", "/v1/stats", 200, json={})
    sign_in(client, "co14")
    assert 'href="/coordinator/monitoring"' in client.get("/coordinator").text


def test_routing_refusing_the_district_is_the_page_that_says_so(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("routing", "GET", "/v1/monitoring", 403,
                json={"detail": "Anda tidak melayani kabupaten 3514 / you do not serve district "
                      "3514"})  # fmt: skip
    sign_in(client, "co14")
    assert client.get("/coordinator/monitoring").status_code == 403


def section(page: str, table_id: str) -> str:
    start = page.index(f'id="{table_id}"')
    return page[start : page.index("</table>", start)]
