"""`rujuk audit`: replay a case, verify the ledger and its checkpoints, export and check
bundles, re-publish history; straight from PostgreSQL (and NATS for replay-bus)."""

import asyncio
import re
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import httpx
import nats
import typer

from audit import bundle, heads, note, report, signing, store, tree, witness_server
from audit import copies as copies_module
from audit.chain import HASH_SIZE, Entry, VerifyResult
from audit.export import bundle_text, export_bundle
from audit.keys import DEFAULT_ORIGIN_PREFIX, trusted_public_key
from audit.replay import ReplayRequestError, ReplayResult, replay_to_bus
from audit.settings import AuditSettings
from audit.verification import HeadPolicy, verify_connection
from rujuk_contracts import subjects
from rujuk_contracts.envelope import SUBJECT_PATTERN
from rujuk_contracts.events import CASE_ID_PATTERN, SOP_ID_PATTERN
from rujuk_runtime.settings import NoStackFound, url_for_command

T = TypeVar("T")

_HEX_HASH = re.compile(f"[0-9a-fA-F]{{{2 * HASH_SIZE}}}")

EXIT_FAILED = 1  # the chain does not verify, or the case has no history
EXIT_USAGE = 2  # bad input, or the database cannot be read

app = typer.Typer(
    help="Audit ledger: replay a case, verify the chain and checkpoints, export evidence. / "
    "Buku besar audit: putar ulang riwayat kasus, verifikasi rantai, ekspor bukti.",
    no_args_is_help=True,
)


PublicKeyOption = Annotated[
    str | None,
    typer.Option(
        "--public-key",
        help="Trusted checkpoint public key: base64, or a file "
        "[default: $AUDIT_PUBLIC_KEY, else the signing key's]",
        show_default=False,
    ),
]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL [default: $DATABASE_URL, which a running `rujuk up` sets]",
        show_default=False,
    ),
]


async def case_history(database_url: str, case_id: str) -> list[Entry]:
    """Every ledger entry of one case, in order."""
    conn = await store.connect(database_url)
    try:
        return await store.case_entries(conn, case_id)
    finally:
        await conn.close()


async def verify_ledger(
    database_url: str,
    anchors: Mapping[int, bytes] | None = None,
    *,
    public_key: bytes | None = None,
    policy: HeadPolicy | None = None,
) -> VerifyResult:
    """Verify the whole chain and its tree, streamed, every signed head (the database's and
    ``policy.copies``) and every old checkpoint. ``public_key`` is the key they must be
    signed with."""
    conn = await store.connect(database_url)
    try:
        return await verify_connection(conn, anchors, public_key=public_key, policy=policy)
    finally:
        await conn.close()


async def gather_heads(
    nats_url: str | None,
    witness_urls: list[str],
    files: list[Path],
    origin: str | None,
    database_url: str,
) -> tuple[list[heads.HeadCopy], list[str]]:
    """Head copies from the stream, the witnesses and files; and where they were looked for."""
    copies = copies_module.file_heads(files)
    sources = [f"file {path}" for path in files]
    if nats_url is not None:
        try:
            copies += await copies_module.stream_heads(nats_url)
            sources.append(copies_module.STREAM_SOURCE)
        except (OSError, TimeoutError, nats.errors.Error) as exc:  # said, not hidden
            reason = f"{type(exc).__name__}: {exc}"[:200]
            sources.append(f"{copies_module.STREAM_SOURCE} (NOT READ: {reason})")
            typer.echo(
                f"Peringatan / warning: the heads on {subjects.AUDIT_STREAM} were not read: "
                f"{reason}",
                err=True,
            )
    if witness_urls:
        if origin is None:  # the witnesses are asked by origin: the log's, as stored
            conn = await store.connect(database_url)
            try:
                latest = await store.latest_head(conn)
            finally:
                await conn.close()
            origin = latest.origin if latest else None
        if origin is not None:
            copies += await copies_module.witness_heads(witness_urls, origin)
            sources += [f"witness {url}" for url in witness_urls]
    return copies, sources


async def export_case(database_url: str, case_id: str) -> dict[str, Any] | None:
    """The bundle of one case (see audit.bundle), or None if the case has no entries."""
    conn = await store.connect(database_url)
    try:
        return await export_bundle(conn, case_id)
    finally:
        await conn.close()


