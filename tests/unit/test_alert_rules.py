"""The alert rules Prometheus loads (deploy/prometheus/rujuk.rules.yml) are valid, and each
fires on the synthetic series that should fire it and stays silent on the others
(deploy/prometheus/tests/), checked by Prometheus's own promtool, which `make test` installs
from Debian's prometheus package where it can. That every metric the rules name is one the
services export is checked against a running stack (tests/integration/test_observability.py)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
NOT_RUN = "promtool tests did not run: no promtool (apt-get install prometheus)"

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason=NOT_RUN)


@needs_promtool
def test_the_rules_are_valid() -> None:
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(PROMETHEUS / "rujuk.rules.yml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    tested = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(PROMETHEUS / "tests" / "rujuk.rules.test.yml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load((PROMETHEUS / "rujuk.rules.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_is_tested_and_says_what_is_wrong_in_both_languages() -> None:
    tests = (PROMETHEUS / "tests" / "rujuk.rules.test.yml").read_text()
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert " / " in str(annotations["summary"]), rule["alert"]  # Indonesian / English
        assert str(annotations["runbook_url"]).startswith("docs/operations.md#")
        assert f"alertname: {rule['alert']}" in tests, f"{rule['alert']} has no promtool test"


def test_every_runbook_link_leads_to_a_section_of_the_operations_guide() -> None:
    guide = (PROMETHEUS.parents[1] / "docs" / "operations.md").read_text()
    anchors = {
        line.lstrip("#").strip().lower().replace(" ", "-")
        for line in guide.splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        anchor = str(annotations["runbook_url"]).split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operations.md"


def test_prometheus_loads_the_rules_and_scrapes_no_json() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert "/etc/prometheus/rujuk.rules.yml" in config["rule_files"]
    assert all(job.get("metrics_path") != "/varz" for job in config["scrape_configs"])
