"""The HTTP door every service opens the same way: a FastAPI app whose lifespan is the
service's runtime (bus, pool, outbox relay, consumers), with /healthz, /metrics, rujuk's
problem responses, optionally the body guard, and the service's own routers.

Routes are module-level functions on an ``APIRouter`` (the service's ``http.py``); what they
need at request time they take from ``app.state`` through small dependencies, which the
service's ``bootstrap.py`` fills in."""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from rujuk_runtime.access import check_roles_before_bodies
from rujuk_runtime.body_guard import BodyGuard
from rujuk_runtime.metrics import metrics_endpoint
from rujuk_runtime.problems import install_validation_problems
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.telemetry import FASTAPI_TELEMETRY


def from_app_state(name: str) -> Any:
    """A FastAPI dependency on ``app.state.<name>``, which the service's bootstrap sets (through
    ``service_app(state=...)``): ``Vault = Annotated[vault.Vault, from_app_state("vault")]``."""

    async def read(request: Request) -> Any:  # async: FastAPI runs a plain def in a thread
        return getattr(request.app.state, name)

    read.__name__ = f"{name}_of"
    return Depends(read)


Runtime = Annotated[ServiceRuntime, from_app_state("runtime")]

ops = APIRouter(tags=["ops"])


@ops.get("/healthz")
async def healthz(runtime: Runtime) -> JSONResponse:
    """200 when NATS and PostgreSQL answer, 503 otherwise."""
    ok, checks = await runtime.health()
    return JSONResponse({"service": runtime.name, "ok": ok, **checks}, 200 if ok else 503)


def service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    version: str,
    summary: str,
    routers: Sequence[APIRouter],
    state: Mapping[str, Any] | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The service's FastAPI app. ``state`` goes into ``app.state`` beside ``runtime`` (e.g.
    ``verifier`` for ``rujuk_runtime.access.require``). With ``max_body_bytes`` every POST,
    PUT and PATCH must be JSON of at most that size (``BodyGuard``)."""
    app = FastAPI(
        title=title,
        version=version,
        summary=summary,
        lifespan=runtime.lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.runtime = runtime
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    if max_body_bytes is not None:
        # the routes' list itself: it is filled below, before the first request
        app.add_middleware(BodyGuard, max_body_bytes=max_body_bytes, routes=app.router.routes)
    install_validation_problems(app)
    add_routes(app, ops, *routers)
    check_roles_before_bodies(app)
    return app


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Put the routers' routes on the app itself. Not ``include_router``: FastAPI 0.165 adds
    one entry for a whole included router to ``app.routes``, where whoever lists the app's
    routes (the bad-input fuzzing, the access tests) would find none. rujuk's routers have no
    prefix; their tags and dependencies are already in each route."""
    for router in routers:
        app.router.routes.extend(router.routes)