async def replay_onto_bus(
    database_url: str,
    nats_url: str,
    *,
    case_id: str | None,
    since: datetime | None,
    until: datetime | None,
    request_id: str | None = None,
) -> ReplayResult:
    conn = await store.connect(database_url)
    bus = await nats.connect(nats_url, name="rujuk-audit-cli", connect_timeout=5)
    try:
        return await replay_to_bus(
            conn, bus.jetstream(), case_id=case_id, since=since, until=until, request_id=request_id
        )
    finally:
        await bus.close()
        await conn.close()


def parse_anchor(text: str) -> tuple[int, bytes]:
    """``SEQ:HEX`` as printed by ``verify`` -> (seq, hash); ValueError says what is wrong."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or not _HEX_HASH.fullmatch(digest):
        raise ValueError(
            f"anchor {text!r} must be SEQ:HASH with a {2 * HASH_SIZE}-digit hex hash, "
            "as printed by `rujuk audit verify`"
        )
    return int(seq), bytes.fromhex(digest)


@app.command()
def replay(
    case_id: Annotated[
        str,
        typer.Argument(
            help="The pseudonymous case id, e.g. 3514-…, or an SOP id (sop-3513): how the SOP "
            "in force came to be"
        ),
    ],
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table for people, json for tools")
    ] = OutputFormat.TABLE,
    timezone: Annotated[
        str, typer.Option("--tz", help="Show times in this IANA time zone")
    ] = "Asia/Jakarta",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Print a case's (or an SOP's) history in ledger order. / Tampilkan riwayat kasus (atau
    SOP) secara berurutan."""
    if not any(re.fullmatch(p, case_id) for p in (CASE_ID_PATTERN, SOP_ID_PATTERN)):
        _fail(
            f"{case_id!r} is not a case id (like 3514-0123456789) or an SOP id (like sop-3513) / "
            "bukan nomor kasus atau id SOP"
        )
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"unknown time zone {timezone!r} / zona waktu tidak dikenal")
    entries = _run(case_history(_database_url(database_url), case_id))
    if not entries:
        typer.echo(report.no_history(case_id), err=True)
        raise typer.Exit(EXIT_FAILED)
    steps = report.history(entries, tz)
    if output is OutputFormat.JSON:
        typer.echo(report.render_json(case_id, steps))
    else:
        typer.echo(report.render_table(case_id, steps, tz))


