"""Retention of the vault: a closed case's identifying data is crypto-shredded once the SOP in
force for its district has kept it as long as it says (``retention.vault_days_after_close``,
announced in ``sop.in_force``; UU PDP 27/2022: no longer than its purpose needs).

Every ``every`` seconds the sweep reads the closed cases due, then erases each in a transaction
of its own exactly as a coordinator's erasure does (``store.erase_case``: the data key, the
notes, the request hash), with its ``case.erased`` event (reason ``retention_expired``, by
``retention:<sop id>:v<version>``) staged in the same transaction, so the ledger records which
SOP ended the record. Each case is locked and checked again first: a replica sweeping at the
same moment, or a coordinator erasing it by hand, makes it a no-op. A case without a close, or
in a district whose SOP states no retention, is kept until someone erases it."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Counter

from intake import events, store
from rujuk_contracts.events import EraseReason, district_of
from rujuk_runtime.logs import get_logger
from rujuk_runtime.tasks import BackgroundTask

log = get_logger(__name__)

VAULT_RECORDS_EXPIRED = Counter(
    "rujuk_vault_records_expired_total",
    "Closed cases whose identifying data was crypto-shredded as their SOP's retention ran out",
    ["district"],
)
BATCH = 100


def erased_by(due: store.RetentionDue) -> str:
    """Who erased, in ``case.erased``: no person, the SOP that states the retention."""
    return f"retention:{due.sop_id}:v{due.sop_version}"


class RetentionSweep(BackgroundTask):
    """Started with the service (``pool`` is asked for then), stopped before its pool closes;
    ``after_erasing`` wakes the outbox relay."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        day: timedelta,
        every: float,
        after_erasing: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__("vault-retention")
        self._pool = pool
        self._day = day
        self._every = every
        self._after_erasing = after_erasing

    async def run(self) -> None:
        while True:
            try:
                while await self.sweep_once() == BATCH:
                    pass
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("retention sweep failed, will retry", error=type(exc).__name__)
            await self.wait_for_wake(self._every)

    async def sweep_once(self) -> int:
        """Erase the cases due now, at most ``BATCH``; how many were due."""
        async with self._pool().acquire() as conn:
            due = await store.vault_records_due(conn, day=self._day, limit=BATCH)
        erased = 0
        for case in due:
            erased += await self._erase(case)
        if erased:
            self._after_erasing()
            log.info("vault records expired", erased=erased)
        return len(due)

    async def _erase(self, due: store.RetentionDue) -> int:
        async with self._pool().acquire() as conn, conn.transaction():
            if not await store.lock_closed_case_not_erased(conn, due.case_id):
                return 0
            event = events.case_erased(
                due.case_id,
                erased_by=erased_by(due),
                reason=EraseReason.RETENTION_EXPIRED,
                traceparent=None,
            )
            await store.erase_case(conn, due.case_id, datetime.now(UTC), event)
        VAULT_RECORDS_EXPIRED.labels(district_of(due.case_id)).inc()
        log.info("vault record expired", case_id=due.case_id, sop_id=due.sop_id,
                 sop_version=due.sop_version)  # fmt: skip
        return 1
