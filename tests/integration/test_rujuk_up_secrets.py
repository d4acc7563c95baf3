"""`rujuk up` as a person runs it: every secret it generates stays in private files, and
none reaches its output, a command's output, or any log."""

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rujuk_up_support import RUJUK, free_ports_env, fresh_shell_env, start_up

pytestmark = pytest.mark.integration


def _rujuk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Only what a fresh shell has: no NATS_URL or DATABASE_URL of the test session.
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    return subprocess.run([*RUJUK, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """`rujuk up` in a folder of its own, until it says it runs; (its folder, its output)."""
    cwd = tmp_path_factory.mktemp("rujuk-up")
    running = start_up(cwd, {**fresh_shell_env(), **free_ports_env()}, cwd / "up.out")
    try:
        yield cwd, running.output
    finally:
        running.stop(signal.SIGTERM)


def _generated_secrets(folder: Path) -> dict[str, str]:
    """Every secret `rujuk up` made: development secrets (each service's database password
    among them), the bus's seeds and password, the PostgreSQL superuser's password."""
    found: dict[str, str] = dict(json.loads((folder / "dev-secrets.json").read_text()))
    found["postgres superuser password"] = (
        (folder / "postgres" / "superuser.password").read_text().strip()
    )
    keyring = folder / "nats" / "keyring"
    found["ops password"] = (keyring / "ops.password").read_text().strip()
    for seed in keyring.glob("services/*/seed.nk"):
        found[f"{seed.parent.name} nkey seed"] = seed.read_text().strip()
    for key in keyring.glob("**/*key.pem"):
        found[str(key.relative_to(keyring))] = key.read_text().strip()
    return found


def test_secrets_stay_in_private_files_and_are_never_printed_or_logged(
    up: tuple[Path, Path],
) -> None:
    cwd, output = up
    folder = cwd / ".rujuk" / "up"
    # A command a person runs next finds the stack by itself and admits a partner.
    admitted = _rujuk("partner", "creds", "pkm-bangil", cwd=cwd)
    assert admitted.returncode == 0, admitted.stdout + admitted.stderr
    assert "admitted by the running NATS server" in admitted.stdout
    listed = _rujuk("token", "list", cwd=cwd)  # as intake's PostgreSQL role
    assert listed.returncode == 0, listed.stdout + listed.stderr
    secrets = _generated_secrets(folder)
    assert len(secrets) >= 10
    private = [folder / "dev-secrets.json", folder / "connection.json",
               folder / "nats" / "keyring" / "ops.password",
               folder / "postgres" / "superuser.password",
               *(folder / "nats" / "keyring").glob("services/*/seed.nk"),
               cwd / ".rujuk" / "partners" / "pkm-bangil.nk"]  # fmt: skip
    for path in private:
        assert path.stat().st_mode & 0o077 == 0, f"{path} can be read by others"
    printed = {"rujuk up": output.read_text(), "rujuk partner creds": admitted.stdout,
               "rujuk token list": listed.stdout + listed.stderr}  # fmt: skip
    logs = {str(p.relative_to(folder)): p.read_text(errors="replace")
            for p in [*folder.glob("logs/*.log"), *folder.glob("*/*.log")]}  # fmt: skip
    assert "intake" in " ".join(logs), logs.keys()
    for where, text in {**printed, **logs}.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} appears in {where}"
    assert "nats://127.0.0.1:" in printed["rujuk up"]  # the address, without the password
