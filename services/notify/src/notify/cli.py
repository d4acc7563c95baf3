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


@app.command()
def creds(
    agency: Annotated[str, typer.Argument(help="agency id, e.g. rsud-bangil")],
    out: Annotated[Path, typer.Option(help="folder for the seed and public key")] = KEYS_DIR,
    nats_url: Annotated[str, typer.Option(help="the URL partners connect to")] = (
        "nats://nats.example:4222"
    ),
    force: Annotated[bool, typer.Option(help="replace an existing key")] = False,
) -> None:
    """Make an nkey user fenced to the agency's own feed and replies.

    Writes <out>/<agency>.nk (the secret seed, for the partner only) and <out>/<agency>.pub
    (the public key, for the server), and prints the nats-server user entry and what to give
    the partner.
    """
    agency = _check(agency)
    out.mkdir(parents=True, exist_ok=True)
    seed_file, public_file = out / f"{agency}.nk", out / f"{agency}.pub"
    if seed_file.exists() and not force:
        _say(
            f"Kunci untuk {agency} sudah ada di {seed_file}; pakai --force untuk menggantinya.",
            f"A key for {agency} exists at {seed_file}; use --force to replace it.",
        )
        raise typer.Exit(1)
    key = partners.new_partner_key(agency)
    assert key.seed is not None
    seed_file.touch(mode=0o600)
    seed_file.chmod(0o600)
    seed_file.write_text(key.seed + "\n")
    public_file.write_text(key.public_key + "\n")
    typer.echo("# nats-server: add this entry to authorization { users = [...] }")
    typer.echo(json.dumps(key.user_entry(), indent=2, sort_keys=True))
    typer.echo("")
    _say(
        f"Berikan kepada mitra {agency} (lewat saluran aman) berkas {seed_file} dan:",
        f"Give partner {agency} (over a secure channel) the file {seed_file} and:",
    )
    typer.echo(
        json.dumps(
            {
                "nats_url": nats_url,
                "nkey_seed_file": seed_file.name,
                "inbox_prefix": partners.inbox_prefix(agency),
                "stream": subjects.PARTNER_STREAM,
                "durable_consumer": partners.durable_name(agency),
                "feed_subjects": subjects.partner_outbound_wildcard(agency),
                "reply_subjects": subjects.partner_inbound_wildcard(agency),
            },
            indent=2,
        )
    )
    _say(
        "Jalankan `rujuk partner nats-config` untuk menyusun ulang konfigurasi server.",
        "Run `rujuk partner nats-config` to rebuild the server configuration.",
    )


@app.command("nats-config")
def nats_config(
    keys: Annotated[Path, typer.Option(help="folder of <agency>.pub files")] = KEYS_DIR,
    service_user: Annotated[str, typer.Option(help="the internal services' user")] = "rujuk",
    output: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """The nats-server `authorization` block: the services' user and every partner's nkey.

    The services' password is read from RUJUK_NATS_SERVICE_PASSWORD and written as a bcrypt
    hash; the services connect with nats://<user>:<password>@host:port.
    """
    password = os.environ.get("RUJUK_NATS_SERVICE_PASSWORD", "")
    if not password:
        _say(
            "RUJUK_NATS_SERVICE_PASSWORD belum diisi.",
            "RUJUK_NATS_SERVICE_PASSWORD is not set.",
        )
        raise typer.Exit(1)
    users = [partners.service_user_entry(service_user, partners.hash_password(password))]
    for public_file in sorted(keys.glob("*.pub")):
        agency = _check(public_file.stem)
        key = partners.PartnerKey(agency, public_file.read_text().strip())
        users.append(key.user_entry())
    block = partners.authorization_block(users)
    if output is None:
        typer.echo(block)
    else:
        output.write_text(block)
        _say(
            f"Konfigurasi untuk {len(users) - 1} mitra ditulis ke {output}.",
            f"Configuration for {len(users) - 1} partners written to {output}.",
        )


def _signing_key() -> bytes:
    key = os.environ.get("NOTIFY_WEBHOOK_SIGNING_KEY", "").encode()
    if not key:
        _say("NOTIFY_WEBHOOK_SIGNING_KEY belum diisi.", "NOTIFY_WEBHOOK_SIGNING_KEY is not set.")
        raise typer.Exit(1)
    return key


@app.command("webhook-secret")
def webhook_secret(agency: Annotated[str, typer.Argument(help="agency id")]) -> None:
    """The agency's Standard Webhooks secret (whsec_…), derived from the signing key."""
    typer.echo(partner_secret(_signing_key(), _check(agency)))
