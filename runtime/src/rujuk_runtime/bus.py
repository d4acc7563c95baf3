"""NATS JetStream plumbing every service shares: the broker, the streams, the dead-letter queue."""

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.nats import NatsBroker
from faststream.nats.security import NatsNKey, NatsSecurity
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, ServiceUnavailableError

from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE
from rujuk_runtime import nats_headers
from rujuk_runtime.logs import get_logger
from rujuk_runtime.nats_auth import service_inbox_prefix
from rujuk_runtime.settings import ServiceSettings

nats_headers.install()

log = get_logger(__name__)
T = TypeVar("T")

DUPLICATE_WINDOW_SECONDS = 15 * 60
DLQ_REASON_HEADER = "Rujuk-Dlq-Reason"
DLQ_SUBJECT_HEADER = "Rujuk-Original-Subject"
DLQ_SERVICE_HEADER = "Rujuk-Service"
DLQ_CONSUMER_HEADER = "Rujuk-Consumer"
# How long a starting service waits for JetStream to answer (a cluster electing its meta
# leader does not, for a few seconds) as it creates its streams and consumers, before it gives
# up and exits.
JETSTREAM_WAIT_SECONDS = 60.0


def _tls(settings: ServiceSettings) -> ssl.SSLContext | None:
    """For tls:// servers: trust the CA that signed the server's certificate."""
    if not settings.nats_tls_ca_file:
        return None
    return ssl.create_default_context(cafile=settings.nats_tls_ca_file)


def identity(settings: ServiceSettings, name: str) -> dict[str, Any]:
    """How a service introduces itself to NATS (nats-py ``connect`` options): its own nkey
    and inbox prefix (the authorization lets it read replies there only), and the CA it
    trusts for tls:// servers."""
    options: dict[str, Any] = {"name": f"rujuk-{name}"}
    if settings.nats_nkey_seed_file:
        options["nkeys_seed"] = settings.nats_nkey_seed_file
        options["inbox_prefix"] = service_inbox_prefix(name)
    if context := _tls(settings):
        options["tls"] = context
    return options


def make_broker(settings: ServiceSettings, name: str) -> NatsBroker:
    """A broker that reconnects forever: NATS restarting must never strand a service. It
    connects as the service (``identity``), through FastStream's security objects."""
    security: NatsSecurity | None = None
    if settings.nats_nkey_seed_file:
        security = NatsNKey.from_file(settings.nats_nkey_seed_file, ssl_context=_tls(settings))
    elif context := _tls(settings):
        security = NatsSecurity(ssl_context=context)
    return NatsBroker(
        settings.nats_servers(),
        name=f"rujuk-{name}",
        inbox_prefix=service_inbox_prefix(name) if settings.nats_nkey_seed_file else "_INBOX",
        security=security,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=None,  # per-message INFO lines would drown the logs; we log what matters
    )


DAY_SECONDS = 24 * 3600
MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class StreamRetention:
    """How long a stream keeps a message, and the most disk it may take. The reasons for each
    are in docs/operations.md ("Retention: how long each place keeps what")."""

    description: str
    max_age_days: int
    max_bytes: int

    @property
    def max_age_seconds(self) -> int:
        return self.max_age_days * DAY_SECONDS


# Every stream is a way in or a way through, never the record: the ledger (PostgreSQL, kept for
# ever) is. A stream keeps what its readers may still need to catch up on, and no longer (UU PDP
# 27/2022: personal data no longer than its purpose needs). Full, a stream refuses new messages
# (DiscardPolicy.NEW: the outbox keeps them and RujukOutboxStuck fires) rather than drop old
# ones a consumer has not read yet. Together the limits fit, per node, in the 10 GB the shipped
# nats-server configurations give JetStream (tests/unit/test_stream_retention.py).
STREAM_RETENTION: dict[str, StreamRetention] = {
    subjects.EVENTS_STREAM: StreamRetention(
        "Every internal rujuk event (CloudEvents), kept 90 days", 90, 4 * GIB
    ),
    subjects.PARTNER_STREAM: StreamRetention(
        "Partner agencies' feeds and replies, kept 30 days", 30, 2 * GIB
    ),
    subjects.AUDIT_STREAM: StreamRetention(
        "Signed ledger heads, a copy outside the database, kept 400 days", 400, 512 * MIB
    ),
    subjects.REPLAY_STREAM: StreamRetention(
        "History re-published on request, kept a week", 7, 1 * GIB
    ),
    subjects.DLQ_STREAM: StreamRetention(
        "Parked messages with the reason, kept 30 days", 30, 512 * MIB
    ),
}
STREAM_SUBJECTS = {
    subjects.EVENTS_STREAM: subjects.EVENTS_WILDCARD,
    subjects.PARTNER_STREAM: subjects.PARTNER_WILDCARD,
    subjects.AUDIT_STREAM: subjects.AUDIT_WILDCARD,
    subjects.REPLAY_STREAM: subjects.REPLAY_WILDCARD,
    subjects.DLQ_STREAM: subjects.DLQ_WILDCARD,
}


