"""Bad input on the bus harms nothing else.

On every subject a service's durable consumer reads (taken from the services' own declarations),
garbage bytes, truncated JSON, an event of another type, an unknown schema version (in the type,
and in the dataschema alone) and an oversize message are each parked on ``rujuk.dlq.<service>``
by every consumer that reads the subject, with a reason naming the problem and the consumer.
Audit is the one reader that records every valid CloudEvent, of any type or version: it parks
only what is not one. Then a case goes its whole way (reported, routed, delivered, acknowledged,
accepted, completed, declined and escalated, a reply refused, a late delivery failure) and every
one of those good messages is processed by every consumer that reads it; the four services are
alive and healthy; audit counted every parked message; no reason or log line repeats the
identifying text the bad messages carried.
"""

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js import JetStreamContext

from audit.bootstrap import DURABLE as LEDGER_DURABLE
from intake import store
from intake.auth import Role
from notify.replies import REPLY_KINDS, reply_event_id
from routing import store as routing_store
from routing.decide import Decision, PendingPick, VillageCandidate
from routing.events import village_agency_asked, village_question_id
from routing.paging import OnCallAlert
from rujuk.samples import SAMPLE_REPORTS
from rujuk.stack import Stack
from rujuk_contracts import make_event, parse_event, subjects
from rujuk_contracts.envelope import MAX_EVENT_BYTES, CloudEvent
from rujuk_contracts.events import (
    EVENT_MODELS,
    CaseReported,
    CaseVillageAgencyAsked,
    EventPayload,
    OnCallAcknowledged,
    OnCallPaged,
    Priority,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReplyKind,
    Service,
    SopAnswerGiven,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
)
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.bus import (
    DLQ_CONSUMER_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SERVICE_HEADER,
    DLQ_SUBJECT_HEADER,
)
from rujuk_runtime.nats_auth import NatsKeyring
from rujuk_runtime.pull import PullConsumer
from rujuk_runtime.service import ServiceRuntime
from tests.conftest import fresh_database, remove_streams
from tests.service_apps import service_runtimes

pytestmark = pytest.mark.integration

# Identifying-looking text inside the bad messages: parking must not repeat it anywhere.
MARKER = "ZQX Bad Input Invented Person"
SWEEP_AGENCY = "sweep-partner"
SWEEP_CASE = "3514-5WEEP00000"
SOURCE = "/rujuk/tests/bad-input"
# Problem -> what every reason for it must contain (besides naming the consumer).
PROBLEMS: dict[str, Callable[[type[EventPayload]], str]] = {
    "garbage": lambda _: "not JSON",
    "truncated": lambda _: "not JSON",
    "wrong_type": lambda own: _other_model(own).event_type(),
    "unknown_version": lambda own: f"{_family(own)}.v99",
    "unknown_dataschema": lambda _: "unknown schema version",
    "oversize": lambda _: f"exceeds the limit of {MAX_EVENT_BYTES}",
}
RECORDED_BY_LEDGER = {"wrong_type", "unknown_version", "unknown_dataschema"}


@dataclass(frozen=True)
class Bad:
    subject: str
    problem: str
    data: bytes
    event_id: str | None  # where the bad message is a valid CloudEvent


@dataclass
class Swept:
    stack: Stack
    runtimes: dict[str, ServiceRuntime]
    bad: list[Bad]
    last_bad_seq: int
    case_id: str = ""
    referrals: dict[str, str] = field(default_factory=dict)  # referral id -> agency id
    parked: dict[tuple[str, str, bytes], tuple[str, str]] = field(default_factory=dict)

    @property
    def consumers(self) -> list[PullConsumer]:
        return [c for runtime in self.runtimes.values() for c in runtime.pull_consumers]

    def skips(self, service: str, event_type: str) -> bool:
        """A reader of every subject that acks the known types it has no use for, unread."""
        runtime = self.runtimes[service]
        return (
            runtime.skip_unhandled
            and event_type in EVENT_MODELS
            and not runtime.handles(event_type)
        )


# --- which subjects, which messages ------------------------------------------------------------


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


