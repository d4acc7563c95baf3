"""Routing's HTTP API refuses before it touches anything: no token, a token of the wrong role,
or a body that is not YAML. (No servers: the token check is given its answer, and these
answers come before the database.)"""

import httpx
import pytest

from routing.bootstrap import create_app
from routing.settings import RoutingSettings
from rujuk_contracts.events import CloseReason
from rujuk_runtime.access import Principal, Role

SOP_URL = "http://routing/v1/sops"
CLOSE_URL = "http://routing/v1/cases/3514-AB12CD34EF/close"
TOKENS = {
    "right-token": Principal("tok-000000000001", Role.COORDINATOR, None, None),
    "partner-token": Principal("tok-000000000002", Role.PARTNER, "rsud-bangil", None),
}


def client() -> httpx.AsyncClient:
    app = create_app(RoutingSettings())

    async def principal(secret: str) -> Principal | None:
        return TOKENS.get(secret)

    app.state.verifier.principal = principal  # what the token projection would answer
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app))


@pytest.mark.parametrize("header", [None, "Basic right-token", "right-token"])
@pytest.mark.parametrize("url", [SOP_URL, CLOSE_URL])
async def test_a_missing_bearer_token_is_refused(url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with client() as http:
        response = await http.post(url, headers=headers, content="sop_id: x\n")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="rujuk"'
    assert response.json()["detail"] == "token akses diperlukan / a bearer token is required"


@pytest.mark.parametrize("url", [SOP_URL, CLOSE_URL])
async def test_an_unknown_token_is_refused_and_a_partners_is_forbidden(url: str) -> None:
    async with client() as http:
        unknown = await http.post(url, headers={"Authorization": "Bearer wrong-token"})
        partner = await http.post(url, headers={"Authorization": "Bearer partner-token"})
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    assert partner.status_code == 403
    assert "only coordinator" in partner.json()["detail"]


async def test_an_sop_must_be_sent_as_yaml() -> None:
    async with client() as http:
        response = await http.post(
            SOP_URL,
            headers={"Authorization": "Bearer right-token"},
            json={"sop_id": "sop-3514"},
        )
    assert response.status_code == 415


async def test_close_checks_the_case_id_format() -> None:
    async with client() as http:
        response = await http.post(
            "http://routing/v1/cases/not-a-case/close",
            headers={"Authorization": "Bearer right-token"},
        )
    assert response.status_code == 422


async def test_a_close_reason_that_is_not_a_code_is_refused_naming_the_codes() -> None:
    typed = "ditutup karena CONTOH Korban pindah"
    async with client() as http:
        response = await http.post(
            CLOSE_URL, headers={"Authorization": "Bearer right-token"}, json={"reason": typed}
        )
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"] == "reason"
    assert all(code in problem["problem"] for code in CloseReason)
    assert typed not in response.text  # what was typed is not echoed


@pytest.mark.parametrize(
    "body",
    [{"note": "CONTOH Korban pindah"}, {"note_ref": "CONTOH Korban pindah"}],
    ids=["free text as note", "free text as note_ref"],
)
async def test_free_text_in_a_close_is_refused_naming_the_field(body: dict[str, str]) -> None:
    async with client() as http:
        response = await http.post(
            CLOSE_URL, headers={"Authorization": "Bearer right-token"}, json=body
        )
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["detail"]] == list(body)


async def test_routing_serves_prometheus_metrics() -> None:
    async with client() as http:
        response = await http.get("http://routing/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "rujuk_" in response.text
