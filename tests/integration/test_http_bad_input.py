"""Bad input over HTTP, against every service's API running as a real process (real NATS and
PostgreSQL).

- Schemathesis: valid and invalid requests generated from the OpenAPI document each service
  serves, with a token of a role the operation admits (state-changing operations included).
  No 5xx, every response conforms to the document, input that breaks the schema gets a 4xx.
- Without a token, or with a token no one issued, every route of every service's app (taken
  from the app itself) answers 401 with ``WWW-Authenticate``.
"""

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import hypothesis.strategies as st
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

from console import form as console_form
from intake import store
from intake.auth import Role
from intake.cli import connect
from rujuk.stack import Stack
from rujuk_runtime.nats_auth import NatsKeyring
from tests.conftest import create_database, drop_database, remove_streams
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
FUZZ = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
OPEN_PATHS = {"/healthz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
# Routes whose credential is in the body, not a token: an on-call contact's reply carries the
# acknowledgement code sent only to that contact (docs/notify.md, "Paging"). Without a code
# they refuse the request (422) and pass nothing on.
CODE_IS_THE_CREDENTIAL = {("notify", "POST", "/v1/oncall/replies")}
# Browser pages: a missing session sends the browser to sign in (tests/browser covers them).
HTML_ONLY = {"console"}
PARTNER_AGENCY = "puskesmas-contoh"
ROLE_REFUSED = "peran tidak diizinkan"  # the 403 of a role that may not (rujuk_runtime.access)
PATH_VALUES = {
    "case_id": "3514-AB12CD34EF",
    "referral_id": "3514-AB12CD34EF-01",
    "note_id": "note-" + "0" * 32,
}


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
        return (await store.create_token(conn, Role.PARTNER, agency_id=PARTNER_AGENCY))[1]
    finally:
        await conn.close()


async def _cadre_token(database_url: str) -> str:
    conn = await connect(database_url)
    try:
        made = await store.create_token(conn, Role.CADRE, districts=["3513"], areas=["Kraksaan"])
        return made[1]
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def running(
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    asyncio.run(remove_streams(nats_url))
    database_url = asyncio.run(create_database(server_database_url))
    folder: Path = tmp_path_factory.mktemp("http-bad-input")
    stack = Stack(
        folder,
        external_nats_url=nats_url,
        nats_keyring=nats_keyring,
        external_database_url=database_url,
    )
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
            Role.CADRE: asyncio.run(_cadre_token(stack.database_url)),
        }
        yield Running(stack, apps, tokens)
    finally:
        stack.stop()
        asyncio.run(drop_database(server_database_url, database_url))


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
                if (service, method, path) in CODE_IS_THE_CREDENTIAL:
                    if response.status_code != 422:
                        refused.append(f"{service} {method} {path}: {response.status_code}")
                elif response.status_code != 401 or "www-authenticate" not in response.headers:
                    refused.append(f"{service} {method} {path}: {response.status_code}")
    assert refused == []
    assert checked >= 10


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @hypothesis.settings(FUZZ, phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
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


# --- the console: HTML forms and pages, no OpenAPI document to generate from ------------------

NASTY = [
    "", " ", "0", "-1", "1e309", "9" * 40, "NaN", "true", "null", "[]", "{}",
    "2026-02-30", "2026-13-01T25:61", "3514-AB12CD34EF", "3514-AB12CD34EF-01", "pkm-bangil",
    "../../etc/passwd", "%00", "\x00", "\r\n", "<script>alert(1)</script>", "{{ 7*7 }}",
    "' OR 1=1 --", "é" * 50, "😀" * 60, "a" * 20_000,
]  # fmt: skip
text_values = st.one_of(st.sampled_from(NASTY), st.text(max_size=80))
# Long values go in form bodies; in a URL, a server may drop a request line of many kilobytes
# (as proxies do) and httpx refuses to build one: URL values are cut to this length.
URL_VALUE_CHARS = 1000
QUERY_NAMES = [
    "case_id",
    "sent",
    "filed",
    "from",
    "to",
    "expired",
    "lang",
    "next",
    "simulation",
    "done",
    "district",
]  # what the pages read


def console_field_names(app: FastAPI) -> list[str]:
    """Every input the console's forms send: the report form's fields and each route's
    declared Form() parameters."""
    names = {f.path for group in console_form.groups() for f in group.fields}
    for route in app.routes:
        if isinstance(route, APIRoute):
            names.update(param.alias for param in route.dependant.body_params)
    return sorted(names)


def signed_in(running: Running, role: Role | None) -> httpx.Client:
    url = running.url("console")
    client = httpx.Client(base_url=url, headers={"Origin": url}, timeout=30)
    if role is not None:
        response = client.post("/signin", data={"token": running.tokens[role]})
        assert response.status_code == 303, response.text
    return client


@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r.value if r else "anonymous")
def test_the_console_answers_any_form_and_path_without_a_server_error(
    running: Running, role: Role | None
) -> None:
    """Every route of the console (taken from its app), signed in as each role or not at all:
    form fields, path segments and query values from a list of known troublemakers and random
    text. A page, a redirect or a 4xx; never a 5xx, never a traceback."""
    app = running.apps["console"]
    routes = [
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods - {"HEAD"})
        # signing out, or in again with a wrong token, would end the session under test
        if route.path != "/signout"
        and (role is None or (method, route.path) != ("POST", "/signin"))
    ]
    fields = console_field_names(app)
    failures: list[str] = []
    client = signed_in(running, role)
    try:

        @FUZZ
        @hypothesis.given(
            path_value=text_values,
            query=st.dictionaries(st.sampled_from(QUERY_NAMES), text_values, max_size=3),
            form=st.dictionaries(
                st.one_of(st.sampled_from(fields), st.text(max_size=10)), text_values, max_size=8
            ),
        )
        def check(path_value: str, query: dict[str, str], form: dict[str, str]) -> None:
            send(path_value, query, form)

        def send(path_value: str, query: dict[str, str], form: dict[str, str]) -> None:
            for method, path in routes:
                concrete_path = re.sub(r"\{[a-z_]+\}", quote(path_value, safe="") or "x", path)
                try:
                    response = client.request(
                        method, concrete_path, params=query, data=form if method == "POST" else None
                    )
                except httpx.TransportError as exc:  # the server dropped the connection
                    failures.append(f"{method} {path} {path_value[:30]!r}: {exc!r}")
                    continue
                if response.status_code >= 500 or "Traceback" in response.text:
                    failures.append(f"{method} {concrete_path[:80]} {response.status_code}")

        for value in NASTY:  # each troublemaker in every path, query value and field at once
            in_url = value[:URL_VALUE_CHARS]
            send(in_url, dict.fromkeys(QUERY_NAMES, in_url), dict.fromkeys(fields, value))
        check()  # then random mixtures
    finally:
        client.close()
    assert failures == [], failures[:10]
    assert len(routes) >= 10
