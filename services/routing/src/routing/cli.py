"""`rujuk sop`: SOP kabupaten / district SOPs: check, explain, publish."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from pydantic import ValidationError

from routing.decide import Decision, decide
from routing.sop import Sop, SopError, SopIssue, load_sop
from routing.sop.examples import example_problems
from routing.sop.model import Expectation
from rujuk_contracts.triage import TriageFacts

app = typer.Typer(
    help="SOP kabupaten / district SOPs: check, explain, publish", no_args_is_help=True
)

DEFAULT_URL = "http://127.0.0.1:8082"


@app.callback()
def main() -> None:
    """SOP kabupaten / district SOPs: check, explain, publish."""


def _load(file: Path) -> Sop:
    try:
        return load_sop(file, run_examples=example_problems)
    except OSError as exc:
        typer.echo(f"Tidak bisa membaca / cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    except SopError as exc:
        typer.echo(f"SOP tidak sah / SOP refused: {len(exc.issues)} masalah / problems", err=True)
        for issue in exc.issues:
            typer.echo(f"  {issue}", err=True)
        for line in failing_examples(exc.issues):
            typer.echo(line, err=True)
        raise typer.Exit(1) from exc


def failing_examples(issues: list[SopIssue]) -> list[str]:
    """Each example named in the issues, once, with the line of its first issue."""
    first_line: dict[str, int | None] = {}
    for issue in issues:
        if issue.where and issue.where.startswith("example "):
            first_line.setdefault(issue.where.removeprefix("example "), issue.line)
    if not first_line:
        return []
    return [f"Contoh yang gagal / failing examples ({len(first_line)}):"] + [
        f"  - {example_id} (baris / line {line})" for example_id, line in first_line.items()
    ]


@app.command()
def check(file: Path = typer.Argument(..., help="The SOP YAML file")) -> None:
    """Validate an SOP and run its examples: every error and failing example with its line
    (exit 1), or OK."""
    sop = _load(file)
    sample = " (SAMPLE DATA)" if sop.sample_data else ""
    typer.echo(
        f"{sop.label} ({sop.sop_id}) OK / SOP sah: {len(sop.rules)} aturan / rules, "
        f"{len(sop.directory)} lembaga / agencies, {len(sop.examples)} contoh lulus / "
        f"examples pass{sample}"
    )


def triage_from(document: Any) -> TriageFacts:
    """TriageFacts, or what carries them: a case.reported payload or CloudEvent."""
    if isinstance(document, dict):
        if isinstance(document.get("data"), dict) and "triage" in document["data"]:
            document = document["data"]
        if "triage" in document:
            document = document["triage"]
    return TriageFacts.model_validate(document)


@app.command()
def explain(
    file: Path = typer.Argument(..., help="The SOP YAML file"),
    report: Path | None = typer.Argument(
        None,
        help="JSON: triage facts (rujuk_contracts.triage.TriageFacts), or a case.reported "
        "event or payload that holds them. Without it (and without --example): the SOP's "
        "examples",
    ),
    example: str | None = typer.Option(None, help="Explain the facts of this SOP example"),
    at: datetime | None = typer.Option(None, help="Decision time (default: now, UTC)"),
) -> None:
    """Which rules fire for a report, the referrals with deadlines and escalation, what is
    withheld for lack of consent, and where consent was overridden, with the legal basis."""
    sop = _load(file)
    if report is None and example is None:
        typer.echo("\n".join(example_lines(sop)))
        return
    if report is not None and example is not None:
        typer.echo("Pilih salah satu / give a REPORT or --example, not both", err=True)
        raise typer.Exit(2)
    triage = _example_facts(sop, example) if example is not None else _report_facts(report)
    if triage.district != sop.district_code:
        typer.echo(
            f"Laporan dari kabupaten / report of district {triage.district}, "
            f"but {sop.label} is for {sop.district_code}",
            err=True,
        )
        raise typer.Exit(1)
    now = (at or datetime.now(UTC)).astimezone(UTC)
    decision = decide(sop, f"{sop.district_code}-0000000000", triage, now)
    if example is not None:
        typer.echo(f"Contoh / example {example}\n")
    typer.echo("\n".join(explanation(sop, decision, now)))


def _report_facts(report: Path | None) -> TriageFacts:
    assert report is not None
    try:
        return triage_from(json.loads(report.read_text(encoding="utf-8")))
    except OSError as exc:
        typer.echo(f"Tidak bisa membaca / cannot read {report}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    except (ValueError, ValidationError) as exc:
        typer.echo(f"Laporan tidak sah / not triage facts: {exc}", err=True)
        raise typer.Exit(1) from exc


def _example_facts(sop: Sop, example_id: str) -> TriageFacts:
    for example in sop.examples:
        if example.id == example_id:
            return example.facts
    known = ", ".join(example.id for example in sop.examples) or "-"
    typer.echo(
        f"Contoh tidak ada / no example {example_id!r} in {sop.label} (ada / there are: {known})",
        err=True,
    )
    raise typer.Exit(1)


def example_lines(sop: Sop) -> list[str]:
    """The SOP's examples, whose mandate each states, and what it expects: all pass, or the
    SOP would have been refused."""
    count = len(sop.examples)
    lines = [f"{sop.label} ({sop.sop_id}): {count} contoh, semua lulus / examples, all pass"]
    for example in sop.examples:
        lines.append(f"  - {example.id} (mewakili / speaks for {example.speaks_for})")
        if example.description:
            lines.append(f"      {example.description}")
        lines.append(f"      harapan / expects: {_expectation(example.expect)}")
    return lines


def _expectation(expect: Expectation) -> str:
    parts = []
    for item in expect.refer:
        terms = [item.service.value + (f" -> {item.agency}" if item.agency else "")]
        if item.min_priority:
            terms.append(f">= {item.min_priority.value}")
        if item.max_acknowledge_minutes:
            terms.append(f"<= {item.max_acknowledge_minutes} min")
        parts.append("refer " + " ".join(terms))
    parts += [f"never {name}" for name in expect.never]
    parts += [f"withheld {service.value}" for service in expect.withheld]
    parts += [f"consent_override {service.value}" for service in expect.consent_override]
    return "; ".join(parts)


def explanation(sop: Sop, decision: Decision, now: datetime) -> list[str]:
    rules = {rule.id: rule for rule in sop.rules}
    names = {agency.id: agency.name for agency in sop.directory}
    sample = "  [SAMPLE DATA]" if sop.sample_data else ""
    lines = [
        f"{sop.label} ({sop.sop_id}): {sop.name}{sample}",
        f"Waktu / at: {now:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    lines.append(f"Aturan yang berlaku / rules fired ({len(decision.rules_fired)}):")
    lines += [f"  - {rule_id}: {rules[rule_id].description}" for rule_id in decision.rules_fired]
    lines += ["", f"Rujukan / referrals ({len(decision.referrals)}):"]
    for number, referral in enumerate(decision.referrals, 1):
        minutes = round((referral.acknowledgement_deadline - now).total_seconds() / 60)
        chain = " -> ".join(referral.escalation_chain)
        lines += [
            f"  {number}. {referral.service.value} -> {referral.agency_id} "
            f"({names.get(referral.agency_id, '?')}), {referral.priority.value}",
            f"     konfirmasi paling lambat / acknowledge by: "
            f"{referral.acknowledgement_deadline:%Y-%m-%d %H:%M} UTC ({minutes} min)",
            f"     eskalasi / escalation: {chain}",
            f"     aturan / rules: {', '.join(referral.rule_ids)}",
        ]
        if referral.consent_override:
            lines.append(
                "     tanpa persetujuan, dasar hukum / without consent, legal basis: "
                f"{referral.consent_override}"
            )
    lines += ["", f"Ditahan / withheld ({len(decision.withheld)}):"]
    lines += [
        f"  - {w.service.value} -> {w.agency_id}: {w.reason}"
        f" (aturan / rules: {', '.join(w.rule_ids)})"
        for w in decision.withheld
    ] or ["  (tidak ada / none)"]
    return lines + on_call_lines(sop)


def on_call_lines(sop: Sop) -> list[str]:
    """Who is paged when a chain above runs out (the coordinator did not answer either)."""
    repeat = sop.on_call.repeat
    lines = [
        "",
        f"Piket setelah koordinator / on call past the coordinator ({sop.coordinator}):",
        f"  diulang {repeat.rounds} kali, setiap {repeat.every_minutes} menit, sampai ada yang "
        f"menanggapi / {repeat.rounds} rounds, {repeat.every_minutes} minutes apart, until "
        "someone acknowledges",
    ]
    lines += [
        f"  - {entry.id}: {entry.role} ({', '.join(entry.channels)})"
        for entry in sop.on_call.contacts
    ]
    return lines


@app.command()
def publish(
    file: Path = typer.Argument(..., help="The SOP YAML file"),
    url: str = typer.Option(
        DEFAULT_URL, envvar="ROUTING_URL", help="Routing's base URL (env ROUTING_URL)"
    ),
    token: str = typer.Option(
        "",
        envvar="RUJUK_TOKEN",
        help="A coordinator's token from `rujuk token create --role coordinator` (env RUJUK_TOKEN)",
    ),
) -> None:
    """Publish a new SOP version to a running routing; it applies to new cases only."""
    sop = _load(file)  # the same check the server makes, without a round trip
    if not token:
        typer.echo(
            "Token koordinator tidak ada / no coordinator token: set RUJUK_TOKEN or --token",
            err=True,
        )
        raise typer.Exit(2)
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/v1/sops",
            content=file.read_bytes(),
            headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"Routing tidak bisa dihubungi / cannot reach routing at {url}: {exc}", err=True)
        raise typer.Exit(2) from exc
    body = _json(response)
    if response.status_code in (200, 201):
        status = "baru / new" if body.get("created") else "sudah ada / already published"
        typer.echo(
            f"{sop.label} diterbitkan / published ({status}): sha256 {body.get('sha256')}, "
            f"berlaku untuk kasus baru / applies to new cases"
        )
        return
    typer.echo(f"Ditolak / refused ({response.status_code}): {body.get('detail')}", err=True)
    for error in body.get("errors", []):
        typer.echo(f"  {error}", err=True)
    raise typer.Exit(1)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return body if isinstance(body, dict) else {"detail": body}
