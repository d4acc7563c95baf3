"""The `rujuk` command: run the system locally, the demo, and the auditors' tools."""

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import typer

from audit.cli import app as audit_app
from intake.cli import app as token_app
from notify.cli import app as partner_app
from routing.cli import app as sop_app
from rujuk.ports import PortBook
from rujuk.stack import Stack, StackError, running_stack_env
from rujuk.supervise import METRICS_URL, start_supervised
from rujuk_runtime.embedded import EmbeddedPostgres
from rujuk_runtime.logs import configure_logging
from rujuk_runtime.nats_auth import NatsKeyring
from rujuk_runtime.provision import ProvisionError, provision
from rujuk_runtime.roles import SCHEMAS, RolePlanError
from rujuk_runtime.settings import systemd_credentials

STATE_FOLDER = Path(".rujuk")

app = typer.Typer(
    help="rujuk: referral system for reports of violence against women and children.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print local variables: they may hold secrets
)
app.add_typer(audit_app, name="audit", help="Buku besar audit / the audit ledger")
app.add_typer(sop_app, name="sop")
app.add_typer(token_app, name="token")
app.add_typer(partner_app, name="partner")
nats_app = typer.Typer(help="Bus NATS / the NATS bus: credentials", no_args_is_help=True)
app.add_typer(nats_app, name="nats")


db_app = typer.Typer(
    help="Basis data / the PostgreSQL database: roles, schemas, migrations", no_args_is_help=True
)
app.add_typer(db_app, name="db")

# The service whose PostgreSQL role a command acts as against the stack `rujuk up` runs.
# `rujuk partner` acts as notify: it derives partners' webhook secrets from notify's key.
DATABASE_ROLE_OF_COMMAND = {"token": "intake", "audit": "audit", "partner": "notify"}


@app.callback()
def use_running_stack(ctx: typer.Context) -> None:
    """Commands that need the servers use those of `rujuk up` when it runs and none are set;
    in PostgreSQL, as the role of the service they act for, never as the administrator.
    Secrets systemd hands over as credentials (files named as their variables) come first."""
    for name, value in systemd_credentials().items():  # under systemd: deploy/systemd
        os.environ[name] = value
    acting_as = DATABASE_ROLE_OF_COMMAND.get(ctx.invoked_subcommand or "")
    for name, value in running_stack_env(STATE_FOLDER / "up", acting_as).items():
        os.environ.setdefault(name, value)


