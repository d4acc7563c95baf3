"""`rujuk audit`: replay a case's history and verify the ledger, straight from PostgreSQL."""

import asyncio
import contextlib
import re
from collections.abc import Coroutine, Mapping
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import typer

from audit import report, store
from audit.chain import HASH_SIZE, ChainVerifier, Entry, VerifyResult
from audit.settings import AuditSettings
from rujuk_contracts.events import CASE_ID_PATTERN

T = TypeVar("T")

_HEX_HASH = re.compile(f"[0-9a-fA-F]{{{2 * HASH_SIZE}}}")

EXIT_FAILED = 1  # the chain does not verify, or the case has no history
EXIT_USAGE = 2  # bad input, or the database cannot be read

app = typer.Typer(
    help="Audit ledger: replay a case, verify the chain. / "
    "Buku besar audit: putar ulang riwayat kasus, verifikasi rantai.",
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL [default: $DATABASE_URL, else the services' default]",
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
    database_url: str, anchors: Mapping[int, bytes] | None = None
) -> VerifyResult:
    """Verify the whole chain, streamed in chunks; stops at the first bad entry."""
    verifier = ChainVerifier(anchors)
    conn = await store.connect(database_url)
    try:
        async with contextlib.aclosing(store.stream_entries(conn)) as chunks:
            async for chunk in chunks:
                if not verifier.feed(chunk):
                    break
    finally:
        await conn.close()
    return verifier.result()


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
    case_id: Annotated[str, typer.Argument(help="The pseudonymous case id, e.g. 3514-…")],
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table for people, json for tools")
    ] = OutputFormat.TABLE,
    timezone: Annotated[
        str, typer.Option("--tz", help="Show times in this IANA time zone")
    ] = "Asia/Jakarta",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Print a case's history in ledger order. / Tampilkan riwayat kasus secara berurutan."""
    if not re.fullmatch(CASE_ID_PATTERN, case_id):
        _fail(f"{case_id!r} is not a case id (like 3514-0123456789) / bukan nomor kasus")
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
    database_url: DatabaseUrlOption = None,
) -> None:
    """Verify the whole hash chain; exit 1 naming the first bad entry. / Verifikasi rantai."""
    try:
        anchors = dict(parse_anchor(text) for text in anchor or [])
    except ValueError as exc:
        _fail(str(exc))
    result = _run(verify_ledger(_database_url(database_url), anchors))
    typer.echo(report.verify_report(result), err=not result.ok)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _database_url(given: str | None) -> str:
    return given or AuditSettings().database_url


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a database read; an unreachable database or a missing ledger is a readable error."""
    try:
        return asyncio.run(work)
    except store.LedgerMissing as exc:
        _fail(str(exc))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _fail(
            f"cannot read the ledger / tidak dapat membaca buku besar: {type(exc).__name__}: {exc}"
        )


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(EXIT_USAGE)
