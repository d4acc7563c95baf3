"""The cadre's page in the console (issue 25), against fake services: only a cadre opens
it; its form offers the cadre's areas; a report goes to intake with the page's
Idempotency-Key and comes back as JSON (the case id, or intake's refusal as reasons in the
page's language); the service worker and manifest; the logic beside it."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from console import cadre
from console.i18n import Translator
from tests.fake_sessions import MemorySessions
from tests.unit.test_console import ORIGIN, FakeServices, console_app, sign_in

WHO = {"token_id": "tok-ca", "role": "cadre", "agency_id": None, "districts": ["3513"],
       "scope": "3513", "areas": ["Kraksaan/Desa Contoh Satu", "Kraksaan/Desa Contoh Dua",
                                  "Maron"]}  # fmt: skip
REPORT = {"channel": "outreach", "district_code": "3513", "kecamatan": "Maron"}
MINE = {"Rujuk-Queue-Owner": cadre.owner_of("tok-ca")}  # the queue the page sends from


@pytest.fixture
def fake() -> FakeServices:
    services = FakeServices()
    services.tokens["ca"] = ("cadre", None)

    def whoami(request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        if token == "ca":
            return httpx.Response(200, json=WHO)
        role, agency = services.tokens[token]
        return httpx.Response(200, json={"token_id": f"tok-{token}", "role": role,
                                          "agency_id": agency, "districts": None,
                                          "scope": "province"})  # fmt: skip

    services.routes["intake", "GET", "/v1/whoami"] = whoami
    return services


@pytest.fixture
def client(fake: FakeServices) -> Iterator[TestClient]:
    app = console_app(fake, MemorySessions())
    with TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN}) as test_client:
        yield test_client


def test_a_cadres_areas_group_villages_under_their_kecamatan() -> None:
    assert cadre.areas_of(WHO["areas"]) == [
        cadre.Area("Kraksaan", ("Desa Contoh Satu", "Desa Contoh Dua")),
        cadre.Area("Maron", ()),
    ]
    assert cadre.areas_of(None) == []
    assert cadre.owner_of("tok-1") != cadre.owner_of("tok-2")
    assert "tok-1" not in cadre.owner_of("tok-1")


def test_intakes_refusals_read_as_reasons_in_the_pages_language() -> None:
    problems = [
        {"field": "victim.nik", "problem": "String should match pattern '^\\d{16}$'"},
        {"field": "kecamatan", "problem": "kecamatan Paiton di luar wilayah Anda / kecamatan "
         "Paiton is outside your areas"},
    ]  # fmt: skip
    assert cadre.refusal_reasons(problems, Translator("id")) == [
        "NIK (16 angka): isian tidak sah",
        "Kecamatan: kecamatan Paiton di luar wilayah Anda",
    ]
    english = cadre.refusal_reasons(problems, Translator("en"))
    assert english[1] == "Sub-district (kecamatan): kecamatan Paiton is outside your areas"
    assert cadre.refusal_reasons([], Translator("id")) == ["isian tidak sah"]


def test_a_cadre_lands_on_its_form_with_its_areas_and_no_one_else_opens_it(
    client: TestClient,
) -> None:
    signed_in = sign_in(client, "ca")
    assert signed_in.headers["location"] == "/cadre/"
    page = client.get("/cadre/")
    assert page.status_code == 200
    assert 'value="Kraksaan/Desa Contoh Dua"' in page.text
    assert 'value="Maron/"' in page.text
    assert f'data-owner="{cadre.owner_of("tok-ca")}"' in page.text
    assert 'rel="manifest"' in page.text
    assert "htmx-2.0.11" not in page.text  # the cadre's page loads its own script only
    assert 'autocomplete="off"' in page.text
    assert client.get("/cases/3513-ABCDEFGHJK/details").status_code == 403
    assert client.get("/inbox").status_code == 403


def test_other_roles_are_refused_the_cadres_page(client: TestClient) -> None:
    sign_in(client, "op")
    assert client.get("/cadre/").status_code == 403
    assert client.post("/cadre/reports", json=REPORT).status_code == 403


def test_a_report_goes_to_intake_with_its_key_and_comes_back_as_json(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("intake", "POST", "/v1/reports", 202, json={"case_id": "3513-ABCDEFGHJK"})
    sign_in(client, "ca")
    sent = client.post("/cadre/reports", json=REPORT, headers={"Idempotency-Key": "k-1", **MINE})
    assert sent.status_code == 202
    assert sent.json() == {"case_id": "3513-ABCDEFGHJK"}
    (asked,) = fake.sent("intake", "/v1/reports")
    assert asked.headers["idempotency-key"] == "k-1"
    assert asked.headers["authorization"] == "Bearer ca"
    no_key = client.post("/cadre/reports", json=REPORT, headers=MINE)
    assert no_key.status_code == 400
    too_big = client.post(
        "/cadre/reports",
        content=b"{" + b" " * 6000 + b"}",
        headers={"Idempotency-Key": "k", **MINE},
    )
    assert too_big.status_code == 400
    assert len(fake.sent("intake", "/v1/reports")) == 1


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (422, {"detail": [{"field": "victim.nik", "problem": "bad"}]}, 422),
        (401, {"detail": "revoked"}, 401),
        (503, {"detail": "down"}, 503),
    ],
)
def test_intakes_answer_becomes_what_the_queue_does_next(
    client: TestClient, fake: FakeServices, status: int, answer: dict, expected: int
) -> None:
    sign_in(client, "ca")
    fake.answer("intake", "POST", "/v1/reports", status, json=answer)
    sent = client.post("/cadre/reports", json=REPORT, headers={"Idempotency-Key": "k-2", **MINE})
    assert sent.status_code == expected
    if expected == 422:
        assert sent.json() == {"reasons": ["NIK (16 angka): isian tidak sah"]}


def test_the_service_worker_keeps_the_page_and_its_versioned_files(client: TestClient) -> None:
    worker = client.get("/cadre/sw.js")
    assert worker.status_code == 200
    assert worker.headers["content-type"].startswith("application/javascript")
    assert worker.headers["cache-control"] == "no-cache"
    for name in ("console", "cadre"):
        assert f'"/static/{name}.' in worker.text
    assert "/cadre/reports" not in worker.text  # reports are never kept by it
    manifest = client.get("/cadre/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert manifest.json()["start_url"] == "/cadre/"
    assert {i["sizes"] for i in manifest.json()["icons"]} == {"any", "192x192", "512x512"}
    for icon in manifest.json()["icons"]:
        assert client.get(icon["src"]).status_code == 200


def test_an_unexpected_answer_is_never_a_server_error(
    client: TestClient, fake: FakeServices
) -> None:
    sign_in(client, "ca")
    for body in (b"[]", b"not json", b'"text"'):
        answer = client.post(
            "/cadre/reports", content=body, headers={"Idempotency-Key": "k", **MINE}
        )
        assert answer.status_code == 400
    assert httpx.codes.is_client_error(client.post("/cadre/reports").status_code)


def test_a_report_from_another_cadres_queue_is_never_filed_in_this_cadres_name(
    client: TestClient, fake: FakeServices
) -> None:
    fake.answer("intake", "POST", "/v1/reports", 202, json={"case_id": "3513-ABCDEFGHJK"})
    sign_in(client, "ca")
    for owner in (cadre.owner_of("tok-someone-else"), ""):
        sent = client.post(
            "/cadre/reports",
            json=REPORT,
            headers={"Idempotency-Key": "k-3", "Rujuk-Queue-Owner": owner},
        )
        assert sent.status_code == 409
        assert sent.json() == {"signin": True}
    assert fake.sent("intake", "/v1/reports") == []


def test_every_page_a_cadre_opens_warns_and_wipes_on_signing_out(client: TestClient) -> None:
    sign_in(client, "ca")
    owner = cadre.owner_of("tok-ca")
    for path in ("/cadre/", "/cases/3513-ABCDEFGHJK/details", "/inbox"):
        page = client.get(path)
        assert f'data-cadre-owner="{owner}"' in page.text, path
        assert "/static/cadre-signout." in page.text, path
        assert "/static/cadre-queue." in page.text, path
        # The warning in Bahasa Indonesia, then English, whatever the page's language.
        assert "{count} laporan belum terkirim" in page.text
        assert " / {count} report(s) not yet sent" in page.text
    words = cadre.signout_words("tok-ca")
    assert words["owner"] == owner
    assert words["confirm"] == "Keluar dan hapus / Sign out and delete"


def test_other_roles_pages_carry_no_cadre_wipe(client: TestClient) -> None:
    sign_in(client, "op")
    page = client.get("/reports/new")
    assert "data-cadre-owner" not in page.text
    assert "cadre-signout" not in page.text


def test_the_cadre_page_knows_when_its_session_ends(client: TestClient) -> None:
    sign_in(client, "ca")
    page = client.get("/cadre/")
    (expires,) = re.findall(r'data-expires="([^"]+)"', page.text)
    assert datetime.fromisoformat(expires) > datetime.now(UTC)
    assert 'id="session-ended"' in page.text


def test_the_service_worker_sends_the_queue_by_background_sync(client: TestClient) -> None:
    worker = client.get("/cadre/sw.js").text
    assert re.search(r'importScripts\("/static/cadre-queue\.[0-9a-f]+\.js"\)', worker)
    assert 'addEventListener("sync"' in worker
    queue = client.get(re.search(r"/static/cadre-queue\.[0-9a-f]+\.js", worker)[0])  # type: ignore[index]
    assert queue.status_code == 200
    assert "Rujuk-Queue-Owner" in queue.text
    assert "Idempotency-Key" in queue.text