@app.command()
def up(
    folder: Path = typer.Option(STATE_FOLDER / "up", help="Where servers keep data and logs"),
) -> None:
    """Start NATS, PostgreSQL, the four services and the console, and keep them running (a
    process that exits is started again on its port); Ctrl-C stops everything. Each listens
    on the port of the last run from this folder (ports.json), else on its default (8081-8085,
    NATS 4322, PostgreSQL 5532) or the port its variable sets, where free."""
    configure_logging("rujuk", "WARNING")  # what provisioning logs, the summary below says
    stack = Stack(folder, ports=PortBook(folder, say=lambda line: typer.echo(line, err=True)))
    try:
        supervisor = start_supervised(stack)
    except StackError as exc:
        typer.echo(f"Gagal menyalakan / could not start: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"NATS        {stack.nats_public_url}")
    typer.echo(
        f"PostgreSQL  {stack.database_address}   (each service its own role; passwords in "
        f"{stack.folder / 'dev-secrets.json'})"
    )
    for name, service in stack.services.items():
        typer.echo(f"{name:<11} {service.url}   log: {service.log_file}")
    typer.echo(f"metrics     {stack.connection_extra[METRICS_URL]}   (the supervisor's)")
    typer.echo(f"Port dicatat / ports recorded: {folder / 'ports.json'} (the next run reuses them)")
    typer.echo("Berjalan / running. Ctrl-C untuk berhenti / to stop.")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        while True:
            for line in supervisor.check():
                typer.echo(line, err=True)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        typer.echo("Mematikan / stopping ...")
        stack.stop()
        supervisor.close()


@app.command()
def demo(
    folder: Path = typer.Option(STATE_FOLDER / "demo", help="Scratch folder, wiped first"),
) -> None:
    """Start everything, file sample reports, and print each case's journey."""
    from rujuk.demo import run_demo

    try:
        code = asyncio.run(run_demo(folder))
    except StackError as exc:
        typer.echo(f"Demo gagal / demo failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@nats_app.command("init")
def nats_init(
    keyring: Path = typer.Argument(..., help="Folder of the bus's credentials (kept private)"),
    tls_host: list[str] = typer.Option(
        [], help="A name or address the server is reached by: makes its TLS certificate"
    ),
) -> None:
    """Make the bus's credentials (each service's nkey, the operator's password; with
    --tls-host, a private CA and the server's certificate) where missing, and write the
    server/authorization.conf nats-server includes. Safe to run again."""
    ring = NatsKeyring(keyring).ensure()
    if tls_host:
        ring.ensure_tls(tls_host)
    typer.echo(
        f"Kunci bus siap / bus credentials ready: {ring.authorization_file}\n"
        f"  layanan / services: {', '.join(ring.service_public_keys())}; "
        f"mitra / partners: {len(list(ring.partners()))}"
        + (f"\n  TLS: {ring.server_cert_file} ({', '.join(tls_host)}), CA {ring.ca_file}"
           if tls_host else "")
    )  # fmt: skip


@db_app.command("provision")
def db_provision(
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="The database administrator's (a superuser's) URL [default: $DATABASE_URL]",
        show_default=False,
    ),
) -> None:
    """Siapkan peran, skema dan migrasi / make each service's role, the schemas (owned by the
    owner role), apply pending migrations as that owner, and grant each service its own schema
    only. Passwords come from INTAKE_DB_PASSWORD, ROUTING_DB_PASSWORD, NOTIFY_DB_PASSWORD,
    AUDIT_DB_PASSWORD and CONSOLE_DB_PASSWORD; a role whose variable is unset keeps its
    password. Safe to run again: after an upgrade, or to rotate a password."""
    url = database_url or os.environ.get("DATABASE_URL")
    if not url:
        typer.echo("Berikan / give --database-url or DATABASE_URL (the administrator's)", err=True)
        raise typer.Exit(2)
    passwords = {
        schema: os.environ[variable]
        for schema in SCHEMAS
        if os.environ.get(variable := database_password_variable(schema))
    }
    try:
        done = asyncio.run(provision(url, passwords))
    except (ProvisionError, RolePlanError) as exc:
        typer.echo(f"Tidak dapat menyiapkan / cannot provision: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        typer.echo(f"Basis data tidak terjangkau / database error: {type(exc).__name__}: {exc}",
                   err=True)  # fmt: skip
        raise typer.Exit(2) from exc
    typer.echo(f"Basis data siap / database ready: {done.database}, owner role {done.roles.owner}")
    for schema, role in done.roles.runtime_roles.items():
        applied = len(done.migrations.get(schema, []))
        typer.echo(f"  {schema:<8} role {role:<24} migrations applied now: {applied}")
    if done.passwords_set:
        typer.echo(f"  kata sandi diatur / passwords set: {', '.join(done.passwords_set)}")
    for role in done.without_password:
        schema = role.removeprefix(f"{done.database}_")
        typer.echo(
            f"Peringatan / warning: {role} has no password and cannot log in: set "
            f"{database_password_variable(schema)} and run again",
            err=True,
        )


@app.command()
def backup(
    folder: Path = typer.Argument(..., help="A new, empty folder for this backup (made 0700)"),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="The database administrator's URL [default: $DATABASE_URL, else the PostgreSQL "
        "`rujuk up` runs from .rujuk/up]",
        show_default=False,
    ),
    nats_url: str | None = typer.Option(
        None, "--nats-url", help="The NATS operator's URL [default: $NATS_URL]", show_default=False
    ),
) -> None:
    """Cadangkan / back up PostgreSQL (pg_dump) and every rujuk stream (JetStream snapshots,
    consumers included) while rujuk runs, taken together (docs/operations.md, "Backup and
    restore"). The vault keys are not in it: back up /etc/rujuk (or .rujuk/up/dev-secrets.json)
    apart, encrypted."""
    from rujuk.backup import BackupError, take_backup

    database = database_url or os.environ.get("DATABASE_URL") or up_admin_url(STATE_FOLDER / "up")
    bus = nats_url or os.environ.get("NATS_URL")
    if not database or not bus:
        typer.echo("Berikan / give --database-url (the administrator's) and --nats-url (the "
                   "operator's), or run `rujuk up` from this folder", err=True)  # fmt: skip
        raise typer.Exit(2)
    try:
        manifest = asyncio.run(take_backup(database, bus, folder))
    except (BackupError, OSError, asyncpg.PostgresError) as exc:
        typer.echo(f"Pencadangan gagal / backup failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Cadangan selesai / backup written: {folder}")
    database_file = manifest["database"]["file"]
    typer.echo(f"  PostgreSQL  {manifest['database']['bytes']:>12,} bytes  ({database_file})")
    for name, stream in manifest["streams"].items():
        messages = stream["state"].get("messages", 0)
        typer.echo(f"  {name:<12}{stream['bytes']:>12,} bytes  {messages:,} messages")
    typer.echo(f"  {manifest['seconds']['total']:.1f} s")


