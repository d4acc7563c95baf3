"""A `rujuk` command that needs the servers, run where no `rujuk up` runs and nothing names
them, says so plainly and exits 2: it never falls back to a server on a default port."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rujuk.cli import app


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        (["audit", "verify"], "DATABASE_URL"),
        (["audit", "replay", "3514-AB12CD34EF"], "DATABASE_URL"),
        (["audit", "replay", "sop-3513"], "DATABASE_URL"),  # how the SOP in force came to be
        (["audit", "export", "3514-AB12CD34EF"], "DATABASE_URL"),
        (["audit", "replay-bus", "--database-url", "postgresql://x@127.0.0.1:1/x"], "NATS_URL"),
        (["token", "list"], "DATABASE_URL"),
        (["token", "create", "--role", "operator", "--district", "3514"], "DATABASE_URL"),
    ],
)
def test_a_command_with_no_stack_to_talk_to_says_so_and_names_the_setting(
    command: list[str], setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .rujuk/up/connection.json here
    for name in ("DATABASE_URL", "NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "No rujuk stack found" in result.output
    assert "Tidak menemukan stack rujuk" in result.output
    assert f"{setting} is not set" in result.output
    assert "5432" not in result.output
    assert "4222" not in result.output


def test_backup_with_no_servers_named_says_which_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["backup", str(tmp_path / "backup")])
    assert result.exit_code == 2, result.output
    assert "--database-url" in result.output
    assert "--nats-url" in result.output
    assert not (tmp_path / "backup").exists()


def test_restore_refuses_a_folder_that_is_no_backup_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-backup").mkdir()
    result = CliRunner().invoke(app, ["restore", str(tmp_path / "not-a-backup")])
    assert result.exit_code == 1, result.output
    assert "not a rujuk backup" in result.output
    assert not (tmp_path / ".rujuk").exists()  # no server was started for it
