"""Audit's HTTP door: a small read API for auditors and tools (case histories, bundles,
verification, checkpoints, parked counts) and replays onto the bus. Every route takes an
auditor's or the coordinator's token issued by intake; a district-bound token reads only the
cases of its districts, and another district's case answers as one that does not exist."""

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit import note, report, scope, store
from audit.bundle import BUNDLE_FORMAT
from audit.chain import timestamp
from audit.export import bundle_text, export_bundle, head_note, prove_case
from audit.replay import ReplayRequestError, replay_to_bus
from audit.verification import verify_connection
from rujuk_contracts.envelope import SUBJECT_PATTERN
from rujuk_runtime.access import Principal, Role, require
from rujuk_runtime.problems import documented
from rujuk_runtime.webapp import Runtime, from_app_state

router = APIRouter()

guarded = [Depends(require(Role.AUDITOR, Role.COORDINATOR))]
Caller = Annotated[Principal, Depends(require(Role.AUDITOR, Role.COORDINATOR))]

PublicKey = Annotated[bytes | None, from_app_state("public_key")]


class ReplayRequest(BaseModel):
    """Which history to re-publish: one case, a time range of event times, or both."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    case_id: str | None = Field(
        default=None, pattern=SUBJECT_PATTERN, description="A case id (or any event subject)"
    )
    since: datetime | None = Field(default=None, alias="from")
    until: datetime | None = Field(default=None, alias="to")
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="after")
    def _selects_something(self) -> "ReplayRequest":
        if self.case_id is None and self.since is None and self.until is None:
            raise ValueError("give case_id, or from/to, or both")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("times must carry their offset, e.g. 2026-03-02T01:00:00Z")
        return self


@router.get(
    "/v1/cases/{case_id}/history",
    responses=documented(401, 403, 404),
    tags=["ledger"],
)
async def case_history(case_id: str, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """A case's entries in ledger order (as ``rujuk audit replay --format json``). A
    district-bound token gets 404 for a case of another district, as for an unknown case."""
    districts = caller.district_filter
    if scope.hidden_case(districts, case_id):
        raise HTTPException(404, report.no_history(case_id))
    async with runtime.pool.acquire() as conn:
        entries = await store.case_entries(conn, case_id, districts)
    if not entries:
        raise HTTPException(404, report.no_history(case_id))
    return report.history_document(case_id, report.history(entries))


@router.get(
    "/v1/cases/{case_id}/bundle",
    tags=["ledger"],
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}}, "description": BUNDLE_FORMAT},
        **documented(401, 403, 404),
    },
)
async def case_bundle(
    case_id: Annotated[str, Path(pattern=SUBJECT_PATTERN, description="A case id")],
    runtime: Runtime,
    caller: Caller,
) -> Response:
    """The case's evidence bundle, as `rujuk audit export` writes it, as a download;
    check it offline with `rujuk audit verify-bundle FILE --public-key KEY`. Without a
    signed head yet, the bundle cannot be verified (``head`` is null).

    It holds the case's entries and hashes only, nothing of another case: a district-bound
    token takes the bundles of its districts' cases; a case of another district, or a
    subject that is no case (an SOP's, a token's), answers 404 as an unknown case."""
    if scope.hidden_case(caller.district_filter, case_id):
        raise HTTPException(404, report.no_history(case_id))
    if scope.case_district(case_id) is None and caller.district_filter is not None:
        raise HTTPException(404, report.no_history(case_id))  # an SOP's or a token's: province
    async with runtime.pool.acquire() as conn:
        document = await export_bundle(conn, case_id)
    if document is None:
        raise HTTPException(404, report.no_history(case_id))
    return Response(
        bundle_text(document),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="rujuk-audit-{case_id}.json"'},
    )


@router.get(
    "/v1/cases/{case_id}/verify",
    responses=documented(401, 403, 404, 409),
    tags=["ledger"],
)
async def case_verify(
    case_id: Annotated[str, Path(pattern=SUBJECT_PATTERN, description="A case id")],
    runtime: Runtime,
    caller: Caller,
    public_key: PublicKey,
) -> JSONResponse:
    """Verify one case alone: each of its entries, as the ledger holds it now, must lead by its
    inclusion proof to the newest signed head (what `rujuk audit verify-bundle` checks offline
    in its bundle). It reads the case's entries and some log2(ledger) tree nodes each, never
    the whole ledger: the page of a case calls this, `rujuk audit verify` the whole chain.
    200 when every entry under the head verifies (``entries_pending``: the case's entries
    after it, covered by the next head), 409 naming the first that does not. That no entry of
    the case was removed is what the whole ledger's verify proves. Scoped as the bundle."""
    if scope.hidden_case(caller.district_filter, case_id):
        raise HTTPException(404, report.no_history(case_id))
    if scope.case_district(case_id) is None and caller.district_filter is not None:
        raise HTTPException(404, report.no_history(case_id))
    async with runtime.pool.acquire() as conn:
        proof = await prove_case(conn, case_id, public_key)
    if proof is None:
        raise HTTPException(404, report.no_history(case_id))
    return JSONResponse(report.case_proof_document(proof), 200 if proof.ok else 409)


