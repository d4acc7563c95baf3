"""`rujuk partner`: credentials a partner can use and the server configuration that fences it."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notify import partners
from notify.cli import app


def test_creds_writes_a_private_seed_and_prints_the_fenced_user(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["creds", "rsud-bangil", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    seed = (tmp_path / "rsud-bangil.nk").read_text().strip()
    public = (tmp_path / "rsud-bangil.pub").read_text().strip()
    assert seed.startswith("SU")
    assert public.startswith("U")
    assert partners.public_key_of(seed) == public
    assert (tmp_path / "rsud-bangil.nk").stat().st_mode & 0o077 == 0
    assert seed not in result.output  # the secret goes to the file only
    assert "rujuk.partner.rsud-bangil.in.>" in result.output
    assert "Berikan kepada mitra" in result.output

    again = runner.invoke(app, ["creds", "rsud-bangil", "--out", str(tmp_path)])
    assert again.exit_code == 1  # never overwrite a key silently

    bad = runner.invoke(app, ["creds", "RSUD Bangil", "--out", str(tmp_path)])
    assert bad.exit_code != 0


def test_nats_config_lists_the_service_user_and_every_partner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    for agency in ("rsud-bangil", "polres-probolinggo"):
        assert runner.invoke(app, ["creds", agency, "--out", str(tmp_path)]).exit_code == 0
    monkeypatch.setenv("RUJUK_NATS_SERVICE_PASSWORD", "not-a-real-password")
    out = tmp_path / "auth.conf"
    result = runner.invoke(app, ["nats-config", "--keys", str(tmp_path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "not-a-real-password" not in text
    assert '"$2b$' in text
    users = [
        json.loads(line.strip().rstrip(","))
        for line in text.splitlines()
        if line.startswith("    {")
    ]
    assert [u.get("user") for u in users] == ["rujuk", None, None]
    assert {u["permissions"]["publish"]["allow"][0] for u in users[1:]} == {
        "rujuk.partner.polres-probolinggo.in.>",
        "rujuk.partner.rsud-bangil.in.>",
    }


def test_permissions_name_only_the_agencys_own_subjects() -> None:
    allowed = partners.partner_permissions("puskesmas-kraton")
    everything = allowed["publish"]["allow"] + allowed["subscribe"]["allow"]
    assert all("puskesmas-kraton" in subject for subject in everything)
    assert not any(s.startswith(("rujuk.evt", "_INBOX.")) for s in everything)
