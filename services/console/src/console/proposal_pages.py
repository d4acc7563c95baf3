"""The console's SOP proposal pages: a coordinator proposes a version, reads it beside the
version in force, runs its impact simulation, publishes or withdraws it; a partner reads the
proposals that name its agency and agrees or objects. Every call is routing's, with the
signed-in person's own token."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi import Form as FormField
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from console import proposal_view
from console.http import (
    Coordinator,
    PageProblem,
    Partner,
    UpstreamsDep,
    ZoneDep,
    districts_served,
    render,
    translator,
)
from console.session import Session
from console.upstream import Invalid, SopRefused, UpstreamError, Upstreams
from rujuk_contracts.events import PROPOSAL_ID_PATTERN

router = APIRouter()

PROPOSAL_ID = re.compile(PROPOSAL_ID_PATTERN)
SIMULATION_ID = re.compile(r"^sim-[0-9a-f]{32}$")  # routing's
MAX_DOCUMENT_BYTES = 512 * 1024  # what routing takes (routing.http.MAX_SOP_BYTES)
NO_PROPOSAL = "sop.no_proposal"


def checked_proposal_id(proposal_id: str) -> str:
    if not PROPOSAL_ID.fullmatch(proposal_id):
        raise PageProblem(404, NO_PROPOSAL)
    return proposal_id


def checked_simulation_id(simulation_id: str) -> str:
    if not SIMULATION_ID.fullmatch(simulation_id):
        raise PageProblem(404, "sim.none")
    return simulation_id


# --- coordinator: the SOPs in force and their proposals -------------------------------------


async def sops_context(upstreams: Upstreams, session: Session) -> dict[str, Any]:
    """Per district served: the SOP in force, its open proposal and its past ones."""
    in_force = await upstreams.sops_in_force(session.token)
    proposals = await upstreams.sop_proposals(session.token)
    codes = sorted(set(await districts_served(upstreams, session)) | set(in_force))
    if session.districts is not None:
        codes = [code for code in codes if code in session.districts]
    districts = [
        {
            "code": code,
            "in_force": in_force.get(code),
            "open": [
                p for p in proposals if p.get("district_code") == code and p.get("state") == "open"
            ],
            "past": [
                p for p in proposals if p.get("district_code") == code and p.get("state") != "open"
            ],
        }
        for code in codes
    ]
    return {"districts": districts, "max_bytes": MAX_DOCUMENT_BYTES}


@router.get("/coordinator/sops")
async def sops_page(request: Request, session: Coordinator, upstreams: UpstreamsDep) -> Response:
    return render(request, "sops.html", **await sops_context(upstreams, session))


async def uploaded_document(request: Request, pasted: str) -> str:
    """The YAML sent: the file chosen, else the text pasted."""
    form = await request.form()
    chosen = form.get("file")
    if isinstance(chosen, UploadFile) and chosen.filename:
        raw = await chosen.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise PageProblem(413, "sop.too_large", kib=MAX_DOCUMENT_BYTES // 1024)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PageProblem(400, "sop.not_utf8") from exc
    if len(pasted.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise PageProblem(413, "sop.too_large", kib=MAX_DOCUMENT_BYTES // 1024)
    return pasted


@router.post("/coordinator/sops/proposals")
async def propose(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    document: Annotated[str, FormField()] = "",
) -> Response:
    """Routing's 422 (every error with its line) and 409 (the version does not follow the
    one in force) are shown above the form, with the text kept."""
    text = await uploaded_document(request, document)
    if not text.strip():
        problem, errors, status = translator(request)("sop.empty"), [], 422
    else:
        try:
            proposed = await upstreams.propose_sop(session.token, text)
        except SopRefused as refused:
            problem, errors, status = refused.detail, refused.errors, 422
        except UpstreamError as exc:
            if exc.status != 409:
                raise
            problem, errors, status = exc.detail, [], 409
        else:
            proposal_id = str(proposed.get("proposal_id", ""))
            return RedirectResponse(
                f"/coordinator/sops/proposals/{quote(proposal_id, safe='')}", 303
            )
    context = await sops_context(upstreams, session)
    return render(
        request,
        "sops.html",
        status=status,
        problem=problem,
        errors=errors,
        document=text,
        **context,
    )


# --- coordinator: one proposal ---------------------------------------------------------------


async def proposal_context(
    request: Request, upstreams: Upstreams, session: Session, proposal_id: str
) -> dict[str, Any]:
    t = translator(request)
    proposal = await upstreams.sop_proposal(session.token, checked_proposal_id(proposal_id))
    district = str(proposal.get("district_code", ""))
    in_force = (await upstreams.sops_in_force(session.token)).get(district)
    document = await upstreams.sop_proposal_document(session.token, proposal_id)
    return {
        "proposal": proposal_view.proposal_view(proposal, t),
        "raw": proposal,
        "diff": proposal_view.diff_view(proposal.get("diff") or {}),
        "in_force": in_force,
        "document": document,
        "objection_reasons": proposal_view.OBJECTION_REASONS,
    }


async def simulation_shown(
    request: Request,
    upstreams: Upstreams,
    session: Session,
    raw: dict[str, Any],
    simulation_id: str,
) -> proposal_view.SimulationView | None:
    """The simulation of this proposal's document, or None (none asked, or another's)."""
    if not simulation_id:
        return None
    found = await upstreams.simulation(session.token, checked_simulation_id(simulation_id))
    if not proposal_view.simulation_of(found, raw):
        raise PageProblem(404, "sim.not_this_proposal")
    return proposal_view.simulation_view(found, translator(request))


async def coordinator_proposal(
    request: Request,
    upstreams: Upstreams,
    session: Session,
    zone: ZoneInfo,
    proposal_id: str,
    simulation_id: str = "",
    status: int = 200,
    **extra: Any,
) -> Response:
    context = await proposal_context(request, upstreams, session, proposal_id)
    shown = await simulation_shown(request, upstreams, session, context["raw"], simulation_id)
    return render(
        request,
        "proposal.html",
        status=status,
        simulation=shown,
        days_offered=proposal_view.SIMULATION_DAYS,
        default_days=proposal_view.DEFAULT_SIMULATION_DAYS,
        override_reasons=proposal_view.OVERRIDE_REASONS,
        now_local=proposal_view.local_minute(datetime.now(UTC), zone),
        **context,
        **extra,
    )


@router.get("/coordinator/sops/proposals/{proposal_id}")
async def proposal_page(
    request: Request,
    proposal_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    simulation: str = "",
    done: str = "",
) -> Response:
    done = done if done in ("published", "withdrawn") else ""
    return await coordinator_proposal(
        request, upstreams, session, zone, proposal_id, simulation, done=done
    )


@router.post("/coordinator/sops/proposals/{proposal_id}/simulation")
async def start_simulation(
    proposal_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
    days: Annotated[str, FormField()] = "",
    since: Annotated[str, FormField(alias="from")] = "",
    until: Annotated[str, FormField(alias="to")] = "",
) -> Response:
    """The proposal's own document, simulated over the district's past cases."""
    proposal_id = checked_proposal_id(proposal_id)
    try:
        params = proposal_view.simulation_period(days.strip(), since.strip(), until.strip())
    except proposal_view.BadInput as exc:
        raise PageProblem(400, "sim.bad_period") from exc
    document = await upstreams.sop_proposal_document(session.token, proposal_id)
    try:
        started = await upstreams.start_simulation(session.token, document, params)
    except SopRefused as refused:
        raise PageProblem(422, "error.bad_request", detail="; ".join(refused.errors)) from refused
    simulation_id = quote(str(started.get("simulation_id", "")), safe="")
    return RedirectResponse(
        f"/coordinator/sops/proposals/{proposal_id}?simulation={simulation_id}#simulation", 303
    )


@router.get("/coordinator/sops/proposals/{proposal_id}/simulation/{simulation_id}")
async def simulation_fragment(
    request: Request,
    proposal_id: str,
    simulation_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
) -> Response:
    """The simulation's section, asked for again by htmx while it runs; once done or failed
    it comes back without the trigger, so the polling stops."""
    proposal = await upstreams.sop_proposal(session.token, checked_proposal_id(proposal_id))
    shown = await simulation_shown(request, upstreams, session, proposal, simulation_id)
    return render(request, "_simulation.html", simulation=shown, proposal_id=proposal_id)


@router.post("/coordinator/sops/proposals/{proposal_id}/publish")
async def publish(
    request: Request,
    proposal_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    effective_at: Annotated[str, FormField()] = "",
    shown_now: Annotated[str, FormField()] = "",
    override_reason: Annotated[str, FormField()] = "",
) -> Response:
    """Routing's 409 (who objected, who has yet to answer) and 422 (a date in the past) are
    shown on the proposal's page, above the form."""
    proposal_id = checked_proposal_id(proposal_id)
    if override_reason and override_reason not in proposal_view.OVERRIDE_REASONS:
        raise PageProblem(400, "sop.bad_override")
    try:
        when = proposal_view.effective_at(effective_at, shown_now, zone)
    except proposal_view.BadInput as exc:
        raise PageProblem(400, "sop.bad_effective_at") from exc
    try:
        await upstreams.publish_proposal(session.token, proposal_id, when, override_reason or None)
    except (Invalid, UpstreamError) as exc:
        if not isinstance(exc, Invalid) and exc.status != 409:
            raise
        return await coordinator_proposal(
            request,
            upstreams,
            session,
            zone,
            proposal_id,
            status=exc.status,
            publish_problem=exc.detail,
            typed_effective_at=effective_at[:16],
        )
    return RedirectResponse(f"/coordinator/sops/proposals/{proposal_id}?done=published", 303)


