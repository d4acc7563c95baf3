"""`rujuk up` keeps its ports across runs from the same folder (issue 23): started again, the
stack answers at the URLs it printed before; a port someone else took is said plainly, another
is chosen and recorded, and the next run reuses it.

The test cannot count on 8081-8085, 4322 or 5532 being free (other stacks run beside it), so
the first run's defaults are overridden by the port variables a person may set
(``INTAKE_HTTP_PORT`` ... ``RUJUK_NATS_PORT``, ``RUJUK_POSTGRES_PORT``), each a free port; the
second run is given none: every port it takes comes from what the first recorded."""

import json
import socket
from pathlib import Path

import httpx
import pytest

from rujuk.ports import DEFAULT_PORTS, port_variable
from rujuk.samples import SAMPLE_REPORTS
from rujuk_runtime.embedded import free_port
from tests.integration.rujuk_up_support import RunningUp, free_ports_env, fresh_shell_env, start_up

pytestmark = pytest.mark.integration


def _printed_ports(running: RunningUp, folder: Path) -> dict[str, int]:
    """Where each process listens, as `rujuk up` printed it (and the record agrees)."""
    recorded: dict[str, int] = json.loads((folder / "ports.json").read_text())
    assert set(recorded) == set(DEFAULT_PORTS), recorded
    printed = running.text()
    for role, port in recorded.items():
        if role == "nats":
            assert f"nats://127.0.0.1:{port}" in printed, printed
        elif role == "postgres":
            assert f"postgresql://127.0.0.1:{port}/rujuk" in printed, printed
        else:
            assert f"{role:<11} http://127.0.0.1:{port}" in printed, printed
    return recorded


def _file_a_report(folder: Path, intake_port: int) -> None:
    token = json.loads((folder / "dev-secrets.json").read_text())["operator_token"]
    response = httpx.post(f"http://127.0.0.1:{intake_port}/v1/reports",
                          json=dict(SAMPLE_REPORTS[0]),
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
    assert response.status_code == 202, response.text


def test_a_stack_started_again_answers_on_the_ports_it_printed_before(tmp_path: Path) -> None:
    folder = tmp_path / ".rujuk" / "up"
    with socket.socket() as someone_else:  # a listener on the port intake is told to take
        someone_else.bind(("127.0.0.1", free_port()))
        someone_else.listen()
        taken = someone_else.getsockname()[1]
        wanted = {**free_ports_env(), port_variable("intake"): str(taken)}

        first = start_up(tmp_path, {**fresh_shell_env(), **wanted}, tmp_path / "first.out")
        try:
            ports = _printed_ports(first, folder)
            said = first.text()
            assert f"Port {taken} untuk intake" in said, said  # Bahasa Indonesia
            assert f"Port {taken} for intake (INTAKE_HTTP_PORT={taken}) is taken" in said, said
            assert ports["intake"] != taken
            for role in DEFAULT_PORTS.keys() - {"intake"}:
                assert ports[role] == int(wanted[port_variable(role)]), (role, ports)
            _file_a_report(folder, ports["intake"])
        finally:
            assert first.stop() == 0, first.text()  # Ctrl-C

        second = start_up(tmp_path, fresh_shell_env(), tmp_path / "second.out")
        try:
            assert _printed_ports(second, folder) == ports  # every service, NATS, PostgreSQL
            assert "taken" not in second.text(), second.text()
            connection = json.loads((folder / "connection.json").read_text())
            assert connection["INTAKE_URL"] == f"http://127.0.0.1:{ports['intake']}"
            _file_a_report(folder, ports["intake"])  # the stack works: the report is accepted
        finally:
            assert second.stop() == 0, second.text()
