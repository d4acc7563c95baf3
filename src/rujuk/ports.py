"""Stable ports for `rujuk up` and `rujuk demo`: a stack started again from the same folder
answers at the URLs it printed before.

Each process role takes, in order, the first of these that is free: the port its variable
names (``<SERVICE>_HTTP_PORT``, ``RUJUK_NATS_PORT``, ``RUJUK_POSTGRES_PORT``), the port
recorded in the folder's ``ports.json`` by the last run, the README's default (never the
standard NATS or PostgreSQL port: another server may own it); else any free port, said plainly.
What was chosen is recorded for the next run."""

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rujuk_runtime.embedded import free_port

DEFAULT_PORTS = {
    "intake": 8081,
    "routing": 8082,
    "notify": 8083,
    "audit": 8084,
    "console": 8085,
    "nats": 4322,  # not 4222: a NATS of someone else's may run on this machine
    "postgres": 5532,  # not 5432, likewise
}


def port_variable(role: str) -> str:
    """The variable that sets ``role``'s port (the services' own setting; the servers' new)."""
    return (
        f"RUJUK_{role.upper()}_PORT"
        if role in ("nats", "postgres")
        else f"{role.upper()}_HTTP_PORT"
    )


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now. SO_REUSEADDR as uvicorn,
    nats-server and PostgreSQL set it: connections of the last run still in TIME_WAIT do not
    make a port taken, only a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class PortBook:
    """The ports of the stack in ``folder``: chosen at start, recorded in ``ports.json``."""

    folder: Path
    say: Callable[[str], None] = print
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    recorded: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        # Read now: `rujuk demo` wipes its folder after making its book, and keeps the ports.
        try:
            loaded = json.loads(self.file.read_text())
        except (OSError, ValueError):
            loaded = {}
        if isinstance(loaded, dict):
            self.recorded = {k: v for k, v in loaded.items() if isinstance(v, int)}

    @property
    def file(self) -> Path:
        return self.folder / "ports.json"

    def choose(self, role: str) -> int:
        """The port ``role`` starts on this run; says why whenever it is not the one wanted."""
        variable = port_variable(role)
        given = self.environ.get(variable, "").strip()
        wanted: list[tuple[int, str]] = []
        if given.isdigit():
            wanted.append((int(given), f"{variable}={given}"))
        if role in self.recorded:
            wanted.append((self.recorded[role], f"tercatat / recorded in {self.file}"))
        hint = " (Another `rujuk up` from this folder still running?)"
        if not given.isdigit():
            wanted.append((DEFAULT_PORTS[role], "bawaan / the default"))
        for port, why in wanted:
            if port_is_free(port):
                return port
            self.say(
                f"Port {port} untuk {role} ({why}) sudah dipakai proses lain; {role} memakai "
                f"port lain. / Port {port} for {role} ({why}) is taken by another process; "
                f"{role} gets another port.{hint if port == self.recorded.get(role) else ''}"
            )
        port = free_port()
        self.say(f"{role}: port {port} (dicatat / recorded for the next run)")
        return port

    def record(self, ports: dict[str, int]) -> None:
        """Keep what this run listens on, for the next run from this folder."""
        self.recorded = {**self.recorded, **ports}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(self.recorded, indent=2, sort_keys=True) + "\n")
