"""`rujuk up` as a person runs it, twice from the same folder (each run its own subprocess).

Ports (issue 23): started again, the stack answers at the URLs it printed before; a port someone
else took is said plainly, another is chosen and recorded, and the next run reuses it. The test
cannot count on 8081-8085, 4322 or 5532 being free (other stacks run beside it), so the first
run's defaults are overridden by the port variables a person may set (``INTAKE_HTTP_PORT`` ...
``RUJUK_NATS_PORT``, ``RUJUK_POSTGRES_PORT``), each a free port; the second run is given none:
every port it takes comes from what the first recorded.

Secrets: every secret `rujuk up` generates stays in private files, and none reaches its output
(either run's), a command's output, or any log.

Both tests read the same two runs (one module fixture: each `rujuk up` starts NATS, PostgreSQL
from initdb and five services); what the first run showed is kept before it is stopped."""

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rujuk.ports import DEFAULT_PORTS, port_variable
from rujuk.samples import SAMPLE_REPORTS
from rujuk_runtime.embedded import free_port
from tests.integration.rujuk_up_support import (
    RUJUK,
    RunningUp,
    free_ports_env,
    fresh_shell_env,
    start_up,
)

pytestmark = pytest.mark.integration


@dataclass
class TwoRuns:
    """The first run (stopped with Ctrl-C) as it was seen while it ran, and the second, running."""

    cwd: Path
    taken: int  # the port another listener held for intake during the first run
    wanted: dict[str, str]  # the port variables the first run was given
    first_said: str
    first_recorded: dict[str, int]  # ports.json as the first run left it
    first_report: httpx.Response  # a report filed to the first run
    first_exit: int
    second: RunningUp

    @property
    def folder(self) -> Path:
        return self.cwd / ".rujuk" / "up"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    """`rujuk up` in a folder of its own with intake's port held by another listener, a report
    filed, Ctrl-C; then again from the same folder with no port variable, left running."""
    cwd = tmp_path_factory.mktemp("rujuk-up")
    folder = cwd / ".rujuk" / "up"
    with socket.socket() as someone_else:  # a listener on the port intake is told to take
        someone_else.bind(("127.0.0.1", free_port()))
        someone_else.listen()
        taken = someone_else.getsockname()[1]
        wanted = {**free_ports_env(), port_variable("intake"): str(taken)}
        first = start_up(cwd, {**fresh_shell_env(), **wanted}, cwd / "first.out")
        try:
            recorded = json.loads((folder / "ports.json").read_text())
            report = _file_a_report(folder, recorded["intake"])
        finally:
            first_exit = first.stop()  # Ctrl-C
        second = start_up(cwd, fresh_shell_env(), cwd / "second.out")
        try:
            yield TwoRuns(cwd, taken, wanted, first.text(), recorded, report, first_exit, second)
        finally:
            assert second.stop() == 0, second.text()  # Ctrl-C


def _printed_ports(printed: str, recorded: dict[str, int]) -> dict[str, int]:
    """Where each process listens, as `rujuk up` printed it (and the record agrees)."""
    assert set(recorded) == set(DEFAULT_PORTS), recorded
    for role, port in recorded.items():
        if role == "nats":
            assert f"nats://127.0.0.1:{port}" in printed, printed
        elif role == "postgres":
            assert f"postgresql://127.0.0.1:{port}/rujuk" in printed, printed
        else:
            assert f"{role:<11} http://127.0.0.1:{port}" in printed, printed
    return recorded


def _file_a_report(folder: Path, intake_port: int) -> httpx.Response:
    token = json.loads((folder / "dev-secrets.json").read_text())["operator_token"]
    return httpx.post(f"http://127.0.0.1:{intake_port}/v1/reports", json=dict(SAMPLE_REPORTS[0]),
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip


def test_a_stack_started_again_answers_on_the_ports_it_printed_before(runs: TwoRuns) -> None:
    taken, wanted = runs.taken, runs.wanted
    ports = _printed_ports(runs.first_said, runs.first_recorded)
    said = runs.first_said
    assert f"Port {taken} untuk intake" in said, said  # Bahasa Indonesia
    assert f"Port {taken} for intake (INTAKE_HTTP_PORT={taken}) is taken" in said, said
    assert ports["intake"] != taken
    for role in DEFAULT_PORTS.keys() - {"intake"}:
        assert ports[role] == int(wanted[port_variable(role)]), (role, ports)
    assert runs.first_report.status_code == 202, runs.first_report.text
    assert runs.first_exit == 0, said

    second = runs.second
    recorded = json.loads((runs.folder / "ports.json").read_text())
    assert _printed_ports(second.text(), recorded) == ports  # every service, NATS, PostgreSQL
    assert "taken" not in second.text(), second.text()
    connection = json.loads((runs.folder / "connection.json").read_text())
    assert connection["INTAKE_URL"] == f"http://127.0.0.1:{ports['intake']}"
    answer = _file_a_report(runs.folder, ports["intake"])  # the stack works: report accepted
    assert answer.status_code == 202, answer.text


def _rujuk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Only what a fresh shell has: no NATS_URL or DATABASE_URL of the test session.
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    return subprocess.run([*RUJUK, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


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


def test_secrets_stay_in_private_files_and_are_never_printed_or_logged(runs: TwoRuns) -> None:
    cwd, folder = runs.cwd, runs.folder
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
    printed = {"rujuk up (first run)": runs.first_said, "rujuk up": runs.second.text(),
               "rujuk partner creds": admitted.stdout,
               "rujuk token list": listed.stdout + listed.stderr}  # fmt: skip
    logs = {str(p.relative_to(folder)): p.read_text(errors="replace")
            for p in [*folder.glob("logs/*.log"), *folder.glob("*/*.log")]}  # fmt: skip
    assert "intake" in " ".join(logs), logs.keys()
    for where, text in {**printed, **logs}.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} appears in {where}"
    assert "nats://127.0.0.1:" in printed["rujuk up"]  # the address, without the password
