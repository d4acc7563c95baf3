"""The `rujuk` command: run the system locally, the demo, and the auditors' tools."""

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import typer

from audit.cli import app as audit_app
from intake.cli import app as token_app
from notify.cli import app as partner_app
from routing.cli import app as sop_app
from rujuk.stack import Stack, StackError, running_stack_env
from rujuk_runtime.nats_auth import NatsKeyring

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


# The service whose PostgreSQL role a command acts as against the stack `rujuk up` runs.
DATABASE_ROLE_OF_COMMAND = {"token": "intake", "audit": "audit"}


@app.callback()
def use_running_stack(ctx: typer.Context) -> None:
    """Commands that need the servers use those of `rujuk up` when it runs and none are set;
    in PostgreSQL, as the role of the service they act for, never as the administrator."""
    acting_as = DATABASE_ROLE_OF_COMMAND.get(ctx.invoked_subcommand or "")
    for name, value in running_stack_env(STATE_FOLDER / "up", acting_as).items():
        os.environ.setdefault(name, value)


@app.command()
def up(
    folder: Path = typer.Option(STATE_FOLDER / "up", help="Where servers keep data and logs"),
) -> None:
    """Start NATS, PostgreSQL, the four services and the console; Ctrl-C stops everything."""
    stack = Stack(folder)
    try:
        stack.start()
    except StackError as exc:
        stack.stop()
        typer.echo(f"Gagal menyalakan / could not start: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"NATS        {stack.nats_public_url}")
    typer.echo(
        f"PostgreSQL  {stack.database_address}   (each service its own role; passwords in "
        f"{stack.folder / 'dev-secrets.json'})"
    )
    for name, service in stack.services.items():
        typer.echo(f"{name:<11} {service.url}   log: {service.log_file}")
    typer.echo("Berjalan / running. Ctrl-C untuk berhenti / to stop.")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        while not (exited := stack.exited_services()):
            time.sleep(0.5)
        typer.echo(f"Layanan berhenti / service exited: {', '.join(exited)}", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        typer.echo("Mematikan / stopping ...")
        stack.stop()


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


def main() -> None:
    sys.exit(app())
