"""Schemathesis against intake running as a real process (real NATS and PostgreSQL): valid and
invalid requests generated from the OpenAPI document intake serves. No 5xx, every response
conforms to the document, and input that breaks the schema is refused with a 4xx."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
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

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


async def _tokens(database_url: str) -> dict[Role, str]:
    conn = await connect(database_url)
    try:
        made = {}
        for role in Role:
            agency = "puskesmas-contoh" if role is Role.PARTNER else None
            _, made[role] = await auth.create_token(conn, role, agency_id=agency)
        return made
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def running_intake(
    nats_url: str, server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[Role, str]]]:
    asyncio.run(remove_streams(nats_url))
    database = fresh_database(server_database_url)
    database_url = asyncio.run(database.__aenter__())
    folder: Path = tmp_path_factory.mktemp("intake-openapi")
    stack = Stack(folder, external_nats_url=nats_url, external_database_url=database_url)
    stack.extra_env["INTAKE_MAX_BODY_BYTES"] = "8192"
    try:
        tokens = asyncio.run(_tokens(database_url))
        stack.start_service("intake")
        stack.wait_healthy(60, ("intake",))
        yield stack.services["intake"].url, tokens
    finally:
        stack.stop_service("intake")
        asyncio.run(database.__aexit__(None, None, None))


ROLE_FOR = {
    ("POST", "/v1/reports"): Role.OPERATOR,
    ("GET", "/v1/cases/{case_id}"): Role.OPERATOR,
    ("GET", "/v1/cases/{case_id}/details"): Role.PARTNER,
    ("GET", "/v1/cases/{case_id}/disclosures"): Role.AUDITOR,
    ("POST", "/v1/cases/{case_id}/erase"): Role.COORDINATOR,
}
EXAMPLES = 20  # per operation and mode: enough to find a 5xx or a drift, fast enough for CI


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

    check()


def test_intake_api_conforms_and_never_fails(running_intake: tuple[str, dict[Role, str]]) -> None:
    url, tokens = running_intake
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.generation.update(with_security_parameters=False)
    tested = []
    for result in schema.exclude(path="/healthz").get_all_operations():
        operation: Any = result.ok()  # type: ignore[union-attr]  # an error raises here
        role = ROLE_FOR[(operation.method.upper(), operation.path)]
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers)
            tested.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    assert len(tested) == 2 * len(ROLE_FOR), tested
