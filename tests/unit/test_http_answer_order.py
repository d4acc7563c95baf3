"""What a service's HTTP door answers first, whatever the route: a method the route does not
take is a 405 naming the ones it does (not a 415 about a body), and a caller who may not
call a route learns that (401, 403) before anything about the body it sent (422)."""

import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from rujuk_runtime.access import Principal, Role, TokenVerifier, hash_secret, require
from rujuk_runtime.webapp import service_app

TOKENS = {
    hash_secret("rujuk_coordinator"): Principal("tok-00000000000c", Role.COORDINATOR, None, None),
    hash_secret("rujuk_operator"): Principal("tok-00000000000e", Role.OPERATOR, None, None),
}


class Erasure(BaseModel):
    reason: str


router = APIRouter()


@router.post("/v1/cases/{case_id}/erase")
async def erase(
    case_id: str,
    body: Erasure,
    principal: Annotated[Principal, Depends(require(Role.COORDINATOR))],
) -> dict[str, str]:
    return {"case_id": case_id, "reason": body.reason}


@router.get("/v1/cases/{case_id}")
async def case(case_id: str) -> dict[str, str]:
    return {"case_id": case_id}


class FakePool:
    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        yield object()


async def lookup(_conn: Any, digest: bytes) -> Principal | None:
    return TOKENS.get(digest)


def client() -> httpx.AsyncClient:
    runtime: Any = SimpleNamespace(lifespan=None)
    verifier = TokenVerifier(FakePool, lookup=lookup)  # type: ignore[arg-type]
    app = service_app(
        runtime,
        title="uji",
        version="0",
        summary="uji",
        routers=[router],
        state={"verifier": verifier},
        max_body_bytes=1024,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://uji")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


async def test_a_put_on_a_get_route_is_405_with_allow_not_415() -> None:
    async with client() as http:
        for content_type in ("application/json", "text/plain"):
            response = await http.put(
                "/v1/cases/3514-AB12CD34EF", content=b"{}", headers={"Content-Type": content_type}
            )
            assert response.status_code == 405, response.text
            assert response.headers["allow"] == "GET"
        deleted = await http.delete("/v1/cases/3514-AB12CD34EF/erase")
        assert (deleted.status_code, deleted.headers["allow"]) == (405, "POST")


async def test_an_operators_erase_with_a_broken_body_is_403_before_any_body_check() -> None:
    async with client() as http:
        path = "/v1/cases/3514-AB12CD34EF/erase"
        for body in (b"{not json", b"", b'{"reason": 7}', b"[]"):
            operator = await http.post(path, content=body, headers=bearer("rujuk_operator"))
            assert operator.status_code == 403, (body, operator.text)
            nobody = await http.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            assert nobody.status_code == 401, (body, nobody.text)
            unknown = await http.post(path, content=body, headers=bearer("rujuk_unknown"))
            assert unknown.status_code == 401, (body, unknown.text)
            coordinator = await http.post(path, content=body, headers=bearer("rujuk_coordinator"))
            assert coordinator.status_code == 422, (body, coordinator.text)
        good = await http.post(
            path, content=b'{"reason": "other"}', headers=bearer("rujuk_coordinator")
        )
        assert good.json() == {"case_id": "3514-AB12CD34EF", "reason": "other"}


async def test_the_body_guard_still_guards_the_routes_that_take_a_body() -> None:
    async with client() as http:
        response = await http.post(
            "/v1/cases/3514-AB12CD34EF/erase",
            content=b"reason=other",
            headers={"Authorization": "Bearer rujuk_coordinator", "Content-Type": "text/plain"},
        )
        assert response.status_code == 415
