"""Routing's HTTP API refuses before it touches anything: no token set, a wrong token, or a
body that is not YAML. (No servers: these answers come before the database.)"""

import httpx
import pytest
from pydantic import SecretStr

from routing.app import create_app
from routing.settings import RoutingSettings

SOP_URL = "http://routing/v1/sops"
CLOSE_URL = "http://routing/v1/cases/3514-AB12CD34EF/close"


def client(token: str | None) -> httpx.AsyncClient:
    settings = RoutingSettings(admin_token=SecretStr(token) if token else None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)))


@pytest.mark.parametrize("url", [SOP_URL, CLOSE_URL])
async def test_without_an_admin_token_configured_publishing_and_closing_are_off(url: str) -> None:
    async with client(None) as http:
        response = await http.post(url, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 503
    assert "ROUTING_ADMIN_TOKEN is not set" in response.json()["detail"]


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic right-token", "right-token"])
@pytest.mark.parametrize("url", [SOP_URL, CLOSE_URL])
async def test_a_missing_or_wrong_bearer_token_is_refused(url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with client("right-token") as http:
        response = await http.post(url, headers=headers, content="sop_id: x\n")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_sop_must_be_sent_as_yaml() -> None:
    async with client("right-token") as http:
        response = await http.post(
            SOP_URL,
            headers={"Authorization": "Bearer right-token"},
            json={"sop_id": "sop-3514"},
        )
    assert response.status_code == 415


async def test_close_checks_the_case_id_format() -> None:
    async with client("right-token") as http:
        response = await http.post(
            "http://routing/v1/cases/not-a-case/close",
            headers={"Authorization": "Bearer right-token"},
        )
    assert response.status_code == 422


async def test_a_close_reason_that_is_too_long_is_refused_after_the_token() -> None:
    async with client("right-token") as http:
        response = await http.post(
            CLOSE_URL, headers={"Authorization": "Bearer right-token"}, json={"reason": "x" * 201}
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "reason"


async def test_routing_serves_prometheus_metrics() -> None:
    async with client(None) as http:
        response = await http.get("http://routing/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "rujuk_" in response.text
