"""compose.yaml and deploy/ stay in step with the code they run."""

import importlib.util
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_compose_runs_each_service_module_that_exists() -> None:
    services = _compose()["services"]
    for name in ("intake", "routing", "notify", "audit"):
        assert services[name]["command"] == ["python", "-m", name]
        assert importlib.util.find_spec(f"{name}.__main__") is not None
        assert services[name]["environment"]["NATS_URL"] == "nats://nats:4222"
        assert "healthcheck" in services[name]


def test_compose_mounts_the_nats_configuration_from_deploy() -> None:
    nats = _compose()["services"]["nats"]
    mounted = [v.split(":")[0] for v in nats["volumes"] if v.startswith("./")]
    assert mounted == ["./deploy/nats/nats-server.conf"]
    assert "jetstream" in (ROOT / mounted[0]).read_text()
