"""`rujuk backup` and `rujuk restore`: the database and the bus, taken as one, and put back.

A backup is a folder: ``postgres.dump`` (pg_dump's custom format), ``nats/<STREAM>.snapshot``
(JetStream's own snapshot of each stream, its consumers included, ``rujuk.snapshots``) and
``manifest.json`` (what was taken, when, the consumers' positions, each file's sha256).

Taking it while rujuk runs, in this order (docs/operations.md, "Backup and restore"):
1. ``RUJUK_AUDIT``, the signed heads: every head in it is then covered by the ledger below.
2. Every durable consumer's position (its ack floor): what each service had surely processed,
   and committed, before the database's snapshot.
3. A repeatable-read snapshot of the database is exported (``pg_export_snapshot``), and at
   once every other stream is snapshotted; then ``pg_dump --snapshot`` dumps exactly that
   database snapshot. The database and the streams are so taken within milliseconds.

Restoring, into a fresh NATS and an empty database, with the services stopped:
1. The streams, then the database (``pg_restore``, then provisioning: roles, ownership, grants).
2. Each service's consumers start again at the position recorded in step 2: what they had
   processed after it is processed again, and their inbox (``processed_events``) skips what
   the database already holds.
3. Events the database's outboxes still hold but which reached ``RUJUK_EVENTS`` before the
   streams' snapshot are taken out of the outboxes: a restored stream no longer recognises a
   message id it stored before, so they would be stored twice.
4. Partners' feed messages notify's restored database does not have as sent (published after
   its snapshot, or just before it with the send not yet recorded), which no partner has
   acknowledged, are taken out of the restored ``RUJUK_PARTNER``: notify sends them again,
   once.
"""

import asyncio
import hashlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from rujuk.snapshots import restore_snapshot, save_snapshot
from rujuk_contracts import subjects
from rujuk_runtime.bus import STREAM_RETENTION
from rujuk_runtime.embedded import pg_binary
from rujuk_runtime.nats_auth import SERVICE_GRANTS, partner_durable
from rujuk_runtime.private_files import write_private
from rujuk_runtime.provision import provision
from rujuk_runtime.roles import SCHEMAS, without_password

