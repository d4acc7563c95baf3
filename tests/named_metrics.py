"""The metric names that deploy/'s alert rules and Grafana dashboards query, and the names a
service's /metrics exposes: for the test that every name queried is one a service exports."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rujuk.rules.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# Series Prometheus makes itself, not a service.
PROMETHEUS_OWN = frozenset({"up"})
_NAME = re.compile(r"\b(rujuk_[a-z0-9_]+|up)\b(?!\s*\()")
_HISTOGRAM_SAMPLES = ("_bucket", "_count", "_sum")


def rule_expressions() -> dict[str, str]:
    """Alert name -> its PromQL."""
    document = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """'<dashboard uid>: <panel title>' (with a letter per query) -> its PromQL."""
    found: dict[str, str] = {}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                found[f"{dashboard['uid']}: {panel['title']} {target['refId']}"] = target["expr"]
        for variable in dashboard["templating"]["list"]:
            found[f"{dashboard['uid']}: ${variable['name']}"] = variable["definition"]
    return found


def names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (label names and functions left out)."""
    without_matchers = re.sub(r"\{[^}]*\}", "", expression)
    without_grouping = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_matchers)
    return set(_NAME.findall(without_grouping))


def exposed_names(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition declares (``# TYPE`` lines, so a
    labelled metric that has seen no value yet counts), histogram samples included."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in _HISTOGRAM_SAMPLES)
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
    return names
