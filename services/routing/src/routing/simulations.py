"""Impact simulation jobs: a candidate SOP run over a district's past cases beside the SOP in
force, in PostgreSQL so that any routing replica answers a progress poll.

A job is queued by ``start_simulation``; each replica's ``SimulationRunner`` claims queued
jobs one at a time, reads the cases a chunk at a time (keyset on reported_at, case_id), does
the CPU work of each chunk off the event loop and writes the progress after each chunk.

The runner holds a PostgreSQL session lock on its job while it runs it. A job left
``running`` by a routing that died (its connection, and so its lock, went with it) is marked
**failed**, not restarted: by every runner when it starts, and by any replica answering a
progress poll for it. Not restarted, because a job that brought its routing down would bring
the next one down too; the coordinator starts it again.
"""

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import ValidationError

from routing import store
from routing.clock import Clock, utc_now
from routing.simulate import PastCase, Simulation
from routing.sop import parse_sop
from routing.sop.diff import rule_diff
from routing.sops import SopNotServed, SopsInForce
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.tasks import BackgroundTask

log = get_logger(__name__)

CHUNK_CASES = 2_000
DEFAULT_DAYS = 90
ORPHANED = (
    "routing berhenti saat simulasi berjalan; mulai lagi / routing stopped while the "
    "simulation ran; start it again"
)


class NothingToCompare(Exception):
    """No SOP in force for the candidate's district: nothing to simulate it against."""


@dataclass(frozen=True)
class Period:
    """[start, end) of the reports simulated."""

    start: datetime
    end: datetime


def last_days(days: int, now: datetime) -> Period:
    return Period(now - timedelta(days=days), now)


async def start_simulation(
    conn: Connection,
    sops: SopsInForce,
    candidate_yaml: str,
    period: Period,
    requested_by: str,
    *,
    districts: Collection[str] | None,
    clock: Clock = utc_now,
) -> str:
    """Queue a simulation of the candidate SOP against the one in force for its district;
    returns its id. A runner takes it (wake it, or it looks every few seconds).

    Raises SopError (every problem in the candidate, with its line), SopNotServed (the
    requester does not serve the district: ``districts``, None for every one) or
    NothingToCompare; nothing is stored then.
    """
    candidate = parse_sop(candidate_yaml, origin="candidate document")
    district = candidate.district_code
    if districts is not None and district not in districts:
        raise SopNotServed(district)
    in_force = (await sops.documents_in_force(conn)).get(district)
    if in_force is None:
        raise NothingToCompare(
            f"tidak ada SOP berlaku untuk kabupaten {district} / no SOP in force for district "
            f"{district} to compare with"
        )
    base_yaml = await _document_of(
        conn, sops, district, in_force.origin.value, in_force.sop.version
    )
    simulation_id = f"sim-{uuid.uuid4().hex}"
    await store.add_simulation(
        conn,
        store.SimulationJob(
            simulation_id=simulation_id,
            district_code=district,
            base_version=in_force.sop.version,
            base_origin=in_force.origin.value,
            base_sha256=in_force.sha256,
            base_yaml=base_yaml,
            candidate_version=candidate.version,
            candidate_sha256=hashlib.sha256(candidate_yaml.encode()).hexdigest(),
            candidate_yaml=candidate_yaml,
            period_from=period.start,
            period_to=period.end,
            state="queued",
            cases_done=0,
            cases_total=None,
            diff=json.dumps(rule_diff(in_force.sop, candidate).to_json()),
            result=None,
            failure=None,
            requested_by=requested_by,
            requested_at=clock(),
            started_at=None,
            finished_at=None,
        ),
    )
    log.info("sop simulation queued", simulation_id=simulation_id, district=district,
             base_version=in_force.sop.version, candidate_version=candidate.version,
             requested_by=requested_by)  # fmt: skip
    return simulation_id


async def _document_of(
    conn: Connection, sops: SopsInForce, district: str, origin: str, version: int
) -> str:
    if origin == "published":
        stored = await store.get_sop(conn, district, version)
        assert stored is not None  # documents_in_force read it just now
        return stored.yaml
    return sops.library.texts[district]


async def simulation_status(
    conn: Connection, simulation_id: str, districts: list[str] | None, *, clock: Clock = utc_now
) -> store.SimulationJob | None:
    """The job (None: none of these districts' has this id); a running one whose routing
    died is marked failed first."""
    job = await store.get_simulation(conn, simulation_id, districts)
    if job is None or job.state != "running":
        return job
    async with conn.transaction():
        orphaned = await store.fail_orphaned_simulations(
            conn, ORPHANED, clock(), simulation_id=simulation_id
        )
    if orphaned:
        log.warning("sop simulation orphaned", simulation_id=simulation_id)
        return await store.get_simulation(conn, simulation_id, districts)
    return job


def view(job: store.SimulationJob) -> dict[str, Any]:
    """The job as the API shows it: no documents, the diff always, the result when done."""
    return {
        "simulation_id": job.simulation_id,
        "district_code": job.district_code,
        "state": job.state,
        "cases_done": job.cases_done,
        "cases_total": job.cases_total,
        "base": {
            "version": job.base_version,
            "origin": job.base_origin,
            "sha256": job.base_sha256,
        },
        "candidate": {"version": job.candidate_version, "sha256": job.candidate_sha256},
        "period": {"from": job.period_from, "to": job.period_to},
        "requested_by": job.requested_by,
        "requested_at": job.requested_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "failure": job.failure,
        "diff": json.loads(job.diff),
        "result": None if job.result is None else json.loads(job.result),
    }


