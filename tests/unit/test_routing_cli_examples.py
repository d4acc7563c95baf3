"""`rujuk sop check` runs an SOP's examples; `rujuk sop explain` lists and explains them."""

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from routing import cli
from routing.settings import SHIPPED_SOPS

runner = CliRunner()
SOP_3514 = SHIPPED_SOPS / "3514.yaml"
AT = ["--at", "2026-11-01T08:30:00+00:00"]


def run(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_check_counts_the_examples_that_pass() -> None:
    result = run("check", str(SOP_3514))
    assert result.exit_code == 0, result.output
    assert "contoh lulus / examples pass (SAMPLE DATA)" in result.output


def test_check_names_each_failing_example_with_its_line(tmp_path: Path) -> None:
    # A coordinator lengthens the post-rape deadline of the puskesmas: two mandates break.
    text = SOP_3514.read_text()
    rule = text.index("  - id: sexual-within-72h")
    edited = text[:rule] + text[rule:].replace(
        "acknowledge_within_minutes: 30", "acknowledge_within_minutes: 90", 1
    )
    path = tmp_path / "3514.yaml"
    path.write_text(edited)
    result = run("check", str(path))
    assert result.exit_code == 1
    beji = line_of(edited, "{service: health, agency: pkm-bangil, min_priority: emergency")
    assert (
        f"  SOP 3514 v1, example post-rape-care-beji (line {beji}): health -> pkm-bangil: "
        "dikonfirmasi dalam 90 menit, seharusnya paling lama 30 / to be acknowledged within "
        "90 minutes, expected 30 at most (aturan / rules: sexual-within-72h)"
    ) in result.output
    failing = result.output[result.output.index("Contoh yang gagal / failing examples") :]
    assert f"  - post-rape-care-beji (baris / line {beji})\n" in failing
    assert "  - post-rape-care-gempol (baris / line " in failing
    assert "post-rape-care-hours-unknown" not in failing  # another rule, untouched


def test_explain_without_a_report_lists_the_examples_and_whose_mandate_each_is() -> None:
    result = run("explain", str(SOP_3514))
    assert result.exit_code == 0, result.output
    assert "SOP 3514 v1 (sop-3514): 26 contoh, semua lulus / examples, all pass" in result.output
    assert (
        "  - no-mediation-for-sexual-violence (mewakili / speaks for dp3ap2kb-pasuruan)\n"
    ) in result.output
    assert (
        "harapan / expects: refer health -> pkm-gempol >= emergency <= 30 min\n"
    ) in result.output


def test_explain_an_example_shows_its_decision() -> None:
    result = run("explain", str(SOP_3514), "--example", "child-sexual-violence-visum", *AT)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Contoh / example child-sexual-violence-visum\n")
    assert "health -> pkm-gempol (Puskesmas Gempol), emergency" in result.output
    unknown = run("explain", str(SOP_3514), "--example", "no-such-example")
    assert unknown.exit_code == 1
    assert "no example 'no-such-example' in SOP 3514 v1" in unknown.output
