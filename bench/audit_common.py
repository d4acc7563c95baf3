"""Shared by the audit benches: private servers, and invented events (no real data)."""

import asyncio
import contextlib
import random
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import CaseClosed, ReferralAcknowledged
from rujuk_runtime.embedded import EmbeddedNats, EmbeddedPostgres
from rujuk_runtime.provision import provision

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
START = datetime(2026, 1, 1, tzinfo=UTC)


def case_id(number: int) -> str:
    digits = "".join(CROCKFORD[(number >> (5 * i)) & 31] for i in range(10))
    return f"3514-{digits}"


def event_for(case_number: int, step: int) -> CloudEvent:
    """An invented event: a few acknowledgements then a closing, per case."""
    cid = case_id(case_number)
    time = START + timedelta(seconds=case_number * 7 + step)
    if step % 10 == 9:
        payload: CaseClosed | ReferralAcknowledged = CaseClosed(
            case_id=cid, closed_by="bench", reason="invented for a benchmark"
        )
    else:
        payload = ReferralAcknowledged(
            case_id=cid, referral_id=f"{cid}-{step:02d}", agency_id="rsud-bangil"
        )
    return make_event(
        payload,
        source="/rujuk/bench",
        time=time,
        event_id=str(uuid.UUID(int=random.getrandbits(128))),
    )


@contextlib.contextmanager
def servers(need_nats: bool = True) -> Iterator[tuple[str | None, str]]:
    """Embedded NATS (optional) and PostgreSQL on free ports in a temp folder, stopped after;
    the database provisioned, its administrator's URL given."""
    with tempfile.TemporaryDirectory(prefix="rujuk-bench-") as folder:
        root = Path(folder)
        root.chmod(0o755)  # PostgreSQL may run as its own user (never as root)
        nats_server = EmbeddedNats(root / "nats").start() if need_nats else None
        postgres = EmbeddedPostgres(root / "postgres").start()
        try:
            asyncio.run(provision(postgres.url, {}))  # schemas and migrations, as for a stack
            yield (nats_server.ops_url if nats_server else None), postgres.url
        finally:
            postgres.stop()
            if nats_server:
                nats_server.stop()