# --- running jobs -------------------------------------------------------------------------


MAX_PARSED_FACTS = 5_000


class FactsReader:
    """Triage facts from their stored JSON, each distinct document parsed once (most cases
    share their facts with many others)."""

    def __init__(self) -> None:
        self._parsed: dict[str, TriageFacts | None] = {}

    def cases(self, rows: list[tuple[str, datetime, str | None]]) -> list[PastCase]:
        return [PastCase(case_id, at, self.facts(text)) for case_id, at, text in rows]

    def facts(self, text: str | None) -> TriageFacts | None:
        if text is None:
            return None
        if text not in self._parsed:
            if len(self._parsed) >= MAX_PARSED_FACTS:  # bounded: a job may read 100,000s
                self._parsed.clear()
            try:
                self._parsed[text] = TriageFacts.model_validate_json(text)
            except ValidationError:  # stored under an older contract: counted as not simulable
                self._parsed[text] = None
        return self._parsed[text]


async def run_simulation(
    conn: Connection,
    job: store.SimulationJob,
    *,
    zone: ZoneInfo,
    clock: Clock = utc_now,
    chunk: int = CHUNK_CASES,
) -> None:
    """Run a claimed job to its end (done, or failed with the reason)."""
    try:
        before = parse_sop(job.base_yaml, origin=f"SOP {job.district_code} v{job.base_version}")
        after = parse_sop(job.candidate_yaml, origin="candidate document")
        simulation = Simulation(before, after, zone=zone)
        reader = FactsReader()
        total = await store.count_simulated_cases(
            conn, job.district_code, job.period_from, job.period_to
        )
        await store.record_simulation_progress(conn, job.simulation_id, 0, total)
        done, cursor = 0, None
        while rows := await store.simulated_cases_chunk(
            conn, job.district_code, job.period_from, job.period_to, after=cursor, limit=chunk
        ):
            await asyncio.to_thread(_add_chunk, simulation, reader, rows)
            done += len(rows)
            cursor = (rows[-1][1], rows[-1][0])
            total = max(total, done)  # cases routed since the count, reported in the period
            await store.record_simulation_progress(conn, job.simulation_id, done, total)
        result = await asyncio.to_thread(lambda: json.dumps(simulation.result().to_json()))
        await store.finish_simulation(conn, job.simulation_id, result, done, total, clock())
        log.info("sop simulation done", simulation_id=job.simulation_id, cases=done)
    except (asyncio.CancelledError, asyncpg.PostgresConnectionError, OSError):
        raise  # stopping, or the database away: a later start marks it failed
    except Exception as exc:  # the job fails (a broken document included), the runner goes on
        log.exception("sop simulation failed", simulation_id=job.simulation_id)
        reason = f"simulasi gagal / the simulation failed: {type(exc).__name__}: {exc}"[:500]
        await store.fail_simulation(conn, job.simulation_id, reason, clock())


def _add_chunk(
    simulation: Simulation, reader: FactsReader, rows: list[tuple[str, datetime, str | None]]
) -> None:
    simulation.add(reader.cases(rows))


async def _release(conn: Connection, simulation_id: str) -> None:
    """Give the job's lock up; a connection that cannot is closed (its lock goes with it)
    rather than going back to the pool still holding it."""
    try:
        await store.release_simulation(conn, simulation_id)
    except Exception:
        conn.terminate()


class SimulationRunner(BackgroundTask):
    """One replica's runner: a job at a time (the work is CPU-bound), woken when a job is
    queued here, and looking every ``poll`` seconds for jobs queued on another replica."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        zone: ZoneInfo,
        clock: Clock = utc_now,
        poll: float = 2.0,
        chunk: int = CHUNK_CASES,
    ) -> None:
        super().__init__("sop-simulation-runner")
        self._pool = pool
        self._zone = zone
        self._clock = clock
        self._poll = poll
        self._chunk = chunk
        self.finished = 0

    async def fail_orphans(self) -> list[str]:
        async with self._pool().acquire() as conn, conn.transaction():
            orphaned = await store.fail_orphaned_simulations(conn, ORPHANED, self._clock())
        for simulation_id in orphaned:
            log.warning("sop simulation orphaned", simulation_id=simulation_id)
        return orphaned

    async def run_next(self) -> bool:
        """Claim and run the oldest queued job; False when there was none."""
        async with self._pool().acquire() as conn:
            async with conn.transaction():
                job = await store.claim_queued_simulation(conn, self._clock())
            if job is None:
                return False
            try:
                await run_simulation(conn, job, zone=self._zone, clock=self._clock,
                                     chunk=self._chunk)  # fmt: skip
                self.finished += 1
            finally:
                await _release(conn, job.simulation_id)
        return True

    async def run(self) -> None:
        started = False
        while True:
            self.clear_wake()
            try:
                if not started:
                    await self.fail_orphans()
                    started = True
                while await self.run_next():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: the jobs stay queued, try again
                log.warning("sop simulation runner failed, will retry",
                            error=type(exc).__name__, detail=str(exc)[:200])  # fmt: skip
            await self.wait_for_wake(self._poll)
