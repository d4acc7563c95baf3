"""`rujuk sop check / explain / publish`, as an operator runs them."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from routing import cli
from routing.settings import SHIPPED_SOPS

runner = CliRunner()
SOP_3514 = SHIPPED_SOPS / "3514.yaml"
AT = ["--at", "2026-11-01T08:30:00+00:00"]


def run(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


@pytest.mark.parametrize("district", ["3514", "3513"])
def test_check_says_a_shipped_sop_is_ok(district: str) -> None:
    result = run("check", str(SHIPPED_SOPS / f"{district}.yaml"))
    assert result.exit_code == 0
    assert f"SOP {district} v1 (sop-{district}) OK / SOP sah" in result.output


def test_check_lists_every_error_with_its_line(tmp_path: Path) -> None:
    text = SOP_3514.read_text()
    broken = text.replace("agency: lbh-pasuruan", "agency: lbh-x", 1).replace(
        "acknowledge_within_minutes: 2880", "acknowledge_within_minutes: soon", 1
    )
    (tmp_path / "3514.yaml").write_text(broken)
    result = run("check", str(tmp_path / "3514.yaml"))
    assert result.exit_code == 1
    lines = broken.splitlines()
    agency_line = next(n for n, line in enumerate(lines, 1) if "lbh-x" in line)
    minutes_line = next(n for n, line in enumerate(lines, 1) if "soon" in line)
    assert "SOP tidak sah / SOP refused: 2 masalah / problems" in result.output
    assert (
        f"SOP 3514 v1, rule legal-aid-for-police-process (line {agency_line}): "
        "agency 'lbh-x' is not in the directory"
    ) in result.output
    assert f"rule family-counselling (line {minutes_line}): " in result.output


def test_check_of_a_missing_file_says_so() -> None:
    result = run("check", "/nonexistent/3514.yaml")
    assert result.exit_code == 2
    assert "cannot read" in result.output


def write(tmp_path: Path, document: dict[str, Any]) -> str:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(document))
    return str(path)


ADULT = {
    "violence_types": ["physical"],
    "age_group": "adult",
    "sex": "female",
    "district_code": "35.14",
    "kecamatan": "Gempol",
    "injury": True,
    "consent": {"share_with_health": True},
}


def test_explain_names_rules_referrals_deadlines_chains_and_withheld(tmp_path: Path) -> None:
    result = run("explain", str(SOP_3514), write(tmp_path, ADULT), *AT)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "  - injury: Injury - medical care at the nearest health facility" in out
    assert "health -> pkm-gempol (Puskesmas Gempol), urgent" in out
    assert "acknowledge by: 2026-11-01 10:30 UTC (120 min)" in out
    assert "escalation: rsud-bangil -> dp3ap2kb-pasuruan" in out
    assert (
        "  - police -> polres-pasuruan-ppa: no consent to share with police "
        "(share_with_police is false) (aturan / rules: adult-police-report)"
    ) in out
    assert "legal basis" not in out


def test_explain_shows_the_legal_basis_of_a_consent_override(tmp_path: Path) -> None:
    child = {**ADULT, "age_group": "child", "violence_types": ["sexual"], "consent": {}}
    event = {"type": "id.rujuk.case.reported.v1", "data": {"case_id": "x", "triage": child}}
    result = run("explain", str(SOP_3514), write(tmp_path, event), *AT)
    assert result.exit_code == 0, result.output
    assert (
        "without consent, legal basis: UU 35/2014 Perlindungan Anak, Pasal 72; UU 12/2022 TPKS"
    ) in result.output
    assert "Ditahan / withheld (0):\n  (tidak ada / none)" in result.output


def test_explain_refuses_what_is_not_triage_facts_or_another_district(tmp_path: Path) -> None:
    bad = run("explain", str(SOP_3514), write(tmp_path, {"name": "x"}), *AT)
    assert bad.exit_code == 1
    assert "not triage facts" in bad.output
    other = run("explain", str(SOP_3514), write(tmp_path, {**ADULT, "district_code": "3513"}))
    assert other.exit_code == 1
    assert "report of district 3513" in other.output


def test_publish_sends_the_yaml_with_the_token_and_reports_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: dict[str, Any] = {}

    def post(url: str, *, content: bytes, headers: dict[str, str], timeout: float) -> Any:
        sent.update(url=url, content=content, headers=headers)
        return httpx.Response(201, json={"created": True, "sha256": "ab" * 32})

    monkeypatch.setattr(cli.httpx, "post", post)
    monkeypatch.setenv("RUJUK_TOKEN", "secret-token")
    result = run("publish", str(SOP_3514), "--url", "http://routing:8082/")
    assert result.exit_code == 0, result.output
    assert "SOP 3514 v1 diterbitkan / published (baru / new)" in result.output
    assert sent["url"] == "http://routing:8082/v1/sops"
    assert sent["content"] == SOP_3514.read_bytes()
    assert sent["headers"]["Authorization"] == "Bearer secret-token"
    assert sent["headers"]["Content-Type"] == "application/yaml"


def test_publish_prints_the_servers_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def post(url: str, **_: Any) -> Any:
        return httpx.Response(409, json={"detail": "SOP 3514 v2 is in force"})

    monkeypatch.setattr(cli.httpx, "post", post)
    result = run("publish", str(SOP_3514), "--token", "t")
    assert result.exit_code == 1
    assert "Ditolak / refused (409): SOP 3514 v2 is in force" in result.output


def test_publish_without_a_token_or_of_a_broken_sop_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def post(*_: Any, **__: Any) -> Any:
        raise AssertionError("nothing should be sent")

    monkeypatch.setattr(cli.httpx, "post", post)
    monkeypatch.delenv("RUJUK_TOKEN", raising=False)
    assert run("publish", str(SOP_3514)).exit_code == 2
    (tmp_path / "3514.yaml").write_text("sop_id: [\n")
    assert run("publish", str(tmp_path / "3514.yaml"), "--token", "t").exit_code == 1


def test_explain_shows_who_is_paged_past_the_coordinator(tmp_path: Path) -> None:
    result = run("explain", str(SOP_3514), write(tmp_path, ADULT), *AT)
    assert result.exit_code == 0, result.output
    assert (
        "Piket setelah koordinator / on call past the coordinator (dp3ap2kb-pasuruan):\n"
        "  diulang 3 kali, setiap 10 menit, sampai ada yang menanggapi / 3 rounds, "
        "10 minutes apart, until someone acknowledges\n"
        "  - piket-uptppa-pasuruan: Petugas piket UPT PPA Kabupaten Pasuruan / UPT PPA duty "
        "officer (sms, webhook)\n"
    ) in result.output


def test_check_refuses_an_sop_without_an_on_call_list(tmp_path: Path) -> None:
    text = SOP_3514.read_text()
    start, end = text.index("on_call:"), text.index("\nconsent:")
    (tmp_path / "3514.yaml").write_text(text[:start] + text[end + 1 :])
    result = run("check", str(tmp_path / "3514.yaml"))
    assert result.exit_code == 1
    assert "'on_call' is required" in result.output


# --- proposals ------------------------------------------------------------------------------

PROPOSAL_ID = "prop-" + "ab" * 16
PROPOSAL = {
    "proposal_id": PROPOSAL_ID,
    "district_code": "3514",
    "version": 2,
    "base_version": 1,
    "state": "open",
    "asked": [
        {"agency_id": "polres-pasuruan-ppa", "duty_changes": ["shorter_deadline"]},
        {"agency_id": "rsud-bangil", "duty_changes": ["new_service"]},
        {"agency_id": "lbh-pasuruan", "duty_changes": ["new_escalation_step"]},
    ],
    "agreed": ["polres-pasuruan-ppa"],
    "objected": [{"agency_id": "rsud-bangil", "reason": "capacity_insufficient"}],
    "awaiting": ["lbh-pasuruan"],
}


class Routing:
    """A fake routing answering ``httpx.request``: records each call, answers ``response``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, response: httpx.Response) -> None:
        self.calls: list[dict[str, Any]] = []
        self.response = response
        monkeypatch.setattr(cli.httpx, "request", self.request)
        monkeypatch.setenv("RUJUK_TOKEN", "secret-token")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.calls.append({"method": method, "url": url, **kwargs})
        return self.response