@app.command()
def verify(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            "--anchor",
            help="SEQ:HASH recorded from an earlier verify; catches removed newest entries",
        ),
    ] = None,
    public_key: PublicKeyOption = None,
    witness_key: Annotated[
        list[str] | None,
        typer.Option(
            "--witness-key",
            help="A witness's verifier key (name+id+key); the newest head needs a quorum",
        ),
    ] = None,
    quorum: Annotated[
        int, typer.Option(help="Cosignatures required of the named witnesses [default: all]")
    ] = 0,
    witness_url: Annotated[
        list[str] | None,
        typer.Option("--witness-url", help="A witness's monitoring URL prefix: read its copy"),
    ] = None,
    head_file: Annotated[
        list[Path] | None, typer.Option("--head-file", help="A signed head an auditor kept")
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(help="The log's origin [default: $AUDIT_LOG_ORIGIN, else the heads']"),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between heads while entries arrive "
            "[default: $AUDIT_CHECKPOINT_INTERVAL_SECONDS]",
            show_default=False,
        ),
    ] = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url",
            help="Read the heads on RUJUK_AUDIT here [default: $NATS_URL]",
            show_default=False,
        ),
    ] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Do not read the RUJUK_AUDIT stream")
    ] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Verify the chain, its Merkle tree, every signed head (database, stream, witnesses) and
    checkpoint; exit 1 naming the first failure. / Verifikasi rantai, pohon dan kepala pohon."""
    settings = AuditSettings()
    try:
        anchors = dict(parse_anchor(text) for text in anchor or [])
        trusted = trusted_public_key(settings, public_key)
        witnesses = [note.parse_vkey(text) for text in witness_key or []]
    except ValueError as exc:
        _fail(str(exc))
    if quorum > len(witnesses):
        _fail(f"--quorum {quorum} is more than the {len(witnesses)} witnesses named")
    if trusted is None:
        typer.echo(
            "Peringatan / warning: no trusted public key (--public-key or AUDIT_PUBLIC_KEY); "
            "heads and checkpoints are checked only against the key stored beside them",
            err=True,
        )
    stream_url = None
    if not no_stream:
        try:
            stream_url = url_for_command(nats_url, "NATS_URL", "--nats-url")
        except NoStackFound:
            typer.echo(
                "Peringatan / warning: no NATS_URL: the heads on the RUJUK_AUDIT stream are not "
                "read (give --nats-url, or --no-stream)",
                err=True,
            )
    url = _database_url(database_url)
    origin = origin or settings.log_origin
    copies, sources = _run(
        gather_heads(stream_url, witness_url or [], head_file or [], origin, url)
    )
    policy = HeadPolicy(
        copies=copies,
        sources=sources,
        origin=origin,
        witnesses=witnesses,
        quorum=quorum,
        interval=timedelta(seconds=interval or settings.checkpoint_interval_seconds),
    )
    result = _run(verify_ledger(url, anchors, public_key=trusted, policy=policy))
    typer.echo(report.verify_report(result), err=not result.ok)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def keygen(
    origin: Annotated[
        str | None, typer.Option(help="The log's origin, to print its verifier key (vkey)")
    ] = None,
) -> None:
    """Print a new Ed25519 key pair for signed heads. / Buat pasangan kunci baru."""
    key = signing.generate()
    typer.echo(f"AUDIT_SIGNING_KEY={key.private_base64()}")
    typer.echo(f"AUDIT_PUBLIC_KEY={key.public_base64()}")
    typer.echo(f"key id: {key.key_id}")
    name = origin or f"{DEFAULT_ORIGIN_PREFIX}{key.key_id}"
    typer.echo(f"AUDIT_LOG_ORIGIN={name}")
    typer.echo(f"log vkey (for witnesses): {key.signer(name).verifier(note.ED25519).vkey()}")
    typer.echo(
        "Simpan kunci privat secara rahasia; bagikan kunci publik ke auditor. / "
        "Keep the private key secret; give the public key to auditors.",
        err=True,
    )


@app.command()
def export(
    case_id: Annotated[str, typer.Argument(help="The case id (or any event subject)")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here [default: stdout]")
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Write a case's evidence bundle for offline checking. / Ekspor bundel bukti kasus."""
    if not re.fullmatch(SUBJECT_PATTERN, case_id):
        _fail(f"{case_id!r} is not a case id / bukan nomor kasus")
    document = _run(export_case(_database_url(database_url), case_id))
    if document is None:
        typer.echo(report.no_history(case_id), err=True)
        raise typer.Exit(EXIT_FAILED)
    text = bundle_text(document)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(
            f"Bundel ditulis / bundle written: {output} ({len(document['entries'])} entries "
            "of the case, each with its inclusion proof)",
            err=True,
        )
    if document["head"] is None or document["entries_after_head"]:
        typer.echo(
            "Peringatan / warning: entries of the case are not under a signed head yet; export "
            "again after the next head",
            err=True,
        )


@app.command("verify-bundle")
def verify_bundle_command(
    file: Annotated[Path, typer.Argument(help="A bundle written by `rujuk audit export`")],
    public_key: Annotated[
        str, typer.Option("--public-key", help="The trusted log key: base64, or a file")
    ],
    witness_key: Annotated[
        list[str] | None,
        typer.Option("--witness-key", help="A witness's verifier key; its cosignature needed"),
    ] = None,
    quorum: Annotated[int, typer.Option(help="Witnesses required [default: all named]")] = 0,
) -> None:
    """Check an export bundle offline, no database needed. / Periksa bundel tanpa basis data."""
    try:
        trusted = signing.parse_public_key(public_key)
        witnesses = [note.parse_vkey(text) for text in witness_key or []]
        result = bundle.verify_bundle(
            file.read_bytes(), trusted, witnesses=witnesses, quorum=quorum
        )
    except (OSError, ValueError) as exc:
        _fail(f"cannot check the bundle / bundel tidak dapat diperiksa: {exc}")
    typer.echo(report.bundle_report(result), err=not result.ok)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("replay-bus")
