"""Re-publish history onto the bus, in ledger order, for a projection being rebuilt."""

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext

from audit import store
from audit.chain import Entry
from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE
from rujuk_contracts.events import TYPE_PREFIX
from rujuk_runtime.db import Connection

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SEQ_HEADER = "Rujuk-Ledger-Seq"
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ReplayRequestError(ValueError):
    """A replay request that selects nothing sensible; the text says why."""


@dataclass(frozen=True)
class ReplayResult:
    request_id: str
    count: int
    subject_prefix: str  # rujuk.replay.<request_id>


def new_request_id() -> str:
    return uuid.uuid4().hex


def aggregate_and_event(event_type: str) -> tuple[str, str]:
    """``id.rujuk.case.reported.v1`` -> (``case``, ``reported``); other types -> ``other``."""
    parts = event_type.removeprefix(f"{TYPE_PREFIX}.").split(".")
    if event_type.startswith(f"{TYPE_PREFIX}.") and len(parts) == 3:
        aggregate, event, _version = parts
        if not _TOKEN_UNSAFE.search(aggregate + event) and aggregate and event:
            return aggregate, event
    return "other", _TOKEN_UNSAFE.sub("_", event_type) or "unknown"


def replay_subject(request_id: str, entry: Entry) -> str:
    return subjects.replay_subject(request_id, *aggregate_and_event(entry.event_type))


async def replay_to_bus(
    conn: Connection,
    js: JetStreamContext,
    *,
    case_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    request_id: str | None = None,
    districts: Sequence[str] | None = None,
) -> ReplayResult:
    """Publish the selected entries' CloudEvents to ``rujuk.replay.<request_id>.…`` in order.

    The body is the CloudEvent as the ledger holds it (its RFC 8785 text); the message id is
    ``replay:<request_id>:<event_id>``, so retrying the same request publishes nothing twice.
    With ``districts`` (a district-bound token's), only the entries of those districts are
    selected (``audit.scope``): a case of another district replays like an unknown one, 0.
    """
    if case_id is None and since is None and until is None:
        raise ReplayRequestError("give a case id or a time range / beri nomor kasus atau rentang")
    if since is not None and until is not None and since >= until:
        raise ReplayRequestError("'from' must come before 'to' / 'from' harus sebelum 'to'")
    request_id = request_id or new_request_id()
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise ReplayRequestError("a request id is 1-64 letters, digits, '-' or '_'")
    entries = await store.replay_selection(
        conn, case_id=case_id, since=since, until=until, districts=districts
    )
    for entry in entries:
        await js.publish(
            replay_subject(request_id, entry),
            entry.event.encode(),
            headers={
                "Nats-Msg-Id": f"replay:{request_id}:{entry.event_id}",
                "Content-Type": CONTENT_TYPE,
                SEQ_HEADER: str(entry.seq),
            },
        )
    return ReplayResult(request_id, len(entries), f"{subjects.PREFIX}.replay.{request_id}")
