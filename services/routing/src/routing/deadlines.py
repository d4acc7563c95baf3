"""The deadline watcher: escalates referrals not acknowledged by their deadline, exactly once;
resolves picks by village intake did not answer in time (``routing.picks``), the same way.

Deadlines are rows in PostgreSQL (``deadlines``), written in the same transaction as the
referral they guard. Every ``poll`` seconds the watcher claims the rows that are due with
``FOR UPDATE SKIP LOCKED`` (on the deadline and its referral), checks the referral's state
and escalates it in that same transaction, then marks the row fired. A crash before the
commit leaves the row pending for the next round (or another replica); after the commit the
row is fired and never taken again. Why not JetStream's scheduled messages: see docs/routing.md.
"""

import asyncio
from collections.abc import Callable
from datetime import timedelta

import asyncpg
from prometheus_client import Counter, Gauge

from routing import oncall, picks, referrals, store
from routing.clock import Clock, utc_now
from routing.decide import ONE_MINUTE
from routing.lifecycle import OPEN_STATES
from routing.sops import SopsInForce
from rujuk_contracts.events import district_of
from rujuk_runtime.db import HeldConnection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.tasks import BackgroundTask

log = get_logger(__name__)

METRICS_EVERY_ROUNDS = 25  # with the default poll, the gauges (open, unrouted) every ~5 s
DEADLINES_MISSED = Counter(
    "rujuk_deadlines_missed_total",
    "Referrals not acknowledged by their deadline, by district, agency, priority and what "
    "followed (escalated, chain_exhausted)",
    ["district", "agency_id", "priority", "outcome"],
)
OPEN_REFERRALS = Gauge(
    "rujuk_open_referrals", "Referrals not yet accepted, declined or closed", ["agency_id", "state"]
)
ONCALL_ALERTS_OPEN = Gauge(
    "rujuk_oncall_alerts_open",
    "On-call alerts (escalation chains run out) nobody has acknowledged yet, by district",
    ["district"],
)
CASES_UNROUTED = Gauge(
    "rujuk_cases_unrouted",
    "Reported cases routing could not route, not yet routed by hand or closed, by district",
    ["district"],
)

BATCH = 100


class DeadlineWatcher(BackgroundTask):
    """Started with the service (``pool`` is asked for then), stopped before its pool closes."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        clock: Clock = utc_now,
        poll: float = 0.2,
        after_commit: Callable[[], None] = lambda: None,
        sops: SopsInForce | None = None,
        minute: timedelta = ONE_MINUTE,
    ) -> None:
        super().__init__("deadline-watcher")
        self._pool = pool
        self._held = HeldConnection(pool)  # polled every few hundred milliseconds
        self._clock = clock
        self._poll = poll
        self._after_commit = after_commit
        self._sops = sops or SopsInForce()  # where on-call lists come from
        self._minute = minute
        self.fired = 0
        self.paged = 0
        self.picks_timed_out = 0

    async def run_once(self) -> int:
        """Fire every deadline due now (in batches), then page every on-call round due (a
        chain that ran out just now is paged in the same pass); return how many fired."""
        total = 0
        while await self._pick_batch() == BATCH:  # first: a pick's referral has a deadline too
            pass
        while True:
            fired = await self._fire_batch()
            total += fired
            if fired < BATCH:
                break
        while await self._page_batch() == BATCH:
            pass
        return total

    async def _pick_batch(self) -> int:
        """Resolve the picks by village past their due time with the agency for no match."""
        now = self._clock()
        async with self._held.use() as conn, conn.transaction():
            due = await store.claim_due_picks(conn, now, BATCH)
            for pick in due:
                await picks.resolve(conn, pick, None, "timeout", now)
        if due:
            self.picks_timed_out += len(due)
            self._after_commit()
        return len(due)

    async def _page_batch(self) -> int:
        now = self._clock()
        async with self._held.use() as conn, conn.transaction():
            paged = await oncall.page_due(conn, self._sops, now, minute=self._minute, limit=BATCH)
        if paged:
            self.paged += paged
            self._after_commit()
        return paged

    async def _fire_batch(self) -> int:
        now = self._clock()
        async with self._held.use() as conn, conn.transaction():
            due = await store.claim_due_deadlines(conn, now, BATCH)
            for referral, due_at in due:
                outcome = await referrals.fire_deadline(conn, referral, clock=self._clock)
                await store.mark_deadline(conn, referral.referral_id, now, outcome)
                if outcome != "met":
                    DEADLINES_MISSED.labels(
                        district_of(referral.case_id),
                        referral.agency_id,
                        referral.priority.value,
                        outcome,
                    ).inc()
                log.info(
                    "deadline fired",
                    case_id=referral.case_id,
                    referral_id=referral.referral_id,
                    agency_id=referral.agency_id,
                    outcome=outcome,
                    late_ms=round((now - due_at).total_seconds() * 1000),
                )
        if due:
            self.fired += len(due)
            self._after_commit()
        return len(due)

    async def announce_sops_taking_effect(self) -> None:
        """Stage ``sop.in_force`` for a published version whose effective date has come (an
        SOP announced before is not announced again)."""
        async with self._pool().acquire() as conn, conn.transaction():
            announced = await self._sops.announce_in_force(conn, self._clock, at_start=False)
        if announced:
            log.info("sops in force announced", sops=announced)
            self._after_commit()

    async def report_open_referrals(self) -> None:
        async with self._pool().acquire() as conn:
            counts = await store.referrals_by_state_and_agency(conn)
        OPEN_REFERRALS.clear()
        for state, agency_id, count in counts:
            if state in OPEN_STATES:
                OPEN_REFERRALS.labels(agency_id, state).set(count)

    async def report_open_alerts(self) -> None:
        async with self._pool().acquire() as conn:
            counts = await store.open_alerts_by_district(conn)
        ONCALL_ALERTS_OPEN.clear()
        for district, count in counts:
            ONCALL_ALERTS_OPEN.labels(district).set(count)

    async def report_unrouted_cases(self) -> None:
        async with self._pool().acquire() as conn:
            counts = await store.unrouted_by_district(conn)
        CASES_UNROUTED.clear()  # a district whose last case was routed or closed: no series
        for district, count in counts:
            CASES_UNROUTED.labels(district).set(count)

    async def run(self) -> None:
        rounds = 0
        while True:
            try:
                await self.run_once()
                if rounds % METRICS_EVERY_ROUNDS == 0:
                    await self.announce_sops_taking_effect()
                    await self.report_open_referrals()
                    await self.report_unrouted_cases()
                    await self.report_open_alerts()
                rounds += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: the rows stay pending, try again
                log.warning(
                    "deadline watcher failed, will retry",
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                )
            await asyncio.sleep(self._poll)

    async def stopped(self) -> None:
        await self._held.release()
