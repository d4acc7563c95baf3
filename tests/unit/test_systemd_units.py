"""deploy/systemd: the units a district installs to run rujuk without Docker (issue 23). Each
process restarts as `rujuk up`'s supervisor does (within a second), runs as the rujuk user,
hardened, and gets every secret as a file (a systemd credential), never inline."""

import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from audit.settings import AuditSettings
from console.settings import ConsoleSettings
from intake.settings import IntakeSettings
from notify.settings import NotifySettings
from routing.settings import RoutingSettings
from rujuk.stack import SERVICES
from rujuk.supervise import Backoff
from rujuk_runtime.embedded import pg_binary
from rujuk_runtime.roles import SCHEMAS
from rujuk_runtime.settings import ServiceSettings

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings, "routing": RoutingSettings, "notify": NotifySettings,
    "audit": AuditSettings, "console": ConsoleSettings,
}  # fmt: skip
PROCESSES = (*SERVICES, "nats", "postgres")


def parse(path: Path) -> dict[str, list[str]]:
    """A unit's ``Section.Key`` -> every value given (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def one(unit: dict[str, list[str]], key: str) -> str:
    values = unit.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)\s*(ms|s|min)?", value).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0}[unit]


def secret_variables() -> set[str]:
    """Every variable that holds a secret: the services' SecretStr settings, each service's
    DATABASE_URL (its role's password inside) and the passwords `rujuk db provision` sets."""
    names = {"DATABASE_URL", "AUDIT_SIGNING_KEY"}
    names |= {f"{schema.upper()}_DB_PASSWORD" for schema in SCHEMAS}
    for settings in SETTINGS.values():
        prefix = str(settings.model_config.get("env_prefix", ""))
        for field, info in settings.model_fields.items():
            if "SecretStr" in str(info.annotation) or info.annotation is SecretStr:
                names.add(f"{prefix}{field}".upper())
    return names


def required_secrets(service: str) -> set[str]:
    """The secrets ``service`` refuses to start without (the README's settings table says
    "required"), and its database URL (its role's password inside)."""
    readme = (UNITS.parents[1] / "README.md").read_text()
    required = re.findall(r"^\| `([A-Z_]+)` \| required \|", readme, flags=re.MULTILINE)
    assert "INTAKE_MASTER_KEYS" in required, "the README's settings table changed its form"
    return {"DATABASE_URL"} | {name for name in required if name.startswith(f"{service.upper()}_")}


def test_every_process_has_a_unit_the_target_starts() -> None:
    target = parse(UNITS / "rujuk.target")
    wanted = " ".join(target["Unit.Wants"]).split()
    for name in (*PROCESSES, "provision"):
        assert (UNITS / f"rujuk-{name}.service").exists(), name
        assert f"rujuk-{name}.service" in wanted, name
    assert "rujuk-retry.timer" in wanted


@pytest.mark.parametrize("name", PROCESSES)
def test_restarted_like_the_supervisor_as_the_rujuk_user_hardened(name: str) -> None:
    unit = parse(UNITS / f"rujuk-{name}.service")
    assert one(unit, "Service.Restart") in ("always", "on-failure")
    # The supervisor's first restart comes within a second; so does systemd's.
    assert seconds(one(unit, "Service.RestartSec")) <= min(1.0, Backoff().first_seconds)
    # A crash loop as the supervisor counts one (five exits in a minute) marks the unit failed.
    assert seconds(one(unit, "Unit.StartLimitIntervalSec")) == Backoff().window_seconds
    assert int(one(unit, "Unit.StartLimitBurst")) == Backoff().loop_after
    assert one(unit, "Service.User") == "rujuk"
    assert one(unit, "Service.Group") == "rujuk"
    assert one(unit, "Service.NoNewPrivileges") == "yes"
    assert one(unit, "Service.ProtectSystem") == "strict"
    assert one(unit, "Service.ProtectHome") == "yes"
    assert one(unit, "Service.PrivateTmp") == "yes"
    assert one(unit, "Service.CapabilityBoundingSet") == ""
    assert one(unit, "Service.UMask") == "0077"
    # Writable: its own state folder only (ProtectSystem=strict makes the rest read-only).
    assert one(unit, "Service.StateDirectory") == f"rujuk/{name}"
    assert one(unit, "Service.StateDirectoryMode") == "0700"
    assert "rujuk.target" in one(unit, "Install.WantedBy")
    if name in SERVICES:
        assert one(unit, "Service.ExecStart") == f"/opt/rujuk/.venv/bin/python -m {name}"
        assert one(unit, "Service.EnvironmentFile") == "/etc/rujuk/rujuk.env"


def test_every_secret_is_a_file_never_inline() -> None:
    secrets = secret_variables()
    assert {"INTAKE_MASTER_KEYS", "NOTIFY_WEBHOOK_SIGNING_KEY", "CONSOLE_SESSION_SECRET",
            "NOTIFY_SMTP_PASSWORD", "INTAKE_DB_PASSWORD"} <= secrets  # fmt: skip
    settings_file = (UNITS / "rujuk.env").read_text()
    for line in settings_file.splitlines():
        name = line.lstrip("#").partition("=")[0].strip()
        assert name not in secrets, f"rujuk.env sets the secret {name}"
    for path in sorted(UNITS.glob("rujuk*.service")):
        unit = parse(path)
        inline = " ".join(unit.get("Service.Environment", []) + unit.get("Service.ExecStart", []))
        for secret in secrets:
            assert f"{secret}=" not in inline, f"{path.name} sets {secret} inline"
        assert "Service.EnvironmentFile" not in unit or all(
            value == "/etc/rujuk/rujuk.env" for value in unit["Service.EnvironmentFile"]
        )
        loaded = dict(value.split(":", 1) for value in unit.get("Service.LoadCredential", []))
        for name, source in loaded.items():
            assert source.startswith("/etc/rujuk/"), (path.name, name, source)
    assert required_secrets("notify") == {"DATABASE_URL", "NOTIFY_WEBHOOK_SIGNING_KEY"}
    for service in SERVICES:
        loaded = dict(
            value.split(":", 1)
            for value in parse(UNITS / f"rujuk-{service}.service")["Service.LoadCredential"]
        )
        for secret in required_secrets(service):
            assert loaded.get(secret) == f"/etc/rujuk/credentials/{service}/{secret}", service
    provision = parse(UNITS / "rujuk-provision.service")
    loaded = dict(value.split(":", 1) for value in provision["Service.LoadCredential"])
    assert set(loaded) == {"DATABASE_URL"} | {f"{s.upper()}_DB_PASSWORD" for s in SCHEMAS}


def test_each_service_on_the_bus_is_itself_by_its_seed_file() -> None:
    for service in ("intake", "routing", "notify", "audit"):
        unit = parse(UNITS / f"rujuk-{service}.service")
        assert "NATS_NKEY_SEED_FILE=%d/NATS_NKEY_SEED" in unit["Service.Environment"]
        seed = f"NATS_NKEY_SEED:/etc/rujuk/nats-keyring/services/{service}/seed.nk"
        assert seed in unit["Service.LoadCredential"]


def test_systemd_analyze_verify_finds_nothing_wrong(tmp_path: Path) -> None:
    """systemd's own check, on copies that point at this machine's programs (the units name
    /opt/rujuk, where a district installs them). Where systemd-analyze is absent, it says so:
    the tests above are what is checked then."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze is absent on this machine: the units were checked by parsing only")
        return
    venv = str(Path(sys.executable).parent.parent)
    pgsql = str(pg_binary("postgres").parent.parent)
    for path in UNITS.iterdir():
        text = path.read_text().replace("/opt/rujuk/.venv", venv)
        (tmp_path / path.name).write_text(text.replace("/opt/rujuk/pgsql", pgsql))
    units = sorted(
        str(p) for p in tmp_path.iterdir() if p.suffix in (".service", ".target", ".timer")
    )
    # Its warnings go to the journal unless told otherwise: to this test, here.
    env = {**os.environ, "SYSTEMD_LOG_TARGET": "console"}
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True,
                            timeout=60, check=False, env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", result.stdout + result.stderr


def test_make_credentials_writes_every_file_the_units_load_private_and_once(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "credentials"
    env = {**os.environ, "CREDENTIALS": str(folder), "PYTHON": sys.executable,
           "OWNER": pwd.getpwuid(os.getuid()).pw_name}  # fmt: skip
    script = UNITS / "make-credentials.sh"
    made = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    for path in sorted(UNITS.glob("rujuk*.service")):
        for value in parse(path).get("Service.LoadCredential", []):
            source = value.split(":", 1)[1]
            if source.startswith("/etc/rujuk/credentials/"):
                file = folder / source.removeprefix("/etc/rujuk/credentials/")
                assert file.is_file(), f"{path.name} loads {source}, which the script does not make"
                assert file.stat().st_mode & 0o777 == 0o600, file
                assert file.read_text().strip(), file
    assert folder.stat().st_mode & 0o077 == 0
    for service in SERVICES:  # each service's URL carries the password provisioning sets
        password = (folder / "provision" / f"{service.upper()}_DB_PASSWORD").read_text().strip()
        url = (folder / service / "DATABASE_URL").read_text().strip()
        assert url == f"postgresql://rujuk_{service}:{password}@127.0.0.1:5532/rujuk"
    before = {p: p.read_text() for p in folder.rglob("*") if p.is_file()}
    again = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                           timeout=60, check=True)  # fmt: skip
    assert again.stdout == "", again.stdout  # nothing made twice, nothing changed
    assert {p: p.read_text() for p in folder.rglob("*") if p.is_file()} == before
    for text in (made.stdout + made.stderr, again.stdout + again.stderr):
        for secret in before.values():
            assert secret.strip() not in text  # it names the files, never what is in them


def test_a_service_reads_its_secrets_from_systemds_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "DATABASE_URL").write_text("postgresql://rujuk_intake:from-file@db/rujuk\n")
    (tmp_path / "INTAKE_MASTER_KEYS").write_text("k1:AAAA\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://inline@db/rujuk")
    monkeypatch.setenv("INTAKE_HTTP_PORT", "9081")
    settings = IntakeSettings()
    assert settings.database_url == "postgresql://rujuk_intake:from-file@db/rujuk"  # file wins
    assert settings.master_keys.get_secret_value() == "k1:AAAA"
    assert settings.http_port == 9081  # the rest from the environment, as before
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert IntakeSettings().database_url == "postgresql://inline@db/rujuk"
