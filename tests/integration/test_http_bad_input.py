"""Bad input over HTTP, against every service's API running as a real process (real NATS and
PostgreSQL).

- Schemathesis: valid and invalid requests generated from the OpenAPI document each service
  serves, with a token of a role the operation admits (state-changing operations included).
  No 5xx, every response conforms to the document, input that breaks the schema gets a 4xx.
- Without a token, or with a token no one issued, every route of every service's app (taken
  from the app itself) answers 401 with ``WWW-Authenticate``.
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from intake import auth
from intake.auth import Role
from intake.cli import connect
from rujuk.stack import Stack
from tests.conftest import fresh_database, remove_streams
from tests.service_apps import service_apps

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning"),
]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES = 10  # per operation and mode: enough to find a 5xx or a drift, fast enough for CI
OPEN_PATHS = {"/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
# Browser pages: a missing session sends the browser to sign in (tests/browser covers them).
HTML_ONLY = {"console"}
PARTNER_AGENCY = "puskesmas-contoh"
ROLE_REFUSED = "peran tidak diizinkan"  # the 403 of a role that may not (rujuk_runtime.access)
PATH_VALUES = {"case_id": "3514-AB12CD34EF", "referral_id": "3514-AB12CD34EF-01"}


@dataclass
class Running:
    stack: Stack
    apps: dict[str, FastAPI]
    tokens: dict[Role, str]

    def url(self, service: str) -> str:
        return self.stack.services[service].url


async def _partner_token(database_url: str) -> str:
    conn = await connect(database_url)
    try:
        return (await auth.create_token(conn, Role.PARTNER, agency_id=PARTNER_AGENCY))[1]
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def running(
    nats_url: str, server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    asyncio.run(remove_streams(nats_url))
    database = fresh_database(server_database_url)
    database_url = asyncio.run(database.__aenter__())
    folder: Path = tmp_path_factory.mktemp("http-bad-input")
    stack = Stack(folder, external_nats_url=nats_url, external_database_url=database_url)
    stack.extra_env["INTAKE_MAX_BODY_BYTES"] = "8192"
    try:
        apps = service_apps(stack)
        stack.start()
        secrets = stack.secrets()
        tokens = {
            Role.OPERATOR: secrets["operator_token"],
            Role.COORDINATOR: secrets["coordinator_token"],
            Role.AUDITOR: secrets["auditor_token"],
            Role.PARTNER: asyncio.run(_partner_token(stack.database_url)),
        }
        yield Running(stack, apps, tokens)
    finally:
        stack.stop()
        asyncio.run(database.__aexit__(None, None, None))


def guarded_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of the app but the open ones."""
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path not in OPEN_PATHS
        for method in route.methods - {"HEAD"}
    )


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace(f"{{{name}}}", value)
    return path.replace("{", "").replace("}", "")


@pytest.mark.parametrize(
    "credentials",
    [None, "Bearer rujuk_not-a-token-anyone-issued", "Basic dXNlcjpwYXNz"],
    ids=["no token", "unknown token", "another scheme"],
)
def test_every_route_of_every_service_refuses_a_caller_without_a_valid_token(
    running: Running, credentials: str | None
) -> None:
    headers = {"Authorization": credentials} if credentials else {}
    refused = []
    checked = 0
    with httpx.Client(timeout=10, headers=headers) as client:
        for service, app in running.apps.items():
            if service in HTML_ONLY:
                continue
            for method, path in guarded_routes(app):
                response = client.request(
                    method,
                    running.url(service) + concrete(path),
                    json={} if method != "GET" else None,
                )
                checked += 1
                if response.status_code != 401 or "www-authenticate" not in response.headers:
                    refused.append(f"{service} {method} {path}: {response.status_code}")
    assert refused == []
    assert checked >= 10


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise  # an operation without parameters or body has no invalid request to make


def admitted_role(operation: Any, tokens: dict[Role, str]) -> Role:
    """The first role the operation does not refuse for its role (401, or 403 'role … may
    not') for a valid request."""
    case = operation.as_strategy(generation_mode=GenerationMode.POSITIVE).example()
    for role, token in tokens.items():
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        refused = response.status_code == 401 or (
            response.status_code == 403 and ROLE_REFUSED in response.text
        )
        if not refused:
            return role
    pytest.fail(f"no role may call {operation.method.upper()} {operation.path}")


@pytest.mark.parametrize("service", ["intake", "routing", "notify", "audit"])
def test_the_api_conforms_to_its_document_and_never_fails(running: Running, service: str) -> None:
    schema = schemathesis.openapi.from_url(f"{running.url(service)}/openapi.json")
    schema.config.generation.update(with_security_parameters=False)
    tested = []
    for result in schema.exclude(path_regex="^/(healthz|metrics)$").get_all_operations():
        operation: Any = result.ok()  # type: ignore[union-attr]  # an error raises here
        role = admitted_role(operation, running.tokens)
        headers = {"Authorization": f"Bearer {running.tokens[role]}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers)
        tested.append(f"{operation.method.upper()} {operation.path} as {role.value}")
    documented = {(m, p) for m, p in guarded_routes(running.apps[service])}
    assert len(tested) == len(documented), tested
