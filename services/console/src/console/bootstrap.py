"""The console's one composition root: the settings, the services' clients, the sessions'
store and the sign-ins over them, the templates, and the FastAPI app that serves ``http.py``.

The console has no bus and no ``ServiceRuntime`` (it calls the services over HTTP and keeps
only its sessions), so its app is built here rather than by ``rujuk_runtime.webapp.service_app``:
its own lifespan (the sessions' pool, the services' clients), its HTML problem pages instead
of JSON problems, no OpenAPI document, static files and templates."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from starlette.middleware.gzip import GZipMiddleware

from console import http, views
from console.assets import Assets
from console.session import SessionSealer
from console.settings import ConsoleSettings
from console.signins import SessionRecords, SignIns
from console.store import PostgresSessions
from console.upstream import Upstreams
from rujuk_runtime.logs import configure_logging, get_logger
from rujuk_runtime.telemetry import FASTAPI_TELEMETRY
from rujuk_runtime.webapp import add_routes

log = get_logger(__name__)

HERE = Path(__file__).parent


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the sessions' pool (unless a test stands in for it); at the end close it and the
    services' clients."""
    settings: ConsoleSettings = app.state.settings
    database: PostgresSessions | None = app.state.database
    upstreams: Upstreams = app.state.upstreams
    configure_logging("console", settings.log_level)
    # httpx logs each request's URL at INFO, query included (a disclosure's purpose).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if database is not None:
        await database.open()
    log.info("service started", http_port=settings.http_port)
    try:
        yield
    finally:
        await upstreams.aclose()
        if database is not None:
            await database.close()
        log.info("service stopped")


def create_app(
    settings: ConsoleSettings | None = None,
    *,
    transports: dict[str, httpx.AsyncBaseTransport] | None = None,
    sessions: SessionRecords | None = None,
) -> FastAPI:
    """The console; ``transports`` and ``sessions`` let tests stand in for the services and
    for the sessions' PostgreSQL (without them: the services' URLs and DATABASE_URL)."""
    settings = settings or ConsoleSettings()
    sealer = SessionSealer(
        settings.session_secret.get_secret_value(), int(settings.session_hours * 3600)
    )
    zone = ZoneInfo(settings.timezone)
    upstreams = Upstreams(settings, transports)
    database = PostgresSessions(settings.database_url) if sessions is None else None
    records = sessions if sessions is not None else database
    assert records is not None
    signins = SignIns(
        records, sealer, upstreams.token_valid, check_interval=settings.token_cache_seconds
    )
    assets = Assets.of_folder(HERE / "static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        local=partial(views.local, zone=zone),
        zone_name=settings.timezone,
        poll_seconds=settings.poll_seconds,
        poll_max_seconds=settings.poll_max_seconds,
        poll_hidden_seconds=settings.poll_hidden_seconds,
        static_url=assets.url,
        home=http.HOME,
    )

    app = FastAPI(
        title="rujuk console",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.state.zone = zone
    app.state.upstreams = upstreams
    app.state.database = database
    app.state.signins = signins
    app.state.templates = templates
    app.state.assets = assets
    # What a list's ETag depends on besides its data: a new console's pages are new pages.
    app.state.build = http.build_of(HERE / "templates", assets)
    for exception, handler in http.EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    app.middleware("http")(http.guard)
    # Pages and lists go compressed to browsers that take it (static files are compressed
    # once, at start, and not again here: a response that has an encoding is left alone).
    app.add_middleware(GZipMiddleware, minimum_size=http.COMPRESS_FROM_BYTES)
    add_routes(app, http.router)
    return app