@router.post("/coordinator/sops/proposals/{proposal_id}/withdraw")
async def withdraw(proposal_id: str, session: Coordinator, upstreams: UpstreamsDep) -> Response:
    proposal_id = checked_proposal_id(proposal_id)
    await upstreams.withdraw_proposal(session.token, proposal_id)
    return RedirectResponse(f"/coordinator/sops/proposals/{proposal_id}?done=withdrawn", 303)


# --- partner: the proposals that name its agency --------------------------------------------


@router.get("/sops")
async def partner_sops(request: Request, session: Partner, upstreams: UpstreamsDep) -> Response:
    proposals = await upstreams.sop_proposals(session.token)
    t = translator(request)
    return render(
        request,
        "partner_sops.html",
        proposals=[(p, proposal_view.proposal_view(p, t)) for p in proposals],
    )


@router.get("/sops/proposals/{proposal_id}")
async def partner_proposal(
    request: Request, proposal_id: str, session: Partner, upstreams: UpstreamsDep, sent: str = ""
) -> Response:
    context = await proposal_context(request, upstreams, session, proposal_id)
    duties = context["raw"].get("duty_changes") or {}
    own = duties.get(session.agency_id) if isinstance(duties, dict) else None
    return render(
        request,
        "partner_proposal.html",
        own_duties=[
            proposal_view.duty_line(c, translator(request))
            for c in own or []
            if isinstance(c, dict)
        ],
        sent=sent if sent in ("agree", "object") else "",
        **context,
    )


@router.post("/sops/proposals/{proposal_id}/answer")
async def answer(
    proposal_id: str,
    session: Partner,
    upstreams: UpstreamsDep,
    decision: Annotated[str, FormField()] = "",
    reason: Annotated[str, FormField()] = "",
) -> Response:
    """Routing refuses an agency the proposal does not ask (403) and a closed proposal
    (409): both become a page that says why."""
    proposal_id = checked_proposal_id(proposal_id)
    if decision not in ("agree", "object"):
        raise PageProblem(400, "sop.bad_answer")
    if decision == "object" and reason not in proposal_view.OBJECTION_REASONS:
        raise PageProblem(400, "sop.reason_needed")
    await upstreams.answer_proposal(
        session.token, proposal_id, decision, reason if decision == "object" else None
    )
    return RedirectResponse(f"/sops/proposals/{proposal_id}?sent={decision}", 303)