FORMAT = "rujuk-backup/1"
MANIFEST = "manifest.json"
DUMP = "postgres.dump"
# An outbox row in the dump whose event reached the stream just before the database's snapshot
# (published, the relay's delete not yet committed) is found in this much of the stream before
# the backup began; more is only more to read.
OUTBOX_SCAN_MARGIN = timedelta(minutes=5)
INTERNAL_CONSUMERS = frozenset(
    (consumer.stream, consumer.durable)
    for grant in SERVICE_GRANTS.values()
    for consumer in grant.consumers
)
STREAMS = tuple(STREAM_RETENTION)


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says what to do."""


@dataclass
class RestoreReport:
    """What a restore did, for the person who runs it (and the tests)."""

    streams: dict[str, int] = field(default_factory=dict)  # stream -> messages restored
    consumers_rewound: dict[str, int] = field(default_factory=dict)  # durable -> first seq
    events_no_longer_in_stream: dict[str, int] = field(default_factory=dict)  # durable -> count
    outbox_rows_already_published: int = 0
    partner_messages_withdrawn: int = 0
    partner_messages_acknowledged_after_backup: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


# --- taking a backup ------------------------------------------------------------------------


async def take_backup(database_url: str, nats_url: str, folder: Path) -> dict[str, Any]:
    """Back up the database (the administrator's URL) and every rujuk stream (the operator's
    NATS URL) into ``folder``, which must not exist or be empty. Returns the manifest."""
    _new_private_folder(folder)
    (folder / "nats").mkdir(mode=0o700)
    started = datetime.now(UTC)
    clock = time.monotonic()
    seconds: dict[str, float] = {}
    nc = await _connect(nats_url, "rujuk-backup")
    try:
        js = nc.jetstream()
        present = [name for name in STREAMS if await _stream_exists(js, name)]
        streams: dict[str, dict[str, Any]] = {}
        if subjects.AUDIT_STREAM in present:  # before the database: its heads are all covered
            streams[subjects.AUDIT_STREAM] = await _snapshot(nc, folder, subjects.AUDIT_STREAM)
        positions = await _consumer_positions(js, present)
        conn = await asyncpg.connect(
            database_url, server_settings={"application_name": "rujuk-backup"}
        )
        try:
            transaction = conn.transaction(isolation="repeatable_read", readonly=True)
            await transaction.start()
            exported = await conn.fetchrow(
                "SELECT pg_export_snapshot() AS id, clock_timestamp() AS at, "
                "current_database() AS database"
            )
            assert exported is not None
            partner_last = await _last_seq(js, subjects.PARTNER_STREAM)
            others = [name for name in present if name != subjects.AUDIT_STREAM]
            taken = await asyncio.gather(*(_snapshot(nc, folder, name) for name in others))
            streams.update(zip(others, taken, strict=True))
            seconds["nats"] = time.monotonic() - clock
            dumped = time.monotonic()
            await asyncio.to_thread(_pg_dump, database_url, exported["id"], folder / DUMP)
            seconds["postgres"] = time.monotonic() - dumped
            await transaction.rollback()
        finally:
            await conn.close()
    finally:
        await nc.close()
    manifest = {
        "format": FORMAT,
        "started_at": started.isoformat(),
        "database": {
            "name": exported["database"],
            "file": DUMP,
            "snapshot_at": exported["at"].isoformat(),
            **_file_facts(folder / DUMP),
        },
        "streams": {
            name: {
                "file": f"nats/{name}.snapshot",
                **meta,
                **_file_facts(_snapshot_file(folder, name)),
            }
            for name, meta in streams.items()
        },
        "consumers": positions,
        "partner_last_seq_at_snapshot": partner_last,
        "seconds": {**seconds, "total": time.monotonic() - clock},
    }
    write_private(folder / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


async def _connect(nats_url: str, name: str) -> NatsClient:
    """As the operator; a tls:// server is trusted by the CA in NATS_TLS_CA_FILE (the
    keyring's ``public/ca.pem``), as the services trust it."""
    options: dict[str, Any] = {"name": name, "connect_timeout": 5}
    if ca_file := os.environ.get("NATS_TLS_CA_FILE"):
        options["tls"] = ssl.create_default_context(cafile=ca_file)
    return await nats.connect(nats_url, **options)


