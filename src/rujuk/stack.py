"""Run the whole system on one machine: embedded NATS and PostgreSQL (unless NATS_URL and
DATABASE_URL are set), the four services and the console as separate processes, each with
its own port, its own identity on the bus and its own PostgreSQL role."""

import asyncio
import concurrent.futures
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from intake.auth import TOKEN_PREFIX
from intake.auth import new_secret as new_token_secret
from intake.vault import new_master_key_spec
from rujuk.ports import PortBook
from rujuk_runtime.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from rujuk_runtime.nats_auth import SERVICE_GRANTS, NatsKeyring, without_credentials
from rujuk_runtime.private_files import write_private
from rujuk_runtime.provision import ProvisionError, provision
from rujuk_runtime.roles import SCHEMAS, RolePlanError, role_url, without_password

SERVICES = ("intake", "routing", "notify", "audit", "console")
DATABASE_URLS = "database_urls"  # in connection.json: each service's own role
SERVICE_SECRETS = "service_secrets"  # in connection.json: what a command acting as it needs
# The development identities intake installs at start (INTAKE_BOOTSTRAP_TOKENS).
DEVELOPMENT_TOKENS = ("operator_token", "coordinator_token", "auditor_token")
# The on-call roles the shipped SOPs page (services/routing/src/routing/sops/*.yaml, `on_call`),
# with invented addresses, for notify's directory in a development stack (NOTIFY_PARTNERS_FILE
# unless one is given). Without an SMS gateway or an SMTP server configured, their pages go
# out on the webhook where NOTIFY_WEBHOOK_BASE_URL gives one (the demo, tests), else fail
# with the reason, as they would in a deployment missing them.
DEV_ON_CALL_DIRECTORY: dict[str, dict[str, str]] = {
    "piket-uptppa-pasuruan": {
        "sms_number": "+62 800-0000-0201",
        "email": "piket@uptppa-pasuruan.contoh.example",
    },
    "kepala-dp3ap2kb-pasuruan": {
        "sms_number": "+62 800-0000-0202",
        "email": "kepala@dp3ap2kb-pasuruan.contoh.example",
    },
    "piket-uptppa-probolinggo": {
        "sms_number": "+62 800-0000-0203",
        "email": "piket@uptppa-probolinggo.contoh.example",
    },
    "kepala-dp3ap2kb-probolinggo": {
        "sms_number": "+62 800-0000-0204",
        "email": "kepala@dp3ap2kb-probolinggo.contoh.example",
        "language": "en",  # one role reads English, so both languages are exercised
    },
}
T = TypeVar("T")