def test_propose_sends_the_yaml_and_shows_who_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    routing = Routing(monkeypatch, httpx.Response(201, json=PROPOSAL))
    result = run("propose", str(SOP_3514))
    assert result.exit_code == 0, result.output
    [call] = routing.calls
    assert (call["method"], call["url"]) == ("POST", "http://127.0.0.1:8082/v1/sop-proposals")
    assert call["content"] == SOP_3514.read_bytes()
    assert "Usulan diajukan / proposed (baru / new)" in result.output
    assert "polres-pasuruan-ppa [shorter_deadline]: setuju / agreed" in result.output
    assert "rsud-bangil [new_service]: keberatan / objected: capacity_insufficient" in result.output
    assert "lbh-pasuruan [new_escalation_step]: belum menjawab / yet to answer" in result.output


def test_answer_agrees_or_objects_with_a_code_and_never_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routing = Routing(monkeypatch, httpx.Response(200, json=PROPOSAL))
    assert run("answer", PROPOSAL_ID, "--agree").exit_code == 0
    assert run("answer", PROPOSAL_ID, "--object", "legal_concern").exit_code == 0
    assert [c["json"] for c in routing.calls] == [
        {"decision": "agree"},
        {"decision": "object", "reason": "legal_concern"},
    ]
    assert routing.calls[0]["url"].endswith(f"/v1/sop-proposals/{PROPOSAL_ID}/answers")
    assert run("answer", PROPOSAL_ID).exit_code == 2
    assert run("answer", PROPOSAL_ID, "--agree", "--object", "other").exit_code == 2
    assert len(routing.calls) == 2


def test_publish_a_proposal_with_its_effective_date_and_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published = {
        "district_code": "3514",
        "version": 2,
        "effective_at": "2026-12-01T00:00:00+00:00",
        "override_reason": "agency_unresponsive",
        "agencies_not_agreed": ["lbh-pasuruan"],
    }
    routing = Routing(monkeypatch, httpx.Response(200, json=published))
    result = run(
        "publish", PROPOSAL_ID, "--effective-at", "2026-12-01T00:00:00",
        "--override", "agency_unresponsive",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert routing.calls[0]["json"] == {
        "effective_at": "2026-12-01T00:00:00+00:00",
        "override_reason": "agency_unresponsive",
    }
    assert "SOP 3514 v2 diterbitkan / published" in result.output
    assert "had not agreed: lbh-pasuruan" in result.output


def test_publishing_a_proposal_not_agreed_prints_the_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    detail = "belum semua lembaga setuju / not every agency whose duties change agreed"
    Routing(monkeypatch, httpx.Response(409, json={"detail": detail, "awaiting": ["x"]}))
    result = run("publish", PROPOSAL_ID)
    assert result.exit_code == 1
    assert f"Ditolak / refused (409): {detail}" in result.output