def _new_private_folder(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise BackupError(
            f"{folder} tidak kosong / is not empty: give a new folder for each backup"
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)


def _snapshot_file(folder: Path, stream: str) -> Path:
    return folder / "nats" / f"{stream}.snapshot"


async def _snapshot(nc: NatsClient, folder: Path, stream: str) -> dict[str, Any]:
    return await save_snapshot(nc, stream, _snapshot_file(folder, stream))


async def _stream_exists(js: JetStreamContext, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except NotFoundError:
        return False
    return True


async def _last_seq(js: JetStreamContext, stream: str) -> int | None:
    try:
        return int((await js.stream_info(stream)).state.last_seq)
    except NotFoundError:
        return None


async def _consumer_positions(js: JetStreamContext, streams: list[str]) -> list[dict[str, Any]]:
    """Each durable consumer's ack floor: every message at or below it was processed, and
    its effects committed, before this moment."""
    positions = []
    for stream in streams:
        for info in await js.consumers_info(stream):
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            positions.append({"stream": stream, "durable": info.name, "ack_floor": floor or 0})
    return positions


def _pg_dump(database_url: str, snapshot: str, path: Path) -> None:
    address, env = _libpq(database_url)
    command = [str(pg_binary("pg_dump")), "--format=custom", f"--snapshot={snapshot}",
               f"--file={path}", f"--dbname={address}"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    path.chmod(0o600)


def _libpq(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying the password (never on a
    command line, where `ps` would show it)."""
    password = urlsplit(database_url).password
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = unquote(password)
    return without_password(database_url), env


def _file_facts(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


# --- restoring ------------------------------------------------------------------------------


async def restore_backup(
    folder: Path, database_url: str, nats_url: str, passwords: Mapping[str, str]
) -> RestoreReport:
    """Restore the backup in ``folder`` into an empty database (the administrator's URL) and a
    NATS without rujuk's streams (the operator's URL), with rujuk's services stopped.
    ``passwords``: each service role's password, as `rujuk db provision` takes them."""
    manifest = read_manifest(folder)
    report = RestoreReport()
    clock = time.monotonic()
    nc = await _connect(nats_url, "rujuk-restore")
    try:
        js = nc.jetstream()
        await _refuse_a_used_bus(js, manifest)
        await _refuse_a_used_database(database_url)
        for name, meta in manifest["streams"].items():
            state = await restore_snapshot(nc, name, meta, folder / meta["file"])
            report.streams[name] = int(state.get("messages", 0))
        report.seconds["nats"] = time.monotonic() - clock
        started = time.monotonic()
        await asyncio.to_thread(_pg_restore, database_url, folder / DUMP)
        await provision(database_url, passwords)
        report.seconds["postgres"] = time.monotonic() - started
        await _take_published_out_of_outboxes(js, database_url, manifest, report)
        await _rewind_service_consumers(js, manifest, report)
        await _withdraw_partner_messages_sent_again(js, database_url, manifest, report)
    finally:
        await nc.close()
    report.seconds["total"] = time.monotonic() - clock
    return report


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, once every file it names has its recorded size and sha256."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder / MANIFEST}: not a rujuk backup ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{folder}: format {manifest.get('format')!r}, expected {FORMAT}")
    files = [manifest["database"], *manifest["streams"].values()]
    for entry in files:
        path = folder / entry["file"]
        if not path.exists() or _file_facts(path) != {
            "bytes": entry["bytes"],
            "sha256": entry["sha256"],
        }:
            raise BackupError(f"{path}: missing or changed since the backup (sha256 differs)")
    return manifest


async def _refuse_a_used_bus(js: JetStreamContext, manifest: dict[str, Any]) -> None:
    there = [name for name in manifest["streams"] if await _stream_exists(js, name)]
    if there:
        raise BackupError(
            f"NATS sudah punya / already has {', '.join(there)}: restore into a fresh NATS, "
            "with rujuk's services stopped (or remove those streams first)"
        )


async def _refuse_a_used_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ANY($1::text[])",
            list(SCHEMAS),
        )
    finally:
        await conn.close()
    if tables:
        raise BackupError(
            "basis data tidak kosong / the database already holds rujuk's tables: restore into "
            "an empty database (createdb), with rujuk's services stopped"
        )


def _pg_restore(database_url: str, dump: Path) -> None:
    """Into the empty database as the administrator; owners and grants are provisioning's
    (the dump's roles are named after the database it came from, which may differ)."""
    address, env = _libpq(database_url)
    command = [str(pg_binary("pg_restore")), "--no-owner", "--no-privileges",
               "--single-transaction", "--exit-on-error", f"--dbname={address}",
               str(dump)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[:500]}")


async def _scan(
    js: JetStreamContext, stream: str, *, since: datetime | None = None, after_seq: int = 0
) -> list[tuple[int, str, dict[str, str]]]:
    """(sequence, subject, headers) of the messages stored since ``since`` / after
    ``after_seq``, read by an ephemeral consumer that takes headers only."""
    last = await _last_seq(js, stream)
    if not last or last <= after_seq:
        return []
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        headers_only=True,
        deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_time=since,
        opt_start_seq=None if since else after_seq + 1,
        inactive_threshold=60.0,
    )
    subscription = await js.pull_subscribe(
        subjects.EVENTS_WILDCARD if stream == subjects.EVENTS_STREAM else ">",
        durable=None,
        stream=stream,
        config=config,
    )
    found: list[tuple[int, str, dict[str, str]]] = []
    try:
        seen = after_seq
        while seen < last:
            try:
                messages = await subscription.fetch(500, timeout=2)
            except TimeoutError:
                break  # the rest was removed meanwhile
            for message in messages:
                seen = message.metadata.sequence.stream
                found.append((seen, message.subject, dict(message.headers or {})))
    finally:
        await subscription.unsubscribe()
    return found


async def _take_published_out_of_outboxes(
    js: JetStreamContext, database_url: str, manifest: dict[str, Any], report: RestoreReport
) -> None:
    since = datetime.fromisoformat(manifest["started_at"]) - OUTBOX_SCAN_MARGIN
    scanned = await _scan(js, subjects.EVENTS_STREAM, since=since)
    ids = sorted({headers["Nats-Msg-Id"] for _, _, headers in scanned if "Nats-Msg-Id" in headers})
    if not ids:
        return
    conn = await asyncpg.connect(database_url)
    try:
        schemas = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox' "
            "AND table_schema = ANY($1::text[])",
            list(SCHEMAS),
        )
        for row in schemas:
            status = await conn.execute(
                f'DELETE FROM "{row["table_schema"]}".outbox WHERE event_id = ANY($1::text[])',  # noqa: S608
                ids,
            )
            report.outbox_rows_already_published += int(status.split()[-1])
    finally:
        await conn.close()


