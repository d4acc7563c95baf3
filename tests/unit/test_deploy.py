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
        assert environment["NATS_URL"].count("nats://") == 3
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
