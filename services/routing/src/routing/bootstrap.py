"""Routing's composition root: the runtime with routing's durable consumers, the SOPs in force,
the bus handlers, the deadline watcher and the HTTP door, wired together once."""

from datetime import timedelta
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from routing import http
from routing.clock import Clock, utc_now
from routing.deadlines import DeadlineWatcher
from routing.handlers import RoutingHandlers
from routing.referrals import REPLY_KINDS
from routing.settings import RoutingSettings
from routing.simulations import SimulationRunner
from routing.sops import SopsInForce
from rujuk_contracts.events import (
    CaseReported,
    CaseVillageAgencyFound,
    OnCallAcknowledged,
    ReferralDelivered,
    ReferralDeliveryFailed,
    SopAnswerGiven,
)
from rujuk_runtime.access import TokenVerifier, follow_tokens
from rujuk_runtime.logs import get_logger
from rujuk_runtime.service import ServiceRuntime
from rujuk_runtime.webapp import service_app

log = get_logger(__name__)


def create_app(settings: RoutingSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    """The HTTP API (``routing.http``) around the consumers and the deadline watcher. ``clock``
    is the time the handlers, the watcher and the console's reads go by (tests give theirs)."""
    settings = settings or RoutingSettings()
    runtime = ServiceRuntime("routing", settings)
    verifier = TokenVerifier(lambda: runtime.pool, ttl=settings.token_cache_seconds)
    follow_tokens(runtime, verifier)
    sops = SopsInForce(clock=clock)
    sops.load_sops(settings.sop_dir)  # before the consumers start, so the first case finds it
    handlers = RoutingHandlers(
        sops,
        clock,
        minute=timedelta(seconds=settings.minute_seconds),
        pick_timeout=timedelta(seconds=settings.village_pick_timeout_seconds),
    )
    register_handlers(runtime, handlers)
    watcher = DeadlineWatcher(
        lambda: runtime.pool,
        clock=clock,
        poll=settings.deadline_poll_seconds,
        after_commit=runtime.wake_relay,
        sops=sops,
        minute=handlers.minute,
    )

    async def started() -> None:
        sops.log_sops(settings.sop_dir)
        if settings.minute_seconds != 60:
            log.warning("time is compressed", minute_seconds=settings.minute_seconds)
        async with runtime.pool.acquire() as conn:
            await sops.log_in_force(conn)
            async with conn.transaction():  # once per document, whatever the restarts
                announced = await sops.announce_in_force(conn, clock)
        if announced:
            log.info("sops in force announced", sops=announced)
            runtime.wake_relay()

    runtime.on_started.append(started)
    runtime.health_details.append(lambda: {"sops_in_force": dict(sops.in_force_at_start)})
    runtime.run_in_background(watcher)
    simulations = SimulationRunner(
        lambda: runtime.pool,
        zone=ZoneInfo(settings.stats_timezone),
        clock=clock,
        chunk=settings.simulation_chunk_cases,
    )
    runtime.run_in_background(simulations)
    return service_app(
        runtime,
        title="rujuk routing",
        version="1.0.0",
        summary="District SOPs in force and their publishing; closing cases.",
        routers=[http.router],
        state={
            "settings": settings,
            "verifier": verifier,
            "sops": sops,
            "clock": clock,
            "handlers": handlers,
            "minute": handlers.minute,
            "watcher": watcher,
            "simulations": simulations,
        },
    )


def register_handlers(runtime: ServiceRuntime, handlers: RoutingHandlers) -> None:
    """Routing's durable consumers, one per event it takes."""
    runtime.handle(CaseReported, handlers.on_case_reported, durable="routing-case-reported")
    runtime.handle_batches(
        ReferralDelivered, handlers.on_referrals_delivered, durable="routing-referral-delivered"
    )
    runtime.handle(
        ReferralDeliveryFailed,
        handlers.on_referral_delivery_failed,
        durable="routing-referral-delivery-failed",
    )
    for reply in REPLY_KINDS:
        runtime.handle(reply, handlers.on_partner_reply, durable=f"routing-referral-{reply.event}")
    runtime.handle(
        OnCallAcknowledged,
        handlers.on_oncall_acknowledged,
        durable="routing-oncall-acknowledged",
    )
    runtime.handle(SopAnswerGiven, handlers.on_sop_answer, durable="routing-sop-answers")
    runtime.handle(
        CaseVillageAgencyFound,
        handlers.on_village_agency_found,
        durable="routing-village-agency-found",
    )