def sweep_subjects(consumers: list[PullConsumer]) -> list[str]:
    """Each subject a consumer names; for a wildcard no named subject falls under, the event
    subjects in it, else each subject in it (a partner's four replies)."""
    readers = [c for c in consumers if c.stream != subjects.DLQ_STREAM]
    concrete = sorted({c.subject for c in readers if "*" not in c.subject and ">" not in c.subject})
    for consumer in readers:
        if any(matches(consumer.subject, s) for s in concrete):
            continue
        known = [
            m.subject() for m in EVENT_MODELS.values() if matches(consumer.subject, m.subject())
        ]
        replies = [
            consumer.subject.replace("*", SWEEP_AGENCY).replace(">", kind) for kind in ReplyKind
        ]
        concrete += sorted(known) or replies
    return concrete


def own_model(subject: str) -> type[EventPayload]:
    """The event type a subject carries: an internal event's, or a partner reply's."""
    for model in EVENT_MODELS.values():
        if model.subject() == subject:
            return model
    reply = subject.rpartition(".")[2]
    by_reply: dict[str, type[EventPayload]] = {k.value: m for m, k in REPLY_KINDS.items()}
    return by_reply[reply]


def _other_model(own: type[EventPayload]) -> type[EventPayload]:
    # Both are handled by routing and projected by intake: only the subject makes them wrong.
    return ReferralDelivered if own is CaseReported else CaseReported


def _family(model: type[EventPayload]) -> str:
    return model.event_type().rpartition(".v")[0]


def sample(model: type[EventPayload], case_id: str = SWEEP_CASE) -> EventPayload:
    """A valid payload of any event type the sweep needs."""
    values: dict[str, Any] = {
        "case_id": case_id,
        "channel": "hotline",
        "reported_at": datetime(2026, 11, 1, 8, tzinfo=UTC),
        "triage": TriageFacts(
            violence_types=["physical"], age_group="adult", sex="female", district_code=case_id[:4]
        ),
        "referral_id": f"sweep-{uuid.uuid4().hex[:8]}",
        "agency_id": SWEEP_AGENCY,
        "service": "health",
        "priority": "urgent",
        "acknowledgement_deadline": datetime(2026, 11, 1, 10, tzinfo=UTC),
        "escalation_chain": [],
        "sop_id": "sweep",
        "sop_version": 1,
        "rule_ids": ["sweep"],
        "channels": ["nats"],
        "attempts": 1,
        "reason": "other",
        "reply": "acknowledge",
        "token_id": f"sweep-{uuid.uuid4().hex[:16]}",
        "role": "partner",
        "secret_sha256": "0" * 64,
        # the on-call events (issue 24)
        "alert_id": f"sweep-{uuid.uuid4().hex[:8]}",
        "round": 1,
        "rounds": 1,
        "next_round_at": None,
        "contacts": [{"contact_id": SWEEP_AGENCY, "channels": ["sms"]}],
        "contact_id": SWEEP_AGENCY,
        "via": "reply",
        "by": SWEEP_AGENCY,
        # SOP proposals and their answers (issue 19)
        "proposal_id": "prop-" + "0" * 32,
        "district_code": case_id[:4],
        "decision": "agree",
        "refusal": "not_valid",
        "sha256": "0" * 64,
        "base_version": None,
        "proposed_by": "coordinator:sweep",
        "asked": [],
        "withdrawn_by": "coordinator:sweep",
        "published_by": "coordinator:sweep",
        # the pick by village (issue 25)
        "question_id": "vq-" + uuid.uuid4().hex,
        "candidates": [{"agency_id": SWEEP_AGENCY, "villages": ["Sweep/Desa Sweep Rekaan"]}],
    }
    if model is OnCallPaged:  # why the chain passed it on: an EscalationReason
        values["reason"] = "deadline_missed"
    if model is OnCallAcknowledged:  # the channel of the page answered
        values["channel"] = "sms"
    if model is SopAnswerGiven:  # agreeing: no reason
        values["reason"] = None
    return model.model_validate({k: v for k, v in values.items() if k in model.model_fields})


def event_of(payload: EventPayload, **changes: Any) -> CloudEvent:
    event = make_event(payload, source=SOURCE)
    return event.model_copy(update=changes) if changes else event


