"""`rujuk partner`: Mitra / partner agencies: credentials and secrets.

Messages are in Bahasa Indonesia, each followed by its English.
"""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from notify import partners
from notify.channels import partner_secret
from rujuk_contracts import subjects
from rujuk_runtime import nats_auth
from rujuk_runtime.private_files import write_private

app = typer.Typer(help="Mitra / partner agencies: credentials and secrets", no_args_is_help=True)

KEYS_DIR = Path(".rujuk/partners")


@app.callback()
def main() -> None:
    """Mitra / partner agencies: credentials and secrets."""


def _say(indonesian: str, english: str) -> None:
    typer.echo(f"{indonesian}\n  ({english})")


def _check(agency_id: str) -> str:
    try:
        return subjects.check_agency_id(agency_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _running_keyring() -> Path | None:
    given = os.environ.get("RUJUK_NATS_KEYRING")
    return Path(given) if given else None


@app.command()
def creds(
    agency: Annotated[str, typer.Argument(help="agency id, e.g. rsud-bangil")],
    out: Annotated[Path, typer.Option(help="folder for the partner's seed")] = KEYS_DIR,
    keyring: Annotated[
        Path | None,
        typer.Option(
            help="the bus's keyring (`rujuk nats init`); [default: the running stack's]",
            show_default=False,
        ),
    ] = None,
    nats_url: Annotated[
        str | None,
        typer.Option(help="the URL partners connect to; [default: the running stack's]"),
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing key")] = False,
) -> None:
    """Make an nkey for the agency, admit it to the bus fenced to its own feed and replies,
    and say what to hand the partner.

    Writes <out>/<agency>.nk (the secret seed, for the partner only, 0600) and adds the public
    key to the keyring's authorization; a running server reloads it at once (no restart).
    """
    agency = _check(agency)
    keyring = keyring or _running_keyring()
    url = nats_url or os.environ.get("NATS_URL")
    if keyring is None or not url:
        _say(
            "Tidak ada stack yang berjalan: beri --keyring dan --nats-url milik server NATS.",
            "No running stack found: give the NATS server's --keyring and --nats-url.",
        )
        raise typer.Exit(1)
    seed_file = out / f"{agency}.nk"
    if seed_file.exists() and not force:
        _say(
            f"Kunci untuk {agency} sudah ada di {seed_file}; pakai --force untuk menggantinya.",
            f"A key for {agency} exists at {seed_file}; use --force to replace it.",
        )
        raise typer.Exit(1)
    seed = nats_auth.new_seed()
    write_private(seed_file, seed + "\n")
    ring = nats_auth.NatsKeyring(keyring)
    ring.add_partner(agency, nats_auth.public_key_of(seed))
    if ring.reload_server():
        _say(
            f"Mitra {agency} diterima oleh server NATS yang berjalan (tanpa restart).",
            f"Partner {agency} admitted by the running NATS server (no restart).",
        )
    else:
        _say(
            f"Mitra {agency} ditambahkan ke {ring.authorization_file}; muat ulang server NATS "
            "(SIGHUP, mis. `docker compose kill -s HUP nats`).",
            f"Partner {agency} added to {ring.authorization_file}; reload the NATS server "
            "(SIGHUP, e.g. `docker compose kill -s HUP nats`).",
        )
    _say(
        f"Berikan kepada mitra {agency} (lewat saluran aman) berkas {seed_file} dan:",
        f"Give partner {agency} (over a secure channel) the file {seed_file} and:",
    )
    handout = {
        "nats_url": nats_auth.without_credentials(url),
        "nkey_seed_file": seed_file.name,
        "inbox_prefix": partners.inbox_prefix(agency),
        "stream": subjects.PARTNER_STREAM,
        "durable_consumer": partners.durable_name(agency),
        "feed_subjects": subjects.partner_outbound_wildcard(agency),
        "reply_subjects": subjects.partner_inbound_wildcard(agency),
    }
    if ca_file := os.environ.get("NATS_TLS_CA_FILE"):
        handout["tls_ca_file"] = ca_file
    typer.echo(json.dumps(handout, indent=2))


def _signing_key() -> bytes:
    key = os.environ.get("NOTIFY_WEBHOOK_SIGNING_KEY", "").encode()
    if not key:
        _say(
            "NOTIFY_WEBHOOK_SIGNING_KEY belum diisi, dan tidak ada `rujuk up` yang berjalan di "
            "folder ini.",
            "NOTIFY_WEBHOOK_SIGNING_KEY is not set, and no `rujuk up` runs from this folder.",
        )
        raise typer.Exit(1)
    return key


@app.command("webhook-secret")
def webhook_secret(agency: Annotated[str, typer.Argument(help="agency id")]) -> None:
    """The agency's Standard Webhooks secret (whsec_…), derived from the signing key."""
    typer.echo(partner_secret(_signing_key(), _check(agency)))
