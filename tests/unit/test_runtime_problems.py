"""The problem shape every rujuk HTTP API answers with (rujuk_runtime.problems), on a small
in-process app: which field a 422 names, a body that is not UTF-8, other HTTP errors as they
are, and a database that is away as 503 with Retry-After (issue 26)."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, HTTPException, Query
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel
from structlog.testing import capture_logs

from rujuk_runtime.problems import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    Problem,
    ValidationProblem,
    documented,
    field_problems,
    install_validation_problems,
)


class Report(BaseModel):
    kecamatan: str
    victims: list[int]


async def post_report(case_id: int, report: Report, limit: int = Query(10)) -> dict[str, int]:
    return {"case_id": case_id, "limit": limit}


async def gone() -> None:
    raise HTTPException(status_code=404, detail="kasus tidak ada / no case CONTOH")


async def database_away(kind: int) -> None:
    raise UNAVAILABLE[kind]("CONTOH: the database restarts")


def small_app() -> FastAPI:
    """Made per test: the handlers under test are installed when it is called."""
    app = FastAPI()
    install_validation_problems(app)
    app.post("/reports/{case_id}")(post_report)
    app.get("/gone")(gone)
    app.get("/database-away/{kind}")(database_away)
    return app


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=small_app(), raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://rujuk.test") as client:
        yield client


async def test_a_422_names_each_field_by_where_it_is_without_the_body_prefix(
    client: AsyncClient,
) -> None:
    answer = await client.post(
        "/reports/x?limit=many", json={"kecamatan": "Bangil", "victims": [1, "dua"]}
    )
    assert answer.status_code == 422
    fields = {problem["field"] for problem in answer.json()["detail"]}
    assert fields == {"path.case_id", "query.limit", "victims.1"}
    for problem in answer.json()["detail"]:
        assert set(problem) == {"field", "problem"}
        assert problem["problem"]
        assert "dua" not in problem["problem"]
        assert "many" not in problem["problem"]


async def test_a_missing_body_is_named_body(client: AsyncClient) -> None:
    answer = await client.post("/reports/1")
    assert answer.status_code == 422
    assert answer.json() == {"detail": [{"field": "body", "problem": "Field required"}]}


async def test_a_body_that_is_not_utf8_is_a_422_on_the_body(client: AsyncClient) -> None:
    answer = await client.post(
        "/reports/1", content=b'{"kecamatan": "\xff"}', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": [{"field": "body", "problem": "body is not valid UTF-8 JSON"}]
    }


async def test_other_http_errors_keep_their_status_and_detail(client: AsyncClient) -> None:
    answer = await client.get("/gone")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "kasus tidak ada / no case CONTOH"}
    missing = await client.get("/no-such-route")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize("kind", range(len(UNAVAILABLE)))
async def test_a_database_that_is_away_answers_503_with_retry_after(
    client: AsyncClient, kind: int
) -> None:
    with capture_logs() as logs:
        answer = await client.get(f"/database-away/{kind}")
    assert logs == [
        {
            "event": "request failed: database unavailable",
            "error": UNAVAILABLE[kind].__name__,
            "log_level": "warning",
        }
    ]
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS) == "2"
    assert answer.json() == {
        "detail": "layanan sementara tidak tersedia, coba lagi / temporarily unavailable, "
        "please retry"
    }


def test_field_problems_join_the_location_and_keep_the_message() -> None:
    errors = [
        {"loc": ("body", "triage", "violence_types", 0), "msg": "CONTOH problem"},
        {"loc": ("body",), "msg": "CONTOH missing"},
        {"loc": ("query", "limit"), "msg": "CONTOH number"},
    ]
    assert field_problems(errors) == [
        {"field": "triage.violence_types.0", "problem": "CONTOH problem"},
        {"field": "body", "problem": "CONTOH missing"},
        {"field": "query.limit", "problem": "CONTOH number"},
    ]


def test_documented_lists_each_code_as_a_problem_and_422_as_field_problems() -> None:
    assert documented(404, 409) == {
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": ValidationProblem},
    }
    assert documented() == {422: {"model": ValidationProblem}}