@app.command()
def restore(
    folder: Path = typer.Argument(..., help="A folder `rujuk backup` wrote"),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="An empty database, the administrator's URL [default: $DATABASE_URL, else the "
        "embedded servers of .rujuk/up, started for the restore]",
        show_default=False,
    ),
    nats_url: str | None = typer.Option(
        None,
        "--nats-url",
        help="A NATS without rujuk's streams, the operator's URL [default: $NATS_URL]",
        show_default=False,
    ),
) -> None:
    """Pulihkan / restore a backup into an empty database and a NATS without rujuk's streams,
    with rujuk's services stopped; then start them. Roles get the passwords in
    INTAKE_DB_PASSWORD ... as `rujuk db provision` gives them."""
    from rujuk.backup import BackupError, read_manifest, restore_backup

    try:
        read_manifest(folder)  # before anything is started or written
    except BackupError as exc:
        typer.echo(f"Pemulihan gagal / restore failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    database = database_url or os.environ.get("DATABASE_URL")
    bus = nats_url or os.environ.get("NATS_URL")
    passwords = {
        schema: os.environ[variable]
        for schema in SCHEMAS
        if os.environ.get(variable := database_password_variable(schema))
    }
    stack: Stack | None = None
    if not database and not bus:  # `rujuk up`'s own servers, started for the restore
        stack = Stack(STATE_FOLDER / "up", ports=PortBook(STATE_FOLDER / "up"))
        if not (stack.folder / "dev-secrets.json").exists():
            typer.echo(
                f"Tidak ada / no {stack.folder / 'dev-secrets.json'}: put back the one of the "
                "stack the backup was taken from (it holds the vault key), or give "
                "--database-url and --nats-url",
                err=True,
            )
            raise typer.Exit(2)
        if stack.connection_file.exists():
            typer.echo("Hentikan dulu / stop `rujuk up` first: restore needs the services "
                       "stopped", err=True)  # fmt: skip
            raise typer.Exit(2)
        stack.start_servers()
        database, bus = stack.database_url, stack.nats_url
        passwords = {schema: stack.secrets()[f"database_password_{schema}"] for schema in SCHEMAS}
    if not database or not bus:
        typer.echo("Berikan / give both --database-url and --nats-url", err=True)
        raise typer.Exit(2)
    try:
        report = asyncio.run(restore_backup(folder, database, bus, passwords))
    except (BackupError, OSError, asyncpg.PostgresError) as exc:
        typer.echo(f"Pemulihan gagal / restore failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        if stack is not None:
            stack.stop()
    typer.echo(f"Dipulihkan / restored from {folder} in {report.seconds['total']:.1f} s")
    for name, messages in report.streams.items():
        typer.echo(f"  {name:<14} {messages:,} messages")
    typer.echo(f"  consumers rewound to the backup: {len(report.consumers_rewound)}; outbox "
               f"events already on the bus: {report.outbox_rows_already_published}; partner "
               f"messages to be sent again once: {report.partner_messages_withdrawn}")  # fmt: skip
    for durable, count in report.events_no_longer_in_stream.items():
        typer.echo(
            f"Peringatan / warning: {durable}: {count} events after the backup are no longer "
            "in the stream (older than its retention); the ledger lacks them",
            err=True,
        )
    typer.echo("Nyalakan / now start rujuk (`systemctl start rujuk.target` or `rujuk up`), "
               "then `rujuk audit verify`.")  # fmt: skip


def up_admin_url(folder: Path) -> str | None:
    """The administrator's URL of the PostgreSQL `rujuk up` runs from ``folder``, if it runs
    there: for `rujuk backup`, which reads every schema."""
    ports = PortBook(folder).recorded
    if "postgres" not in ports or not (folder / "connection.json").exists():
        return None
    return EmbeddedPostgres(folder / "postgres", port=ports["postgres"]).url


def database_password_variable(schema: str) -> str:
    """Where `rujuk db provision` (and compose) take a service role's password from."""
    return f"{schema.upper()}_DB_PASSWORD"


def main() -> None:
    sys.exit(app())