async def _rewind_service_consumers(
    js: JetStreamContext, manifest: dict[str, Any], report: RestoreReport
) -> None:
    """Each service's consumer starts again after its ack floor at the backup; one made after
    the floors were read is removed (its service makes it again, reading from the start)."""
    floors = {(p["stream"], p["durable"]): int(p["ack_floor"]) for p in manifest["consumers"]}
    for stream in manifest["streams"]:
        first = int((await js.stream_info(stream)).state.first_seq)
        for info in await js.consumers_info(stream):
            if (stream, info.name) not in INTERNAL_CONSUMERS:
                continue  # a partner's feed: where the partner had read to
            await js.delete_consumer(stream, info.name)
            floor = floors.get((stream, info.name))
            if floor is None:
                continue
            start = max(floor + 1, first)
            if floor + 1 < first:
                report.events_no_longer_in_stream[info.name] = first - (floor + 1)
            config = info.config
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start
            config.opt_start_time = None
            await js.add_consumer(stream, config=config)
            report.consumers_rewound[info.name] = start


async def _withdraw_partner_messages_sent_again(
    js: JetStreamContext, database_url: str, manifest: dict[str, Any], report: RestoreReport
) -> None:
    """A feed message that notify's restored database does not record as sent is sent again by
    notify: one stored after the database's snapshot, or a referral whose NATS send the
    database still has pending (published just before the snapshot, recorded just after).
    Those no partner has acknowledged go, so each partner gets each once; one a partner
    acknowledged in that instant may reach it twice, with the same id, which partners
    deduplicate on (docs/partners.md)."""
    after = manifest.get("partner_last_seq_at_snapshot")
    if after is None or subjects.PARTNER_STREAM not in manifest["streams"]:
        return
    since = datetime.fromisoformat(manifest["started_at"]) - OUTBOX_SCAN_MARGIN
    feed = [
        (seq, subject, headers.get("Nats-Msg-Id", ""))
        for seq, subject, headers in await _scan(js, subjects.PARTNER_STREAM, since=since)
        if subject.split(".")[3:4] == ["out"]
    ]
    referrals = [i for seq, subject, i in feed if seq <= after and subject.endswith(REFERRAL)]
    unsent = await _referrals_notify_sends_again(database_url, referrals)
    floors: dict[str, int] = {}
    for info in await js.consumers_info(subjects.PARTNER_STREAM):
        floors[info.name] = info.ack_floor.stream_seq if info.ack_floor else 0
    for seq, subject, message_id in feed:
        if seq <= int(after) and message_id not in unsent:
            continue  # notify's database has it sent: it is not sent again
        if seq <= floors.get(partner_durable(subject.split(".")[2]), 0):
            report.partner_messages_acknowledged_after_backup += 1
            continue
        await js.delete_msg(subjects.PARTNER_STREAM, seq)
        report.partner_messages_withdrawn += 1


REFERRAL = ".out.referral.requested"


async def _referrals_notify_sends_again(database_url: str, event_ids: list[str]) -> set[str]:
    """Of these referral events on partners' feeds, those notify's restored database has no
    delivery for, or a NATS send still pending: notify publishes them (again)."""
    if not event_ids:
        return set()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT d.event_id, bool_or(s.channel = 'nats' AND s.state = 'pending') AS pending "
            "FROM notify.deliveries d LEFT JOIN notify.sends s USING (referral_id) "
            "WHERE d.event_id = ANY($1::text[]) GROUP BY d.event_id",
            event_ids,
        )
    finally:
        await conn.close()
    recorded = {row["event_id"]: bool(row["pending"]) for row in rows}
    return {i for i in event_ids if recorded.get(i, True)}