def bad_messages(subject: str) -> list[Bad]:
    own = own_model(subject)
    marked = event_of(sample(own), marker=MARKER)  # an extension attribute, as a sender may add
    wrong = event_of(sample(_other_model(own)), marker=MARKER)
    v99 = event_of(sample(own), type=f"{_family(own)}.v99",
                   dataschema=own.schema_uri().replace(":v1", ":v99"), marker=MARKER)  # fmt: skip
    schema_v99 = event_of(sample(own), dataschema=own.schema_uri().replace(":v1", ":v99"))
    oversize = event_of(sample(own), padding=MARKER * (MAX_EVENT_BYTES // len(MARKER) + 1))
    garbage = b"\x9f\xff\x00" + os.urandom(32) + MARKER.encode() + subject.encode()
    return [
        Bad(subject, "garbage", garbage, None),
        Bad(subject, "truncated", marked.to_bytes()[: len(marked.to_bytes()) // 2], None),
        Bad(subject, "wrong_type", wrong.to_bytes(), wrong.id),
        Bad(subject, "unknown_version", v99.to_bytes(), v99.id),
        Bad(subject, "unknown_dataschema", schema_v99.to_bytes(), schema_v99.id),
        Bad(subject, "oversize", oversize.to_bytes(), None),
    ]


# --- the run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def swept(
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Swept]:
    await remove_streams(nats_url)
    async with fresh_database(server_database_url) as database_url:
        stack = Stack(
            tmp_path_factory.mktemp("bad-input-bus"),
            external_nats_url=nats_url,
            nats_keyring=nats_keyring,
            external_database_url=database_url,
            extra_env={"NOTIFY_WEBHOOK_BASE_URL": ""},  # each partner's NATS feed only
        )
        runtimes = service_runtimes(stack)
        await asyncio.to_thread(stack.start)
        connection = await nats.connect(nats_url)
        try:
            js = connection.jetstream()
            consumers = [c for r in runtimes.values() for c in r.pull_consumers]
            bad = [b for s in sweep_subjects(consumers) for b in bad_messages(s)]
            last_seq = 0
            for message in bad:
                ack = await js.publish(message.subject, message.data)
                last_seq = max(last_seq, ack.seq)
            # The dead-letter counter's own bad input: a message with none of the DLQ headers.
            await js.publish(subjects.dead_letter("sweep"), b"\x00 no headers " + os.urandom(8))
            run = Swept(stack, runtimes, bad, last_seq)
            await good_journey(run, js)
            yield run
        finally:
            await connection.close()
            await asyncio.to_thread(stack.stop)


async def good_journey(run: Swept, js: JetStreamContext) -> None:
    """After the bad messages, one case along every subject the sweep covered."""
    stack = run.stack
    async with httpx.AsyncClient(headers=stack.operator_headers(), timeout=10) as client:
        response = await client.post(
            f"{stack.services['intake'].url}/v1/reports", json=SAMPLE_REPORTS[2]
        )
        assert response.status_code == 202, response.text
        run.case_id = response.json()["case_id"]
        referrals = await wait_for_states(client, run, ["delivered", "delivered"])
    run.referrals = {r["referral_id"]: r["agency_id"] for r in referrals}
    kept, declined = sorted(referrals, key=lambda r: r["agency_id"] != "uptppa-pasuruan")
    for reply in (ReferralAcknowledged, ReferralAccepted, ReferralCompleted):
        await reply_over_nats(js, run.case_id, kept, reply)
    await reply_over_nats(js, run.case_id, declined, ReferralDeclined)
    # Completing a declined referral is not allowed: routing refuses it, notify forwards that.
    await reply_over_nats(js, run.case_id, declined, ReferralCompleted)
    async with httpx.AsyncClient(headers=stack.operator_headers(), timeout=10) as client:
        await wait_for_states(client, run, ["completed", "escalated", "delivered"])
    # A late failure report on another channel changes nothing, and is processed.
    late = ReferralDeliveryFailed(case_id=run.case_id, referral_id=kept["referral_id"],
                                  agency_id=kept["agency_id"], reason="sms gateway away",
                                  attempts=3)  # fmt: skip
    await js.publish(late.subject(), make_event(late, source=SOURCE).to_bytes())
    # A chain run out: the on-call list paged (issue 24). Without an SMS gateway here, notify
    # reports the page failed at once.
    paged = sample(OnCallPaged, run.case_id)
    await js.publish(paged.subject(), make_event(paged, source=SOURCE).to_bytes())
    # ... and someone acknowledged it by replying: routing knows the alert (opened in its
    # store, as its watcher would have) and takes the acknowledgement notify relays.
    assert isinstance(paged, OnCallPaged)
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "routing"})
    try:
        await routing_store.open_alert(
            conn,
            OnCallAlert(
                alert_id=paged.alert_id,
                case_id=run.case_id,
                district_code=run.case_id[:4],
                referral_id=paged.referral_id,
                agency_id=paged.agency_id,
                priority=paged.priority,
                reason=paged.reason,
                opened_at=datetime.now(UTC),
                plan=None,
                rounds_paged=1,
                next_page_at=None,
            ),
        )
    finally:
        await conn.close()
    acknowledged = sample(OnCallAcknowledged, run.case_id).model_copy(
        update={"alert_id": paged.alert_id}
    )
    await js.publish(acknowledged.subject(), make_event(acknowledged, source=SOURCE).to_bytes())
    # A partner is issued a token and loses it: intake announces both.
    conn = await asyncpg.connect(stack.database_url, server_settings={"search_path": "intake"})
    try:
        token_id, _ = await store.create_token(conn, Role.PARTNER, agency_id=kept["agency_id"])
        await store.revoke_token(conn, token_id)
    finally:
        await conn.close()
    # An SOP proposal's life (issue 19) for a proposal nobody holds: notify tells the agencies
    # it asked (none), routing refuses the answer to it, naming why; each is processed.
    for model in (SopProposed, SopAnswerGiven, SopProposalWithdrawn, SopPublished):
        event = sample(model, run.case_id)
        await js.publish(event.subject(), make_event(event, source=SOURCE).to_bytes())
    await ask_which_village(run, js, kept)


async def ask_which_village(run: Swept, js: JetStreamContext, kept: dict[str, Any]) -> None:
    """A pick by village (issue 25) routing holds for the case, asked as routing asks it:
    intake answers (the case has no village: none), routing resolves the pick with the agency
    for no match, which holds that service already: no second referral."""
    pick = PendingPick(
        referral_id=f"{run.case_id}-90",
        service=Service(kept["service"]),
        priority=Priority.ROUTINE,
        acknowledge_within=timedelta(hours=24),
        escalate_to=(),
        coordinator=kept["agency_id"],
        rule_ids=("sweep",),
        consent_override=None,
        candidates=(VillageCandidate(SWEEP_AGENCY, ("Sweep/Desa Sweep Rekaan",)),),
        none_agency_id=kept["agency_id"],
        none_reason="fallback",
    )
    decision = Decision(run.case_id, "sweep", 1, (), (), pending_picks=(pick,))
    question_id = village_question_id(run.case_id, pick)
    conn = await asyncpg.connect(run.stack.database_url, server_settings={"search_path": "routing"})
    try:
        now = datetime.now(UTC)
        await routing_store.add_village_picks(
            conn, decision, [(question_id, pick)], asked_at=now, due_at=now + timedelta(hours=1)
        )
    finally:
        await conn.close()
    asked = village_agency_asked(
        run.case_id, question_id, pick, now, None, answer_by=now + timedelta(hours=1)
    )
    await js.publish(CaseVillageAgencyAsked.subject(), asked.to_bytes())


async def wait_for_states(
    client: httpx.AsyncClient, run: Swept, states: list[str]
) -> list[dict[str, Any]]:
    """Until the case's referrals are in exactly these states, in any order."""
    url = f"{run.stack.services['intake'].url}/v1/cases/{run.case_id}"
    deadline = time.monotonic() + 30
    referrals: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        referrals = (await client.get(url)).json()["referrals"]
        if sorted(r["state"] for r in referrals) == sorted(states):
            return referrals
        await asyncio.sleep(0.1)
    pytest.fail(f"case {run.case_id}: referrals {[r['state'] for r in referrals]}, not {states}")


async def reply_over_nats(
    js: JetStreamContext, case_id: str, referral: dict[str, Any], model: type[EventPayload]
) -> None:
    payload = model.model_validate(
        {"case_id": case_id, "referral_id": referral["referral_id"],
         "agency_id": referral["agency_id"]}
        | ({"reason": "no_capacity"} if model is ReferralDeclined else {})
    )  # fmt: skip
    kind = REPLY_KINDS[model]  # type: ignore[index]
    await js.publish(
        subjects.partner_inbound(referral["agency_id"], kind.value),
        make_event(payload, source=subjects.partner_source(referral["agency_id"])).to_bytes(),
    )


# --- what the bus and the databases hold -------------------------------------------------------


async def stream_messages(nats_url: str, stream: str, wildcard: str) -> list[nats.aio.msg.Msg]:
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        info = await js.stream_info(stream)
        subscription = await js.pull_subscribe(wildcard, durable=None, stream=stream)
        messages: list[nats.aio.msg.Msg] = []
        while len(messages) < info.state.messages:
            messages += await subscription.fetch(info.state.messages - len(messages), timeout=5)
        return messages
    finally:
        await connection.close()


async def processed_ids(run: Swept) -> dict[str, set[str]]:
    """Per durable consumer, the event ids its service acted on (the ledger's: what it holds)."""
    conn = await asyncpg.connect(run.stack.database_url)
    try:
        found: dict[str, set[str]] = {}
        for consumer in run.consumers:
            table = (
                "audit.ledger"
                if consumer.durable == LEDGER_DURABLE
                else f"{consumer.service}.processed_events"
            )
            rows = await conn.fetch(f"SELECT event_id FROM {table}")  # noqa: S608
            found[consumer.durable] = {row["event_id"] for row in rows}
        return found
    finally:
        await conn.close()


def expected_parks(run: Swept) -> dict[tuple[str, str, bytes], dict[str, str]]:
    """(service, subject, body) -> {consumer: what its reason must say}. Where two consumers
    of one service read the subject (audit's ledger and its token projection), both park the
    message and the dead-letter stream keeps the first (one Nats-Msg-Id per service and
    message): either one may be the consumer named."""
    expected: dict[tuple[str, str, bytes], dict[str, str]] = {}
    for bad in run.bad:
        for consumer in run.consumers:
            if consumer.stream == subjects.DLQ_STREAM or not matches(consumer.subject, bad.subject):
                continue
            own = own_model(bad.subject)
            if consumer.durable == LEDGER_DURABLE and bad.problem in RECORDED_BY_LEDGER:
                continue
            if bad.problem == "unknown_dataschema" and run.skips(
                consumer.service, own.event_type()
            ):
                continue
            needle = PROBLEMS[bad.problem](own)
            expected.setdefault((consumer.service, bad.subject, bad.data), {})[consumer.durable] = (
                needle
            )
    return expected


async def parked_now(run: Swept) -> dict[tuple[str, str, bytes], tuple[str, str]]:
    parked = {}
    messages = await stream_messages(run.stack.nats_url, subjects.DLQ_STREAM, subjects.DLQ_WILDCARD)
    for message in messages:
        headers = message.headers or {}
        if DLQ_SERVICE_HEADER not in headers:
            continue  # the counter's own bad input
        key = (headers[DLQ_SERVICE_HEADER], headers[DLQ_SUBJECT_HEADER], message.data)
        parked[key] = (headers.get(DLQ_CONSUMER_HEADER, ""), headers[DLQ_REASON_HEADER])
    return parked


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        outcome = await check()
        if outcome or time.monotonic() > deadline:
            return outcome
        await asyncio.sleep(0.2)


async def all_parked(run: Swept) -> dict[tuple[str, str, bytes], tuple[str, str]]:
    """What was parked, once every expected message was (or 30 s passed)."""
    if not run.parked:
        expected = expected_parks(run)

        async def complete() -> dict[tuple[str, str, bytes], tuple[str, str]] | None:
            parked = await parked_now(run)
            return parked if set(expected) <= set(parked) else None

        run.parked = await wait_until(complete) or await parked_now(run)
    return run.parked


def _problem_of(run: Swept, data: bytes) -> str:
    return next((b.problem for b in run.bad if b.data == data), "a good message")


# --- the specification -------------------------------------------------------------------------


def test_the_sweep_covers_every_durable_consumer_of_every_service(swept: Swept) -> None:
    covered = {c.durable for c in swept.consumers
               if any(matches(c.subject, b.subject) for b in swept.bad)}  # fmt: skip
    dead_letter_readers = {c.durable for c in swept.consumers if c.stream == subjects.DLQ_STREAM}
    assert covered | dead_letter_readers == {c.durable for c in swept.consumers}
    assert {c.service for c in swept.consumers} == set(swept.runtimes)
    assert {"intake", "routing", "notify", "audit"} <= set(swept.runtimes)


async def test_each_bad_message_is_parked_by_each_reader_naming_the_problem_and_consumer(
    swept: Swept,
) -> None:
    expected = expected_parks(swept)
    parked = await all_parked(swept)
    missing = [f"{key[0]} {key[1]} {_problem_of(swept, key[2])}" for key in expected
               if key not in parked]  # fmt: skip
    assert missing == []
    wrong = []
    for key, readers in expected.items():
        parked_by, reason = parked[key]
        if parked_by not in readers or readers[parked_by] not in reason:
            wrong.append(f"{' or '.join(readers)} parked {_problem_of(swept, key[2])} on "
                         f"{key[1]} as {parked_by!r}: {reason!r}, without "
                         f"{readers.get(parked_by)!r}")  # fmt: skip
    assert wrong == []
    unexpected = [f"{key[0]} parked {_problem_of(swept, key[2])} on {key[1]}: {reason}"
                  for key, (_, reason) in parked.items() if key not in expected]  # fmt: skip
    assert unexpected == []


async def test_no_bad_message_took_effect_and_the_ledger_recorded_the_valid_events(
    swept: Swept,
) -> None:
    await all_parked(swept)
    processed = await processed_ids(swept)
    for bad in swept.bad:
        if bad.event_id is None:
            continue
        internal = bad.subject.startswith(f"{subjects.PREFIX}.evt.")
        for durable, ids in processed.items():
            if durable == LEDGER_DURABLE:  # it holds every valid CloudEvent on the bus
                assert (bad.event_id in ids) == internal, (bad.problem, bad.subject)
            else:
                assert bad.event_id not in ids, (durable, bad.problem, bad.subject)


async def good_events(run: Swept) -> list[CloudEvent]:
    """The events on the bus after the bad ones, once every swept subject has one."""
    internal = {b.subject for b in run.bad if b.subject.startswith(f"{subjects.PREFIX}.evt.")}

    async def after_the_bad() -> list[CloudEvent] | None:
        messages = await stream_messages(
            run.stack.nats_url, subjects.EVENTS_STREAM, subjects.EVENTS_WILDCARD
        )
        events = [parse_event(m.data)[0] for m in messages
                  if m.metadata.sequence.stream > run.last_bad_seq]  # fmt: skip
        seen = {EVENT_MODELS[e.type].subject() for e in events}
        return events if internal <= seen else None

    events = await wait_until(after_the_bad)
    assert events, "a swept subject saw no good message after the bad ones"
    return list(events)


async def test_every_good_message_after_them_is_processed_by_every_reader(swept: Swept) -> None:
    good = await good_events(swept)
    readers = [c for c in swept.consumers if c.stream == subjects.EVENTS_STREAM]

    async def unprocessed() -> list[str]:
        processed = await processed_ids(swept)
        return [
            f"{consumer.durable}: {event.type}"
            for event in good
            for consumer in readers
            if matches(consumer.subject, EVENT_MODELS[event.type].subject())
            and not swept.skips(consumer.service, event.type)
            and event.id not in processed[consumer.durable]
        ]

    async def none_left() -> bool:
        return not await unprocessed()

    await wait_until(none_left)
    assert await unprocessed() == []
    accepted = (await processed_ids(swept))["notify-partner-replies"]
    replies = [reply_event_id(agency, referral, kind) for referral, agency in
               swept.referrals.items() for kind in ReplyKind]  # fmt: skip
    assert sum(r in accepted for r in replies) == 5, "the partners' replies over NATS"


async def test_the_services_keep_running_and_healthy(swept: Swept) -> None:
    assert swept.stack.exited_services() == []
    async with httpx.AsyncClient(timeout=5) as client:
        for name, service in swept.stack.services.items():
            response = await client.get(f"{service.url}/healthz")
            assert response.status_code == 200, (name, response.text)


async def test_audit_counts_every_parked_message(swept: Swept) -> None:
    await all_parked(swept)
    on_stream = len(
        await stream_messages(swept.stack.nats_url, subjects.DLQ_STREAM, subjects.DLQ_WILDCARD)
    )
    auditor = {"Authorization": f"Bearer {swept.stack.secrets()['auditor_token']}"}
    url = f"{swept.stack.services['audit'].url}/v1/parked"

    async def counted() -> dict[str, Any] | None:
        async with httpx.AsyncClient(headers=auditor) as client:
            response = await client.get(url)
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return body if body.get("total") == on_stream else None

    body = await wait_until(counted)
    assert body, f"audit's count of parked messages never reached {on_stream}"
    assert body["by_service"].get("sweep") == 1  # the message with no headers, counted too


async def test_no_reason_or_log_line_repeats_what_the_bad_messages_carried(swept: Swept) -> None:
    for _, reason in (await all_parked(swept)).values():
        assert MARKER not in reason
    for service in swept.stack.services.values():
        assert MARKER not in service.log_file.read_text(), service.name
