"""The problem shape of every rujuk HTTP API: ``{"detail": "..."}`` for 4xx/5xx, and for a
request that fails validation ``{"detail": [{"field", "problem"}]}`` naming each field
(``query.limit``, ``path.case_id``, a body path), never echoing the submitted values."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rujuk_runtime.db import DATABASE_AWAY
from rujuk_runtime.logs import get_logger

log = get_logger(__name__)

BODY_NOT_PARSED = "There was an error parsing the body"  # FastAPI's 400 for an unreadable body


class Problem(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    field: str = Field(description="Where: body field path, or query./path./header. name")
    problem: str


class ValidationProblem(BaseModel):
    detail: list[FieldProblem]


def field_problems(errors: Any) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
            "problem": e["msg"],
        }
        for e in errors
    ]


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these problem codes, and 422."""
    responses: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in codes}
    responses[422] = {"model": ValidationProblem}
    return responses


# The database is restarting or away: the request may be sent again as it was (intake's
# Idempotency-Key makes that safe), so 503 with Retry-After rather than a 500.
UNAVAILABLE = DATABASE_AWAY
RETRY_AFTER_SECONDS = 2


def install_unavailable_problem(app: FastAPI) -> None:
    """A request that failed because the database is away answers 503 with Retry-After."""

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("request failed: database unavailable", error=type(exc).__name__)
        return JSONResponse(
            {"detail": "layanan sementara tidak tersedia, coba lagi / temporarily unavailable, "
                       "please retry"},
            status_code=503,
            # equivalent: the name in other letter cases too, header names ignore case
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},  # pragma: no mutate
        )  # fmt: skip

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, unavailable)


def install_validation_problems(app: FastAPI) -> None:
    install_unavailable_problem(app)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": field_problems(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == BODY_NOT_PARSED:  # e.g. not UTF-8
            problem = {"field": "body", "problem": "body is not valid UTF-8 JSON"}
            return JSONResponse({"detail": [problem]}, status_code=422)
        return await http_exception_handler(request, exc)
