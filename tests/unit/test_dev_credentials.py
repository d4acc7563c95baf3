"""What `rujuk up` hands a developer: tokens that look like every token intake issues, and a
`rujuk partner webhook-secret` that finds the running stack's signing key by itself."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notify.channels import partner_secret
from rujuk.cli import app
from rujuk.stack import DEVELOPMENT_TOKENS, Stack

TOKEN_LENGTH = len("rujuk_") + 43  # secrets.token_urlsafe(32)


def test_development_tokens_have_the_prefix_the_docs_show(tmp_path: Path) -> None:
    keys = Stack(tmp_path, external_database_url="x").secrets()
    for name in DEVELOPMENT_TOKENS:
        assert keys[name].startswith("rujuk_"), name
        assert len(keys[name]) == TOKEN_LENGTH
    assert Stack(tmp_path, external_database_url="x").secrets() == keys  # kept


def test_an_older_folders_tokens_without_the_prefix_are_made_anew_the_rest_kept(
    tmp_path: Path,
) -> None:
    older = {"operator_token": "tanpa-awalan", "webhook_signing_key": "kunci-lama"}
    (tmp_path / "dev-secrets.json").write_text(json.dumps(older))
    keys = Stack(tmp_path, external_database_url="x").secrets()
    assert keys["operator_token"].startswith("rujuk_")
    assert keys["webhook_signing_key"] == "kunci-lama"
    assert json.loads((tmp_path / "dev-secrets.json").read_text()) == keys


def test_webhook_secret_finds_the_running_stacks_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOTIFY_WEBHOOK_SIGNING_KEY", raising=False)
    stack = Stack(tmp_path / ".rujuk" / "up", external_database_url="postgresql://h/rujuk")
    stack.folder.mkdir(parents=True)
    stack._write_connection_file()  # what `rujuk up` writes once its stack has started
    before = dict(os.environ)
    try:
        result = CliRunner().invoke(app, ["partner", "webhook-secret", "rsud-bangil"])
        assert result.exit_code == 0, result.output
        key = stack.secrets()["webhook_signing_key"].encode()
        assert result.output.strip() == partner_secret(key, "rsud-bangil")
    finally:  # the command's callback set the running stack's settings
        os.environ.clear()
        os.environ.update(before)


def test_webhook_secret_without_a_stack_or_key_says_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOTIFY_WEBHOOK_SIGNING_KEY", raising=False)
    result = CliRunner().invoke(app, ["partner", "webhook-secret", "rsud-bangil"])
    assert result.exit_code == 1
    assert "no `rujuk up` runs" in result.output
