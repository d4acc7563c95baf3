"""`rujuk token`: Token akses / access tokens for operators, partners, coordinators and auditors.

These commands talk to intake's schema in PostgreSQL directly (DATABASE_URL, as intake's own
role; its schema provisioned by `rujuk db provision`). Each creation and revocation stages its
token event in intake's outbox in the same transaction; the running intake publishes it, and
the other services' token projections follow.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import asyncpg
import typer

from intake import auth, store
from intake.auth import Role, TokenError
from rujuk_runtime.db import SchemaNotReady, check_migrated
from rujuk_runtime.settings import NoStackFound, url_for_command

T = TypeVar("T")
SCHEMA = "intake"

app = typer.Typer(
    help="Token akses / access tokens for operators, partners, coordinators and auditors",
    no_args_is_help=True,
)

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL [default: $DATABASE_URL, which a running `rujuk up` sets]",
        show_default=False,
    ),
]


@app.callback()
def main() -> None:
    """Token akses / access tokens for operators, partners, coordinators and auditors."""


async def connect(database_url: str) -> asyncpg.Connection:
    """A connection on intake's schema; SchemaNotReady unless every migration is applied."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": SCHEMA})
    try:
        await check_migrated(conn, SCHEMA)
    except BaseException:
        await conn.close()
        raise
    return conn


def _run(
    database_url: str | None, work: Callable[[asyncpg.Connection], Coroutine[Any, Any, T]]
) -> T:
    try:
        url = url_for_command(database_url, "DATABASE_URL", "--database-url")
    except NoStackFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc

    async def go() -> T:
        conn = await connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except SchemaNotReady as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    except (OSError, asyncpg.PostgresError) as exc:
        typer.echo(f"Basis data tidak terjangkau / database error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def create(
    role: Annotated[Role, typer.Option(help="operator | partner | coordinator | auditor | cadre")],
    agency: Annotated[
        str | None, typer.Option(help="The partner's agency id (partners only)")
    ] = None,
    district: Annotated[
        list[str] | None,
        typer.Option(
            help="A district the token serves, BPS code such as 3514 (repeatable; operators, "
            "coordinators and auditors; a cadre names one). For a partner: where its agency is "
            "named, in the directory in force or asked by an open SOP proposal"
        ),
    ] = None,
    area: Annotated[
        list[str] | None,
        typer.Option(
            help="A cadre's kecamatan, or a village of one as KECAMATAN/DESA (repeatable; "
            "cadres only)"
        ),
    ] = None,
    province: Annotated[
        bool,
        typer.Option("--province", help="Province level: every district (instead of --district)"),
    ] = False,
    label: Annotated[str | None, typer.Option(help="Who or what holds it; no secrets")] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Buat token; rahasianya dicetak sekali / create a token; its secret is printed once.

    A partner's agency must be named in the directory of an SOP in force or asked to sign
    off an open SOP proposal (as intake learnt them from routing; in the --district given),
    else nothing is made (exit 2)."""
    try:
        scope = auth.partner_scope(role, district or ())
        served = () if role is Role.PARTNER else district or ()
        districts = auth.check_binding(role, agency, served, province=province)
        areas = auth.check_areas(role, area or ())
    except TokenError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc

    async def checked_and_created(conn: asyncpg.Connection) -> tuple[str, str]:
        if agency is not None:  # a partner: of an agency an SOP in force or proposed names
            auth.check_agency_in_force(
                agency,
                await store.agencies_in_force(conn),
                await store.agencies_asked(conn),
                districts=scope,
            )
        return await store.create_token(
            conn, role, agency_id=agency, districts=districts, label=label, areas=areas or ()
        )

    try:
        token_id, secret = _run(database_url, checked_and_created)
    except TokenError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    bound = f"agency {agency}" if agency else (", ".join(districts) if districts else "province")
    if areas:
        bound += ": " + "; ".join(areas)
    typer.echo(f"token_id: {token_id} ({role.value}; {bound})", err=True)
    typer.echo(
        "Simpan sekarang, tidak akan ditampilkan lagi / keep it now, it is not shown again:",
        err=True,
    )
    typer.echo(secret)  # alone on stdout, so `TOKEN=$(rujuk token create ...)` works


@app.command()
def revoke(
    token_id: Annotated[str, typer.Argument(help="The id `rujuk token list` shows")],
    database_url: DatabaseUrlOption = None,
) -> None:
    """Cabut token / revoke a token: every service refuses it within RUJUK_TOKEN_CACHE_SECONDS
    (default 5) of intake publishing the revocation."""
    if not _run(database_url, lambda conn: store.revoke_token(conn, token_id)):
        typer.echo(f"Token tidak ada / no token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"dicabut / revoked: {token_id}")


@app.command("list")
def list_tokens(database_url: DatabaseUrlOption = None) -> None:
    """Daftar token (tanpa rahasia) / list tokens (never their secrets)."""
    tokens = _run(database_url, store.list_tokens)
    typer.echo(
        f"{'token_id':<18} {'role':<12} {'bound to':<24} {'created':<20} {'revoked':<20} label"
    )
    for t in tokens:
        revoked = t.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if t.revoked_at else "-"
        typer.echo(
            f"{t.token_id:<18} {t.role.value:<12} {t.bound_to:<24} "
            f"{t.created_at:%Y-%m-%d %H:%M:%S}  {revoked:<20} {t.label or ''}"
        )