class StackError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    name: str
    port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    postgres_settings: dict[str, str] = field(default_factory=dict)  # for an embedded one
    external_nats_url: str | None = field(default_factory=lambda: os.environ.get("NATS_URL"))
    external_database_url: str | None = field(
        default_factory=lambda: os.environ.get("DATABASE_URL")
    )
    # The bus's credentials: made in the folder for an embedded NATS; for an external one,
    # the keyring its authorization was generated from (RUJUK_NATS_KEYRING), if any.
    nats_keyring: NatsKeyring | None = field(
        default_factory=lambda: (
            NatsKeyring(Path(os.environ["RUJUK_NATS_KEYRING"]))
            if os.environ.get("RUJUK_NATS_KEYRING")
            else None
        )
    )
    nats: EmbeddedNats | None = None
    postgres: EmbeddedPostgres | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    # `rujuk up` and `rujuk demo`: the ports of the last run from this folder, or the README's
    # defaults, where free (rujuk.ports). Without a book (tests, benchmarks), free ports.
    ports: PortBook | None = None
    connection_extra: dict[str, str] = field(default_factory=dict)  # more for connection.json
    _provisioned: bool = field(default=False, init=False)
    # A port chosen for a service before it starts (the console's, for notify's pages).
    _reserved_ports: dict[str, int] = field(default_factory=dict, init=False)

    @property
    def nats_public_url(self) -> str:
        """The bus's address, fit to print and to hand to partners (no credentials)."""
        url = self.nats.url if self.nats else self.external_nats_url
        if url is None:
            raise StackError("NATS is not started")
        return without_credentials(url)

    @property
    def nats_url(self) -> str:
        """The operator's URL (the ``rujuk`` commands, tests): it carries a password, so it is
        never printed."""
        if self.nats_keyring is None:
            return self.nats_public_url if self.nats else str(self.external_nats_url)
        return self.nats_keyring.ops_url(self.nats_public_url)

    @property
    def database_url(self) -> str:
        """The administrator's URL (a superuser: provisioning, tests). No service gets it, and
        it carries a password, so it is never printed."""
        url = self.postgres.url if self.postgres else self.external_database_url
        if url is None:
            raise StackError("PostgreSQL is not started")
        return url

    @property
    def database_address(self) -> str:
        """The server and database, fit to print."""
        return self.postgres.address if self.postgres else without_password(self.database_url)

    def service_database_url(self, name: str) -> str:
        """The URL service ``name`` connects with: its own role, fenced to its own schema."""
        return role_url(self.database_url, name, self.secrets()[f"database_password_{name}"])

    def provision_database(self) -> None:
        """Each service's role (this stack's passwords), the schemas owned by the owner role,
        every migration applied as that owner: what `rujuk db provision` does."""
        keys = self.secrets()
        passwords = {schema: keys[f"database_password_{schema}"] for schema in SCHEMAS}
        try:
            _run_apart(provision(self.database_url, passwords))
        except (OSError, asyncpg.PostgresError, ProvisionError, RolePlanError) as exc:
            raise StackError(f"could not provision PostgreSQL: {exc}") from exc
        self._provisioned = True

    def start_servers(self) -> None:
        """Embedded servers for what NATS_URL / DATABASE_URL (or the caller) did not give."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.external_nats_url:
            self.nats = EmbeddedNats(self.folder / "nats", port=self._new_port("nats")).start()
            self.nats_keyring = self.nats.keyring
        if not self.external_database_url:
            self.postgres = EmbeddedPostgres(
                self.folder / "postgres",
                port=self._new_port("postgres"),
                settings=self.postgres_settings,
            ).start()

    def _new_port(self, role: str) -> int:
        return self.ports.choose(role) if self.ports else free_port()

    def service_env(self, name: str, port: int) -> dict[str, str]:
        keys = self.secrets()
        env = {
            **os.environ,
            **self._nats_identity(name),
            "DATABASE_URL": self.service_database_url(name),
            f"{name.upper()}_HTTP_PORT": str(port),
            "INTAKE_MASTER_KEYS": os.environ.get("INTAKE_MASTER_KEYS", keys["master_keys"]),
            "NOTIFY_WEBHOOK_SIGNING_KEY": self.webhook_signing_key(),
            "AUDIT_SIGNING_KEY_FILE": os.environ.get(
                "AUDIT_SIGNING_KEY_FILE", str(self.folder.resolve() / "audit-signing.key")
            ),
            # One identity for every service: intake installs these and announces them; the
            # other services' token projections follow (their consumers read from the start).
            "INTAKE_BOOTSTRAP_TOKENS": os.environ.get(
                "INTAKE_BOOTSTRAP_TOKENS",
                f"operator:province={keys['operator_token']},"
                f"coordinator:province={keys['coordinator_token']},"
                f"auditor:province={keys['auditor_token']}",
            ),
            **self.extra_env,
        }
        if "intake" in self.services:  # partners are told where to read a case's details
            env.setdefault("NOTIFY_INTAKE_PUBLIC_URL", self.services["intake"].url)
        if name == "notify":  # pages name the console, which starts after notify
            env.setdefault("NOTIFY_CONSOLE_PUBLIC_URL", self._url_of("console"))
            env.setdefault("NOTIFY_PARTNERS_FILE", str(self.dev_partners_file().resolve()))
        if name == "console":  # the console calls every other service's HTTP API
            for other, service in self.services.items():
                if other != "console":
                    env[f"{other.upper()}_URL"] = service.url
            env.setdefault("CONSOLE_SESSION_SECRET", keys["console_session_secret"])
            # Where `rujuk up`'s supervisor says which process crash-loops (none: no banner).
            env.setdefault("CONSOLE_SUPERVISION_FILE", str(self.supervision_file.resolve()))
        return env

    def webhook_signing_key(self) -> str:
        """The key notify signs webhooks with (each agency's ``whsec_…`` derives from it)."""
        return os.environ.get("NOTIFY_WEBHOOK_SIGNING_KEY", self.secrets()["webhook_signing_key"])

    def _url_of(self, name: str) -> str:
        """A service's URL, started or not: its port is chosen now if need be, and kept."""
        if name in self.services:
            return self.services[name].url
        if name not in self._reserved_ports:
            self._reserved_ports[name] = self._new_port(name)
        port = self._reserved_ports[name]
        return f"http://127.0.0.1:{port}"

    def dev_partners_file(self) -> Path:
        """Notify's directory for a development stack: the shipped SOPs' on-call roles with
        invented addresses (the agencies need none: their feed, and the webhook base URL)."""
        path = self.folder / "notify-partners.json"
        path.write_text(json.dumps(DEV_ON_CALL_DIRECTORY, indent=2))
        return path

    def _nats_identity(self, name: str) -> dict[str, str]:
        """Each service is itself on the bus: its own nkey, fenced by the authorization."""
        if self.nats_keyring is None:  # someone else's server: its URL as given
            return {"NATS_URL": self.nats_url}
        identity = {"NATS_URL": self.nats_public_url}
        if name in SERVICE_GRANTS:
            identity["NATS_NKEY_SEED_FILE"] = str(self.nats_keyring.service_seed_file(name))
        if self.nats_public_url.startswith("tls://"):
            identity["NATS_TLS_CA_FILE"] = str(self.nats_keyring.ca_file)
        return identity

    def start_service(self, name: str) -> ServiceProcess:
        if not self._provisioned:
            self.provision_database()
        existing = self.services.get(name)
        if existing:
            port = existing.port
        elif name in self._reserved_ports:
            port = self._reserved_ports.pop(name)
        else:
            port = self._new_port(name)
        logs = self.folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        service = ServiceProcess(name, port, logs / f"{name}.log")
        with service.log_file.open("ab") as log:
            service.process = subprocess.Popen(
                [sys.executable, "-m", name],
                env=self.service_env(name, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.services[name] = service
        return service

    def start(self, timeout: float = 60) -> None:
        self.start_servers()
        self.provision_database()
        for name in SERVICES:
            self.start_service(name)
        self.wait_healthy(timeout)
        self.wait_sops_known(timeout)
        if self.ports is not None:
            self.ports.record(self.listening_ports())
        self._write_connection_file()

    def listening_ports(self) -> dict[str, int]:
        """Each process this stack started, and its port."""
        found = {name: service.port for name, service in self.services.items()}
        for name, server in (("nats", self.nats), ("postgres", self.postgres)):
            if server is not None:
                found[name] = server.port
        return found

    @property
    def supervision_file(self) -> Path:
        return self.folder / "supervision.json"

    @property
    def connection_file(self) -> Path:
        return self.folder / "connection.json"

    def _write_connection_file(self) -> None:
        """Where a running stack's servers are, so other `rujuk` commands can find them. The
        commands act as the operator on the bus and as one service's role in PostgreSQL (never
        the administrator), so the file holds credentials: 0600."""
        urls = {f"{name.upper()}_URL": service.url for name, service in self.services.items()}
        found: dict[str, object] = {"NATS_URL": self.nats_url, **urls}
        if self.nats_keyring is not None:
            found["RUJUK_NATS_KEYRING"] = str(self.nats_keyring.folder)
        found[DATABASE_URLS] = {name: self.service_database_url(name) for name in SCHEMAS}
        found[SERVICE_SECRETS] = {
            "notify": {"NOTIFY_WEBHOOK_SIGNING_KEY": self.webhook_signing_key()}
        }
        found.update(self.connection_extra)
        write_private(self.connection_file, json.dumps(found))

    def wait_healthy(self, timeout: float = 60, names: tuple[str, ...] = SERVICES) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for name in sorted(pending):
                service = self.services[name]
                assert service.process is not None
                if service.process.poll() is not None:
                    raise StackError(
                        f"{name} exited with code {service.process.returncode}; "
                        f"see {service.log_file}\n{_tail(service.log_file)}"
                    )
                try:
                    if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise StackError(f"not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.2)

    def wait_sops_known(self, timeout: float = 60) -> None:
        """Until intake knows each SOP routing had in force when it started (routing announces
        them at start, intake learns them from the bus; both /healthz say which): a report
        filed right after the start is not refused for a district intake has not heard of."""
        deadline = time.monotonic() + timeout
        while True:
            wanted: dict[str, int] = self._health("routing").get("sops_in_force") or {}
            known: dict[str, int] = self._health("intake").get("sops_in_force") or {}
            missing = sorted(d for d, version in wanted.items() if known.get(d, 0) < version)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"intake has not learnt of the SOPs in force for {', '.join(missing)} "
                    f"after {timeout:.0f}s; see {self.services['intake'].log_file}"
                )
            time.sleep(0.1)

    def _health(self, name: str) -> dict[str, Any]:
        try:
            found = httpx.get(f"{self.services[name].url}/healthz", timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def operator_headers(self) -> dict[str, str]:
        """The development operator's credentials (installed by intake at start)."""
        return {"Authorization": f"Bearer {self.secrets()['operator_token']}"}

    def exited_services(self) -> list[str]:
        return [
            name
            for name, service in self.services.items()
            if service.process is not None and service.process.poll() is not None
        ]

    def _running(self, name: str) -> subprocess.Popen[bytes] | None:
        service = self.services.get(name)
        if service is None or service.process is None or service.process.poll() is not None:
            return None
        return service.process

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        process = self._running(name)
        if process is not None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            _wait_or_kill(process)

    def stop(self) -> None:
        """Every service is told to stop at once, each shutting down on its own (one at a time
        took a second more), then the servers."""
        self.connection_file.unlink(missing_ok=True)
        running = [p for name in reversed(SERVICES) if (p := self._running(name)) is not None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            _wait_or_kill(process)
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()

    def secrets(self) -> dict[str, str]:
        """Development secrets, made once per stack folder and kept (the vault needs its key);
        any that an older folder lacks are added. The development tokens look like every token
        intake issues (``rujuk_…``); one an older folder made without the prefix is made anew
        (intake installs the new one at start)."""
        path = self.folder / "dev-secrets.json"
        existing: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted: dict[str, Callable[[], str]] = {
            "master_keys": lambda: new_master_key_spec("dev1"),
            "webhook_signing_key": lambda: secrets.token_urlsafe(32),
            "console_session_secret": lambda: secrets.token_urlsafe(32),
        }
        for token in DEVELOPMENT_TOKENS:
            wanted[token] = new_token_secret
            if not existing.get(token, TOKEN_PREFIX).startswith(TOKEN_PREFIX):
                del existing[token]
        for schema in SCHEMAS:  # each service's PostgreSQL role
            wanted[f"database_password_{schema}"] = lambda: secrets.token_urlsafe(24)
        missing = {name: make() for name, make in wanted.items() if name not in existing}
        if missing:
            write_private(path, json.dumps({**existing, **missing}))
        return {**existing, **missing}


def running_stack_env(folder: Path, acting_as: str | None = None) -> dict[str, str]:
    """What a `rujuk` command needs to reach the stack `rujuk up` runs from ``folder``, if it
    runs: NATS_URL, the services' URLs and, ``acting_as`` a service, DATABASE_URL as that
    service's own role and the secrets of that service a command needs (notify's webhook
    signing key, for `rujuk partner webhook-secret`)."""
    try:
        loaded: dict[str, object] = json.loads((folder / "connection.json").read_text())
    except (OSError, ValueError):
        return {}
    found = {name: value for name, value in loaded.items() if isinstance(value, str)}
    databases = loaded.get(DATABASE_URLS)
    if acting_as is not None and isinstance(databases, dict) and acting_as in databases:
        found["DATABASE_URL"] = str(databases[acting_as])
    service_secrets = loaded.get(SERVICE_SECRETS)
    if acting_as is not None and isinstance(service_secrets, dict):
        its_own = service_secrets.get(acting_as)
        if isinstance(its_own, dict):
            found.update({name: str(value) for name, value in its_own.items()})
    return found


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Until ``process`` has exited; killed if it takes longer than ``timeout``."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _run_apart(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, on a loop of its own in a thread of
    its own, whether or not the caller's thread already runs a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, work).result()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