@router.get(
    "/v1/ledger/verify",
    dependencies=guarded,
    responses=documented(401, 403, 409),
    tags=["ledger"],
)
async def verify(runtime: Runtime, public_key: PublicKey) -> JSONResponse:
    """Verify the whole chain and every checkpoint; 200 if it holds, 409 naming the entry.
    The same for every token: it names entries by seq and hash, never a case id."""
    async with runtime.pool.acquire() as conn:
        result = await verify_connection(conn, public_key=public_key)
    return JSONResponse(report.verify_document(result), 200 if result.ok else 409)


@router.get(
    "/v1/checkpoints/latest",
    dependencies=guarded,
    responses=documented(401, 403, 404),
    tags=["ledger"],
)
async def latest_checkpoint(runtime: Runtime) -> dict[str, Any]:
    """The newest signed tree head: the C2SP checkpoint note with audit's signatures and the
    witnesses' cosignatures, its size, root and time, and the public key stored beside it
    (check it against the key you trust). The same for every token: no case in it."""
    async with runtime.pool.acquire() as conn:
        latest = await store.latest_head(conn)
    if latest is None:
        raise HTTPException(404, "no signed head yet / belum ada kepala pohon")
    return {
        "size": latest.size,
        "root_hash": latest.root_hash.hex(),
        "signed_at": timestamp(latest.signed_at),
        "origin": latest.origin,
        "note": head_note(latest),
        "cosignatures": len(latest.cosignatures),
        "public_key": base64.b64encode(latest.public_key).decode(),
        "vkey": note.log_verifiers(latest.origin, latest.public_key)[0].vkey(),
    }


@router.get("/v1/parked", dependencies=guarded, responses=documented(401, 403), tags=["ledger"])
async def parked(runtime: Runtime) -> dict[str, Any]:
    """How many messages each service parked on the dead-letter queue (counts only, the same
    for every token)."""
    async with runtime.pool.acquire() as conn:
        counts = await store.parked_counts(conn)
    return {"total": sum(counts.values()), "by_service": counts}


@router.post(
    "/v1/replays",
    responses=documented(401, 403),
    tags=["ledger"],
    status_code=202,
)
async def replays(request: ReplayRequest, runtime: Runtime, caller: Caller) -> dict[str, Any]:
    """Re-publish matching events in ledger order to ``rujuk.replay.<request_id>.…``. A
    district-bound token's replay holds only its districts' entries (no ``token.*``); a case
    of another district replays nothing, as an unknown case."""
    try:
        async with runtime.pool.acquire() as conn:
            result = await replay_to_bus(
                conn,
                runtime.js(),
                case_id=request.case_id,
                since=request.since,
                until=request.until,
                request_id=request.request_id,
                districts=caller.district_filter,
            )
    except ReplayRequestError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {
        "request_id": result.request_id,
        "count": result.count,
        "subjects": f"{result.subject_prefix}.>",
    }