def replay_bus(
    case_id: Annotated[str | None, typer.Option("--case", help="Only this case")] = None,
    since: Annotated[
        datetime | None, typer.Option("--from", help="Event time from (inclusive, UTC if naive)")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option("--to", help="Event time until (exclusive, UTC if naive)")
    ] = None,
    request_id: Annotated[str | None, typer.Option(help="Reuse a request id (idempotent)")] = None,
    nats_url: Annotated[
        str | None, typer.Option("--nats-url", help="[default: $NATS_URL]", show_default=False)
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Re-publish history in ledger order to rujuk.replay.<request>.… / Terbitkan ulang."""
    if case_id is not None and not re.fullmatch(SUBJECT_PATTERN, case_id):
        _fail(f"{case_id!r} is not a case id / bukan nomor kasus")
    try:
        result = _run(
            replay_onto_bus(
                _database_url(database_url),
                _nats_url(nats_url),
                case_id=case_id,
                since=_utc(since),
                until=_utc(until),
                request_id=request_id,
            )
        )
    except ReplayRequestError as exc:
        _fail(str(exc))
    typer.echo(
        f"Diterbitkan ulang / re-published {result.count} events to {result.subject_prefix}.> "
        f"(request id {result.request_id})"
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _database_url(given: str | None) -> str:
    try:
        return url_for_command(given, "DATABASE_URL", "--database-url")
    except NoStackFound as exc:
        _fail(str(exc))


def _nats_url(given: str | None) -> str:
    try:
        return url_for_command(given, "NATS_URL", "--nats-url")
    except NoStackFound as exc:
        _fail(str(exc))


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a database read; an unreachable database or a missing ledger is a readable error."""
    try:
        return asyncio.run(work)
    except store.LedgerMissing as exc:
        _fail(str(exc))
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        nats.errors.Error,
        httpx.HTTPError,
    ) as exc:
        _fail(
            f"cannot read the ledger / tidak dapat membaca buku besar: {type(exc).__name__}: {exc}"
        )


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(EXIT_USAGE)


@app.command("witness")
def witness_command(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. dp3ak.example/witness")],
    key_file: Annotated[
        Path, typer.Option(help="Its Ed25519 private key (created, mode 0600, if missing)")
    ],
    state: Annotated[Path, typer.Option(help="Its state file: the last head cosigned per log")],
    log: Annotated[
        list[str], typer.Option("--log", help="A log's verifier key (its origin+id+key)")
    ],
    host: Annotated[str, typer.Option(help="Listen on this address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen on this port")] = 8089,
) -> None:
    """Run a witness (c2sp.org/tlog-witness): cosign only heads consistent with the last
    one, refuse rollbacks and forks. / Jalankan saksi: tanda tangani kepala pohon yang
    konsisten saja."""
    import uvicorn  # only this command serves

    try:
        key = signing.load_or_create_key_file(key_file)
        signer = key.signer(name)
        logs = witness_server.log_keys(log)
        node = witness_server.Witness(signer, logs, state)
    except (OSError, ValueError) as exc:
        _fail(f"cannot start the witness / saksi tidak dapat dimulai: {exc}")
    typer.echo(
        f"Saksi / witness {name} for {', '.join(sorted(logs))}; its verifier key: "
        f"{signer.verifier(note.COSIGNATURE_V1).vkey()}",
        err=True,
    )
    uvicorn.run(witness_server.create_app(node), host=host, port=port, log_level="warning")


@app.command("migrate-tree")
def migrate_tree(
    public_key: PublicKeyOption = None, database_url: DatabaseUrlOption = None
) -> None:
    """Build the Merkle tree over a ledger from before it, after verifying its chain.
    / Bangun pohon Merkle atas buku besar lama setelah rantainya terverifikasi."""
    try:
        trusted = trusted_public_key(AuditSettings(), public_key)
    except ValueError as exc:
        _fail(str(exc))

    async def switch() -> tree.TreeSwitch:
        conn = await store.connect(_database_url(database_url))
        try:
            return await tree.ensure_tree(conn, public_key=trusted)
        finally:
            await conn.close()

    try:
        done = _run(switch())
    except tree.TreeSwitchRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_FAILED) from exc
    typer.echo(
        f"Pohon Merkle / Merkle tree: {done.size} entries covered, {done.built} added now "
        f"(chain verified against {done.checkpoints} signed checkpoints)"
    )
