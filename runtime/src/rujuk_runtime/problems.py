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


def install_validation_problems(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": field_problems(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == BODY_NOT_PARSED:  # e.g. not UTF-8
            problem = {"field": "body", "problem": "body is not valid UTF-8 JSON"}
            return JSONResponse({"detail": [problem]}, status_code=422)
        return await http_exception_handler(request, exc)
