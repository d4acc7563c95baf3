"""Grafana's provisioned dashboards and Alertmanager's configuration, as compose runs them."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.named_metrics import DASHBOARDS, ROOT, dashboard_expressions, names_in, rule_expressions

RENDER = ROOT / "deploy" / "alertmanager" / "render-config.sh"
AMTOOL = shutil.which("amtool") or str(ROOT / ".tools" / "amtool")


def test_each_dashboard_is_provisioned_from_prometheus_and_queries_rujuk_metrics() -> None:
    assert {path.stem for path in DASHBOARDS} == {"rujuk-ops", "rujuk-districts"}
    provider = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "rujuk.yml").read_text()
    )
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["grafana"]
    mounted = {volume.split(":")[1] for volume in compose["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] == path.stem
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "prometheus", panel["title"]
            assert " / " in panel["title"], f"{panel['title']}: Bahasa Indonesia / English"
    for where, expression in dashboard_expressions().items():
        assert names_in(expression), f"{where} queries no metric: {expression}"


def test_the_per_district_dashboard_filters_every_query_by_district() -> None:
    districts = json.loads((ROOT / "deploy/grafana/dashboards/rujuk-districts.json").read_text())
    for panel in districts["panels"]:
        for target in panel["targets"]:
            if "agency_id, state" in target["expr"]:  # open referrals: by agency, no district
                continue
            assert 'district=~"$district"' in target["expr"], panel["title"]


def test_metric_names_are_read_from_rules_and_dashboards() -> None:
    """The parser the scrape test relies on finds names, and not labels or functions."""
    assert names_in(
        'histogram_quantile(0.9, sum by (le, district) (rate(rujuk_x_bucket{district=~"a"}[5m])))'
    ) == {"rujuk_x_bucket"}
    assert names_in('time() - max(rujuk_head) > 2 or up{job="rujuk"} == 0') == {
        "rujuk_head",
        "up",
    }
    assert len(rule_expressions()) >= 10


def _render(tmp_path: Path, **environment: str) -> tuple[Path, str]:
    out = tmp_path / "alertmanager.yml"
    done = subprocess.run(
        ["/bin/sh", str(RENDER), str(out)],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return out, done.stderr


def test_alerts_go_to_the_deployments_email_and_webhook(tmp_path: Path) -> None:
    out, warning = _render(
        tmp_path,
        ALERT_EMAIL_TO="piket@contoh.example",
        NOTIFY_SMTP_HOST="smtp.contoh.example",
        NOTIFY_SMTP_USERNAME="rujuk",
        NOTIFY_SMTP_PASSWORD='kata"sandi\\contoh',
        ALERT_WEBHOOK_URL="https://hooks.contoh.example/alerts?team=ops",
    )
    assert warning == ""
    config = yaml.safe_load(out.read_text())
    [receiver] = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    [email] = receiver["email_configs"]
    assert email["to"] == "piket@contoh.example"
    assert email["smarthost"] == "smtp.contoh.example:587"
    assert email["auth_password"] == 'kata"sandi\\contoh'  # quoted as written
    assert receiver["webhook_configs"][0]["url"] == "https://hooks.contoh.example/alerts?team=ops"


def test_without_a_channel_alertmanager_starts_and_says_nobody_is_told(tmp_path: Path) -> None:
    out, warning = _render(tmp_path)
    assert "no alert channel" in warning
    assert "tidak ada saluran" in warning
    [receiver] = yaml.safe_load(out.read_text())["receivers"]
    assert set(receiver) == {"name"}


@pytest.mark.skipif(
    not Path(AMTOOL).exists(),
    reason="amtool did not run: not installed (make amtool extracts it from Debian's package)",
)
def test_alertmanager_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    out, _ = _render(
        tmp_path,
        ALERT_EMAIL_TO="piket@contoh.example",
        NOTIFY_SMTP_HOST="smtp.contoh.example",
        ALERT_WEBHOOK_URL="https://hooks.contoh.example/alerts",
    )
    checked = subprocess.run(
        [AMTOOL, "check-config", str(out)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
