"""Intake's composition root: the runtime, the vault, the token verifier, the bus handlers and
the start-up work, wired to the HTTP door (``intake.http``). The only module that knows them
all; ``python -m intake`` and the tests call ``create_app``."""

from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import FastAPI

from intake import auth, handlers, http, store
from intake.districts import DistrictsInForce
from intake.retention import RetentionSweep
from intake.settings import IntakeSettings
from intake.vault import Vault, parse_master_keys
from rujuk_contracts import subjects
from rujuk_contracts.events import CaseVillageAgencyAsked
from rujuk_runtime.access import TokenVerifier
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.webapp import service_app

log = get_logger(__name__)


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    vault = Vault(parse_master_keys(settings.master_keys.get_secret_value()))
    bootstrap = settings.bootstrap_tokens.get_secret_value()
    auth.parse_bootstrap_tokens(bootstrap)  # refuse to start on a malformed setting
    runtime = ServiceRuntime("intake", settings)
    verifier = TokenVerifier(
        lambda: runtime.pool, ttl=settings.token_cache_seconds, lookup=store.principal_of
    )
    runtime.batch_handlers.update(handlers.projection_handlers())
    runtime.skip_unhandled = True  # e.g. its own case.reported: nothing to project
    runtime.handlers.update(handlers.token_event_handlers(verifier))
    runtime.handlers.update(handlers.sop_handlers())
    runtime.subscribe_batches(subjects.EVENTS_WILDCARD, durable="intake-projection")
    # Its own consumer, so that an answer never waits behind the projection's backlog (the
    # projection sees the question too: the event id makes it one answer, whichever is first).
    runtime.handle(
        CaseVillageAgencyAsked,
        handlers.VillageQuestions(vault).answer,
        durable="intake-village-agency-asked",
    )
    runtime.on_started.append(partial(install_tokens, runtime, bootstrap))
    runtime.run_in_background(
        RetentionSweep(
            lambda: runtime.pool,
            day=timedelta(seconds=settings.day_seconds),
            every=settings.retention_check_seconds,
            after_erasing=runtime.wake_relay,
        )
    )
    if settings.day_seconds != 86_400:
        log.warning("time is compressed", day_seconds=settings.day_seconds)
    runtime.health_details.append(partial(sops_known, runtime))
    app = service_app(
        runtime,
        title="rujuk intake",
        version="1.1.0",
        summary="File reports of violence; read a case's status; disclose and erase details.",
        routers=[http.router],
        state={"verifier": verifier, "vault": vault, "districts_in_force": DistrictsInForce()},
        max_body_bytes=settings.max_body_bytes,
    )
    return app


async def install_tokens(runtime: ServiceRuntime, bootstrap: str) -> None:
    """At start: announce tokens made before tokens were announced, install the bootstrap
    tokens (``INTAKE_BOOTSTRAP_TOKENS``), and let the relay publish their events."""
    async with runtime.pool.acquire() as conn:
        announced = await store.announce_unannounced(conn)
        added = await store.install_bootstrap_tokens(conn, bootstrap) if bootstrap else 0
    if bootstrap:
        log.info("bootstrap tokens installed", added=added)
    if announced:
        log.info("earlier tokens announced", tokens=announced)
    runtime.wake_relay()


async def sops_known(runtime: ServiceRuntime) -> dict[str, Any]:
    """For /healthz: the SOPs in force intake has learnt of (district -> version), which
    whoever starts a stack waits for (rujuk.stack); said, never counted against health."""
    try:
        async with runtime.pool.acquire(timeout=2) as conn:
            return {"sops_in_force": await store.sops_in_force(conn)}
    except Exception as exc:  # the database check above says why
        return {"sops_in_force_error": type(exc).__name__}