def stream_configs(replicas: int) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=name,
            subjects=[STREAM_SUBJECTS[name]],
            description=retention.description,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            retention=RetentionPolicy.LIMITS,
            max_age=retention.max_age_seconds,
            max_bytes=retention.max_bytes,
            discard=DiscardPolicy.NEW,
        )
        for name, retention in STREAM_RETENTION.items()
    ]


# What JetStream answers while it cannot serve yet (a cluster electing its meta leader, a
# stream or consumer without a leader yet, a server still starting): worth asking again.
NOT_READY = (NatsTimeoutError, NoRespondersError, ServiceUnavailableError)


async def when_jetstream_answers(
    request: Callable[[], Awaitable[T]], what: str, *, wait: float = JETSTREAM_WAIT_SECONDS
) -> T:
    """``request()``, asked again with backoff for up to ``wait`` seconds while JetStream
    cannot answer yet; any other refusal, or still no answer then, is raised."""
    give_up = time.monotonic() + wait
    delay = 0.25
    while True:
        try:
            return await request()
        except NOT_READY as exc:
            if time.monotonic() + delay > give_up:
                raise
            log.warning("JetStream not ready, will retry", what=what,
                        error=type(exc).__name__, retry_in=delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def ensure_streams(
    js: JetStreamContext, replicas: int = 1, *, wait: float = JETSTREAM_WAIT_SECONDS
) -> None:
    """Create rujuk's streams, or bring an existing one up to date (a stream an older rujuk
    made without limits takes its retention here, keeping its messages within them); safe
    from every replica. Waits (``when_jetstream_answers``) while JetStream cannot answer yet,
    ``wait`` seconds for all the streams together."""

    async def add_or_update(config: StreamConfig) -> None:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)

    give_up = time.monotonic() + wait
    for config in stream_configs(replicas):
        await when_jetstream_answers(
            functools.partial(add_or_update, config),
            f"stream {config.name}",
            wait=max(0.0, give_up - time.monotonic()),
        )


def jetstream(broker: NatsBroker) -> JetStreamContext:
    connection: NatsClient = broker.connection
    return connection.jetstream()


def event_headers(event_id: str, traceparent: str | None) -> dict[str, str]:
    headers = {"Nats-Msg-Id": event_id, "Content-Type": CONTENT_TYPE}
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


def consumer_name(message: Msg) -> str | None:
    """The durable consumer a JetStream message came through."""
    try:
        return message.metadata.consumer
    except Exception:  # not from JetStream
        return None


async def park(
    js: JetStreamContext,
    service: str,
    *,
    subject: str,
    data: bytes,
    reason: str,
    message_id: str | None,
    consumer: str | None = None,
) -> None:
    """Put a message the service cannot process on its dead-letter subject, with the reason
    and, when it came through a durable consumer, that consumer's name."""
    headers = {
        DLQ_REASON_HEADER: reason[:1000],
        DLQ_SUBJECT_HEADER: subject,
        DLQ_SERVICE_HEADER: service,
    }
    if consumer:
        headers[DLQ_CONSUMER_HEADER] = consumer
    if message_id:
        # Parking the same redelivered message twice stores it once.
        headers["Nats-Msg-Id"] = f"dlq:{service}:{message_id}"
    await js.publish(subjects.dead_letter(service), data, headers=headers)
    log.warning("message parked", subject=subject, consumer=consumer, reason=reason[:200])
