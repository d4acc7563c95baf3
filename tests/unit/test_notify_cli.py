"""`rujuk partner creds`: a partner's key, admitted to the bus's keyring, handed out safely."""

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from notify.cli import app
from rujuk_runtime import nats_auth


def test_creds_writes_a_private_seed_and_admits_its_public_key(tmp_path: Path) -> None:
    ring = nats_auth.NatsKeyring(tmp_path / "keyring").ensure()
    env = {
        "RUJUK_NATS_KEYRING": str(ring.folder),
        "NATS_URL": nats_auth.with_credentials("nats://10.0.0.9:4222", "ops", "s3cret"),
    }
    runner = CliRunner()
    result = runner.invoke(app, ["creds", "rsud-bangil", "--out", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    seed_file = tmp_path / "rsud-bangil.nk"
    seed = seed_file.read_text().strip()
    assert seed.startswith("SU")
    assert stat.S_IMODE(seed_file.stat().st_mode) == 0o600
    assert seed not in result.output  # the secret goes to the file only
    assert "s3cret" not in result.output
    handout = json.loads(result.output[result.output.index("{") :])
    assert handout["nats_url"] == "nats://10.0.0.9:4222"
    assert handout["reply_subjects"] == "rujuk.partner.rsud-bangil.in.>"
    assert "Berikan kepada mitra" in result.output
    assert "reload the NATS server" in result.output  # no server of this keyring runs here
    assert ring.partner_public_keys() == {"rsud-bangil": nats_auth.public_key_of(seed)}
    assert nats_auth.public_key_of(seed) in ring.authorization_file.read_text()

    again = runner.invoke(app, ["creds", "rsud-bangil", "--out", str(tmp_path)], env=env)
    assert again.exit_code == 1  # never overwrite a key silently
    assert seed_file.read_text().strip() == seed

    bad = runner.invoke(app, ["creds", "RSUD Bangil", "--out", str(tmp_path)], env=env)
    assert bad.exit_code != 0
    assert "lowercase letters" in bad.output


def test_creds_without_a_running_stack_or_keyring_says_what_to_give(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["creds", "rsud-bangil", "--out", str(tmp_path)],
        env={"RUJUK_NATS_KEYRING": "", "NATS_URL": ""},
    )
    assert result.exit_code == 1
    assert "--keyring" in result.output
    assert not (tmp_path / "rsud-bangil.nk").exists()
