"""compose.yaml and deploy/ stay in step with the code they run."""

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from rujuk_runtime.embedded import nats_server_binary
from rujuk_runtime.nats_auth import NatsKeyring
from rujuk_runtime.roles import SCHEMAS, DatabaseRoles

ROOT = Path(__file__).parents[2]


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_compose_runs_each_service_module_that_exists() -> None:
    services = _compose()["services"]
    for name in ("intake", "routing", "notify", "audit"):
        assert services[name]["command"] == ["python", "-m", name]
        assert importlib.util.find_spec(f"{name}.__main__") is not None
        assert services[name]["environment"]["NATS_URL"] == "tls://nats:4222"
        assert "healthcheck" in services[name]


def _keyring_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> subpath of each mount of the nats-keyring volume."""
    return {
        v["target"]: v["volume"]["subpath"]
        for v in service.get("volumes", [])
        if isinstance(v, dict) and v["source"] == "nats-keyring"
    }


def test_compose_gives_each_service_its_own_nats_key_and_the_ca_only() -> None:
    services = _compose()["services"]
    for name in ("intake", "routing", "notify", "audit"):
        service = services[name]
        mounts = _keyring_mounts(service)
        assert mounts == {"/run/rujuk/nats": f"services/{name}", "/run/rujuk/nats-ca": "public"}
        assert all(v["read_only"] for v in service["volumes"] if isinstance(v, dict))
        environment = service["environment"]
        assert environment["NATS_NKEY_SEED_FILE"] == "/run/rujuk/nats/seed.nk"
        assert environment["NATS_TLS_CA_FILE"] == "/run/rujuk/nats-ca/ca.pem"
    assert _keyring_mounts(services["nats"]) == {"/etc/nats/server": "server"}
    assert services["nats"]["depends_on"]["nats-keyring"] == {
        "condition": "service_completed_successfully"
    }
    assert services["nats-keyring"]["command"][:4] == ["rujuk", "nats", "init", "/keyring"]


def _nats_server_accepts(config: Path, folder: Path, env: dict[str, str]) -> None:
    """``nats-server -t``: the configuration, beside a keyring as compose mounts it, parses."""
    NatsKeyring(folder).ensure().ensure_tls(["nats"])
    shutil.copy(config, folder / config.name)
    tls = {"NATS_TLS_CERT_FILE": str(folder / "server" / "tls-cert.pem"),
           "NATS_TLS_KEY_FILE": str(folder / "server" / "tls-key.pem")}  # fmt: skip
    result = subprocess.run(
        [str(nats_server_binary()), "-c", str(folder / config.name), "-t"],
        env={**os.environ, **tls, **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout


def test_the_single_node_configuration_compose_runs_is_valid(tmp_path: Path) -> None:
    config = ROOT / "deploy" / "nats" / "nats-server.conf"
    text = config.read_text()
    assert 'include "server/authorization.conf"' in text
    assert "tls {" in text
    assert "jetstream" in text
    _nats_server_accepts(config, tmp_path, {})
    nats = _compose()["services"]["nats"]
    mounted = [
        v.split(":")[0] for v in nats["volumes"] if isinstance(v, str) and v.startswith("./")
    ]
    assert mounted == ["./deploy/nats/nats-server.conf"]
    assert set(nats["environment"]) == {"NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE"}


def _cluster_env(tmp_path: Path, password: str) -> dict[str, str]:
    return {
        "NATS_SERVER_NAME": "n1",
        "NATS_CLIENT_PORT": "4222",
        "NATS_CLUSTER_PORT": "6222",
        "NATS_STORE_DIR": str(tmp_path / "js"),
        "NATS_ROUTE_PASSWORD": password,
        **{f"NATS_ROUTE_{n}": f"nats-route://rujuk-route:{password}@n{n}:6222" for n in (1, 2, 3)},
    }


def test_the_cluster_node_configuration_is_valid(tmp_path: Path) -> None:
    """With a route password as the docs ask for one (letters and digits, a letter first)."""
    env = _cluster_env(tmp_path, "r3b9e2c0d4f6a8b1c3d5e7f9a0b2c4d6e")
    _nats_server_accepts(ROOT / "deploy" / "nats" / "cluster" / "node.conf", tmp_path, env)


def test_a_route_password_beginning_with_a_digit_stops_nats_server(tmp_path: Path) -> None:
    """Why the docs say letters and digits, a letter first: nats-server reads a value such
    as `12-B…` (what secrets.token_urlsafe may give) as a date."""
    with pytest.raises(AssertionError, match="NATS_ROUTE_PASSWORD"):
        _nats_server_accepts(
            ROOT / "deploy" / "nats" / "cluster" / "node.conf",
            tmp_path,
            _cluster_env(tmp_path, "12-BfZ3JZCZ4G7JNWkzBhVYx9ZXtUiu"),
        )
    for place in ("README.md", "deploy/compose.cluster.yaml", "deploy/nats/cluster/node.conf"):
        assert "beginning with a letter" in " ".join((ROOT / place).read_text().split())


class _ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: `!override` / `!reset` replace what the base file says."""


_ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_mapping(node))
_ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def test_cluster_override_gives_every_node_what_node_conf_reads() -> None:
    config = (ROOT / "deploy" / "nats" / "cluster" / "node.conf").read_text()
    needed = {
        word.strip("$,[]")
        for word in config.split()
        if word.startswith("$") or word.startswith("[$")
    }
    cluster = yaml.load((ROOT / "deploy" / "compose.cluster.yaml").read_text(), _ComposeLoader)  # noqa: S506
    nodes = [cluster["services"][f"nats{n}"] for n in (1, 2, 3)]
    for node in nodes:
        assert needed <= set(node["environment"]), needed - set(node["environment"])
    assert {node["environment"]["NATS_SERVER_NAME"] for node in nodes} == {"n1", "n2", "n3"}
    for name in ("intake", "routing", "notify", "audit"):
        environment = cluster["services"][name]["environment"]
        assert environment["RUJUK_STREAM_REPLICAS"] == "3"
        assert environment["NATS_URL"].count("tls://") == 3
        assert "nats" not in cluster["services"][name]["depends_on"]


def test_prometheus_scrapes_every_service_port_that_compose_gives_it() -> None:
    services = _compose()["services"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}  # fmt: skip
    for name in ("intake", "routing", "notify", "audit"):
        port = services[name]["environment"][f"{name.upper()}_HTTP_PORT"]
        assert f"{name}:{port}" in targets
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
    collector = yaml.safe_load((ROOT / "deploy" / "otel" / "collector.yaml").read_text())
    assert "0.0.0.0:4318" in collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]


def _interpolated(value: str) -> str:
    """``${NAME:?message}`` as Compose fills it in, each variable set to ``<NAME>``."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", r"<\1>", value)


def test_compose_runs_each_service_as_its_own_postgresql_role_after_provisioning() -> None:
    services = _compose()["services"]
    roles = DatabaseRoles("rujuk")
    for name in SCHEMAS:
        url = urlsplit(_interpolated(services[name]["environment"]["DATABASE_URL"]))
        assert url.username == roles.runtime(name)
        assert url.password == f"<{name.upper()}_DB_PASSWORD>"
        assert (url.hostname, url.path) == ("postgres", "/rujuk")
    for name in ("intake", "routing", "notify", "audit"):
        assert services[name]["depends_on"]["db-provision"] == {
            "condition": "service_completed_successfully"
        }
        assert "postgres" not in services[name]["depends_on"]


def test_compose_provisions_as_the_superuser_whose_password_has_no_default() -> None:
    services = _compose()["services"]
    provisioning = services["db-provision"]
    assert provisioning["command"] == ["rujuk", "db", "provision"]
    environment = {
        name: _interpolated(value) for name, value in provisioning["environment"].items()
    }
    admin = urlsplit(environment["DATABASE_URL"])
    assert (admin.username, admin.password) == ("postgres", "<POSTGRES_PASSWORD>")
    for name in SCHEMAS:
        assert environment[f"{name.upper()}_DB_PASSWORD"] == f"<{name.upper()}_DB_PASSWORD>"
    postgres = services["postgres"]["environment"]
    assert _interpolated(postgres["POSTGRES_PASSWORD"]) == "<POSTGRES_PASSWORD>"
    assert "POSTGRES_USER" not in postgres  # the superuser is postgres, no service is
    as_superuser = [
        name
        for name, service in services.items()
        if name != "db-provision"
        and urlsplit(_interpolated(service.get("environment", {}).get("DATABASE_URL", ""))).username
        == "postgres"
    ]
    assert as_superuser == []


def test_cluster_override_still_waits_for_provisioning() -> None:
    cluster = yaml.load((ROOT / "deploy" / "compose.cluster.yaml").read_text(), _ComposeLoader)  # noqa: S506
    for name in ("intake", "routing", "notify", "audit"):
        assert cluster["services"][name]["depends_on"]["db-provision"] == {
            "condition": "service_completed_successfully"
        }


def _as_compose_gives(value: str) -> str:
    """A compose value with its ``${VAR:-default}`` as when VAR is unset (``:?`` ones made
    up: compose refuses to start without them)."""
    value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{\w+:\?[^}]*\}", "set-by-the-operator", value)


def test_the_audit_settings_accept_composes_environment_with_its_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audit.settings import AuditSettings

    environment = _compose()["services"]["audit"]["environment"]
    for name, value in environment.items():
        if name.startswith("AUDIT_"):
            monkeypatch.setenv(name, _as_compose_gives(str(value)))
    assert os.environ["AUDIT_LOG_ORIGIN"] == ""  # compose passes it empty when not set
    settings = AuditSettings()
    assert settings.log_origin is None  # the default origin, not a refusal to start
    assert settings.witnesses == []
    assert settings.http_port == 8084
