"""`rujuk sop`: SOP kabupaten / district SOPs: check, explain, propose, answer, publish."""

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from routing.decide import Decision, decide
from routing.sop import Sop, SopError, SopIssue, load_sop
from routing.sop.examples import example_problems
from routing.sop.model import Expectation
from rujuk_contracts.events import PROPOSAL_ID_PATTERN, ObjectionReason, OverrideReason
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
        terms = [
            item.service.value
            + (" by village" if item.pick else "")
            + (f" -> {item.agency}" if item.agency else "")
        ]
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
    if decision.pending_picks:
        lines += pick_lines(decision, names)
    lines += ["", f"Ditahan / withheld ({len(decision.withheld)}):"]
    lines += [
        f"  - {w.service.value} -> {w.agency_id}: {w.reason}"
        f" (aturan / rules: {', '.join(w.rule_ids)})"
        for w in decision.withheld
    ] or ["  (tidak ada / none)"]
    return lines + on_call_lines(sop)


def pick_lines(decision: Decision, names: dict[str, str]) -> list[str]:
    """Referrals whose agency the case's desa decides: intake is asked, routing never sees it."""
    lines = ["", f"Dipilih menurut desa / picked by village ({len(decision.pending_picks)}):"]
    for pick in decision.pending_picks:
        how = "kecamatan" if pick.none_reason == "kecamatan" else "fallback"
        lines.append(
            f"  - {pick.service.value}, {pick.priority.value}, "
            f"{round(pick.acknowledge_within.total_seconds() / 60)} min "
            f"(aturan / rules: {', '.join(pick.rule_ids)})"
        )
        lines += [
            f"     desa / villages of {c.agency_id} ({names.get(c.agency_id, '?')}): "
            f"{', '.join(c.villages)}"
            for c in pick.candidates
        ]
        lines.append(
            f"     tanpa desa yang cocok / no village matches: {pick.none_agency_id} (by {how})"
        )
    return lines


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
    target: str = typer.Argument(
        ..., help="A proposal's id (prop-…) to publish it, or an SOP YAML file to publish directly"
    ),
    effective_at: datetime | None = typer.Option(
        None, "--effective-at", help="A proposal: from when it applies (default now; UTC if naive)"
    ),
    override: str | None = typer.Option(
        None,
        "--override",
        help="Publish although some agency whose duties change has not agreed: why, one of "
        + ", ".join(reason.value for reason in OverrideReason),
    ),
    url: str = typer.Option(
        DEFAULT_URL, envvar="ROUTING_URL", help="Routing's base URL (env ROUTING_URL)"
    ),
    token: str = typer.Option(
        "",
        envvar="RUJUK_TOKEN",
        help="A coordinator's token from `rujuk token create --role coordinator` (env RUJUK_TOKEN)",
    ),
) -> None:
    """Publish a signed-off proposal from its effective date, or an SOP file directly (in
    force at once; only when no agency's duties change, else with --override)."""
    if PROPOSAL_ID.fullmatch(target) and not Path(target).exists():
        _publish_proposal(target, effective_at, override, url, token)
        return
    file = Path(target)
    sop = _load(file)  # the same check the server makes, without a round trip
    if not token:
        typer.echo(
            "Token koordinator tidak ada / no coordinator token: set RUJUK_TOKEN or --token",
            err=True,
        )
        raise typer.Exit(2)
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/v1/sops" + (f"?override={override}" if override else ""),
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


# --- proposals ----------------------------------------------------------------------------

PROPOSAL_ID = re.compile(PROPOSAL_ID_PATTERN)
URL_OPTION = typer.Option(DEFAULT_URL, envvar="ROUTING_URL", help="Routing's base URL")
TOKEN_OPTION = typer.Option("", envvar="RUJUK_TOKEN", help="Your token (env RUJUK_TOKEN)")


def _call(method: str, url: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    if not token:
        typer.echo("Token tidak ada / no token: set RUJUK_TOKEN or --token", err=True)
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    try:
        return httpx.request(
            method, f"{url.rstrip('/')}{path}", headers=headers, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        typer.echo(f"Routing tidak bisa dihubungi / cannot reach routing at {url}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _refused(response: httpx.Response) -> typer.Exit:
    body = _json(response)
    detail = body.get("detail")
    if isinstance(detail, list):  # field problems
        detail = "; ".join(f"{p.get('field')}: {p.get('problem')}" for p in detail)
    typer.echo(f"Ditolak / refused ({response.status_code}): {detail}", err=True)
    for error in body.get("errors", []):
        typer.echo(f"  {error}", err=True)
    return typer.Exit(1)


def proposal_lines(proposal: dict[str, Any]) -> list[str]:
    """A proposal for a person: what, its state, and where each asked agency stands."""
    objections = {o["agency_id"]: o["reason"] for o in proposal.get("objected", [])}
    lines = [
        f"{proposal['proposal_id']}: SOP {proposal['district_code']} v{proposal['version']} "
        f"(berlaku / in force: v{proposal.get('base_version') or '-'}), "
        f"status / state: {proposal['state']}",
    ]
    for asked in proposal.get("asked", []):
        agency = asked["agency_id"]
        if agency in proposal.get("agreed", []):
            standing = "setuju / agreed"
        elif agency in objections:
            standing = f"keberatan / objected: {objections[agency]}"
        else:
            standing = "belum menjawab / yet to answer"
        lines.append(f"  - {agency} [{', '.join(asked['duty_changes'])}]: {standing}")
    if not proposal.get("asked"):
        lines.append("  tidak ada tugas lembaga yang berubah / no agency's duties change")
    return lines


@app.command()
def propose(
    file: Path = typer.Argument(..., help="The SOP YAML file"),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """Propose a new SOP version (coordinator): the agencies whose duties change are asked
    to sign it off before it is published."""
    _load(file)  # the same check the server makes, without a round trip
    response = _call(
        "POST",
        url,
        "/v1/sop-proposals",
        token,
        content=file.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    if response.status_code not in (200, 201):
        raise _refused(response)
    proposal = response.json()
    state = "baru / new" if response.status_code == 201 else "sudah diajukan / already proposed"
    typer.echo(f"Usulan diajukan / proposed ({state}):")
    typer.echo("\n".join(proposal_lines(proposal)))


@app.command()
def proposals(
    district: list[str] = typer.Option([], help="Only this district (repeatable)"),
    state: list[str] = typer.Option([], help="open, published, withdrawn, superseded"),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """SOP proposals, newest first: who agreed, who objected, who has yet to answer."""
    params = [("district", d) for d in district] + [("state", s) for s in state]
    response = _call("GET", url, "/v1/sop-proposals", token, params=params)
    if response.status_code != 200:
        raise _refused(response)
    listed = response.json()["proposals"]
    if not listed:
        typer.echo("Tidak ada usulan / no proposals")
    for proposal in listed:
        typer.echo("\n".join(proposal_lines(proposal)))


@app.command()
def answer(
    proposal_id: str = typer.Argument(..., help="The proposal's id (prop-…)"),
    agree: bool = typer.Option(False, "--agree", help="Your agency agrees"),
    object_: str | None = typer.Option(
        None,
        "--object",
        help="Your agency objects, with a reason code: "
        + ", ".join(reason.value for reason in ObjectionReason),
    ),
    note_ref: str | None = typer.Option(None, help="A note's id at intake (note-…), never text"),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
) -> None:
    """Agree to or object to an SOP proposal (partner token of an asked agency)."""
    if agree == (object_ is not None):
        typer.echo("Pilih --agree atau --object ALASAN / give --agree or --object REASON", err=True)
        raise typer.Exit(2)
    body: dict[str, Any] = {"decision": "agree"}
    if object_ is not None:
        body = {"decision": "object", "reason": object_}
        if note_ref:
            body["note_ref"] = note_ref
    response = _call("POST", url, f"/v1/sop-proposals/{proposal_id}/answers", token, json=body)
    if response.status_code != 200:
        raise _refused(response)
    typer.echo("Jawaban dicatat / answer recorded:")
    typer.echo("\n".join(proposal_lines(response.json())))


def _publish_proposal(
    proposal_id: str, effective_at: datetime | None, override: str | None, url: str, token: str
) -> None:
    body: dict[str, Any] = {}
    if effective_at is not None:
        at = effective_at if effective_at.tzinfo else effective_at.replace(tzinfo=UTC)
        body["effective_at"] = at.isoformat()
    if override:
        body["override_reason"] = override
    response = _call("POST", url, f"/v1/sop-proposals/{proposal_id}/publish", token, json=body)
    if response.status_code != 200:
        raise _refused(response)
    published = response.json()
    typer.echo(
        f"SOP {published['district_code']} v{published['version']} diterbitkan / published: "
        f"berlaku untuk kasus baru mulai / applies to new cases from {published['effective_at']}"
    )
    if published.get("override_reason"):
        typer.echo(
            f"  override ({published['override_reason']}): belum setuju / had not agreed: "
            + ", ".join(published["agencies_not_agreed"])
        )


# --- simulate --------------------------------------------------------------------------------

POLL_SECONDS = 0.5


@app.command()
def simulate(
    file: Path = typer.Argument(..., help="The candidate SOP YAML file"),
    days: int = typer.Option(90, min=1, max=3660, help="The last N days of cases"),
    url: str = typer.Option(
        DEFAULT_URL, envvar="ROUTING_URL", help="Routing's base URL (env ROUTING_URL)"
    ),
    token: str = typer.Option(
        "",
        envvar="RUJUK_TOKEN",
        help="A coordinator's token from `rujuk token create --role coordinator` (env RUJUK_TOKEN)",
    ),
) -> None:
    """Simulate a candidate SOP over the district's past cases, beside the SOP in force: which
    cases would have been referred differently, each agency's load, priorities, deadlines and
    consent. Triage facts only, nothing identifying."""
    sop = _load(file)
    if not token:
        typer.echo(
            "Token koordinator tidak ada / no coordinator token: set RUJUK_TOKEN or --token",
            err=True,
        )
        raise typer.Exit(2)
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            started = client.post(
                "/v1/sops/simulations",
                content=file.read_bytes(),
                params={"days": days},
                headers={"Content-Type": "application/yaml"},
            )
            if started.status_code != 202:
                raise _refused(started)
            body = _follow(client, _json(started)["url"], sop.label)
    except httpx.HTTPError as exc:
        typer.echo(f"Routing tidak bisa dihubungi / cannot reach routing at {url}: {exc}", err=True)
        raise typer.Exit(2) from exc
    if body["state"] == "failed":
        typer.echo(f"Simulasi gagal / the simulation failed: {body.get('failure')}", err=True)
        raise typer.Exit(1)
    typer.echo("\n".join(simulation_summary(body)))


def _follow(client: httpx.Client, path: str, label: str) -> dict[str, Any]:
    """Poll the job with a progress bar until it is done or failed."""
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"Simulasi / simulating {label}", total=None)
        while True:
            response = client.get(path)
            if response.status_code != 200:
                raise _refused(response)
            body = _json(response)
            progress.update(task, completed=body["cases_done"], total=body["cases_total"])
            if body["state"] in ("done", "failed"):
                return body
            time.sleep(POLL_SECONDS)


def simulation_summary(body: dict[str, Any]) -> list[str]:
    """A finished simulation, readable: Bahasa Indonesia first, then English."""
    result, diff = body["result"], body["diff"]
    summary = diff["summary"]
    period = body["period"]
    lines = [
        f"{result['before']} -> {result['after']}, kasus dilaporkan / cases reported "
        f"{period['from'][:10]} .. {period['to'][:10]}",
        "",
        "Perubahan aturan / rule changes:",
    ]
    named = [("ditambah / added", "rules_added"), ("dihapus / removed", "rules_removed"),
             ("diubah / changed", "rules_changed"), ("dipindah / moved", "rules_moved"),
             ("lembaga diubah / agencies changed", "agencies_changed"),
             ("bagian lain / other sections", "sections_changed")]  # fmt: skip
    lines += [f"  {name}: {', '.join(summary[key])}" for name, key in named if summary[key]]
    if diff["unchanged"]:
        lines.append("  tidak ada / none")
    not_simulable = sum(result["cases_not_simulable"].values())
    lines += [
        "",
        f"Kasus / cases: {result['cases_total']}, disimulasikan / simulated "
        f"{result['cases_simulated']}, tidak bisa disimulasikan / not simulable {not_simulable}",
        f"Dirujuk berbeda / referred differently: {result['cases_changed']} kasus / cases",
    ]
    if result["cases_not_simulable"].get("no_triage_facts"):
        lines.append(
            "  (kasus sebelum fakta triase disimpan / cases from before routing kept their "
            "triage facts)"
        )
    lines += [
        "",
        "Rujukan per lembaga, sebelum -> sesudah / referrals per agency, before -> after:",
    ]
    lines += [
        f"  {row['agency_id']:<28} {row['before']:>6} -> {row['after']:<6} ({row['change']:+d})"
        for row in result["agency_totals"]
    ] or ["  (tidak ada / none)"]
    sections = [
        ("Prioritas berubah / priorities changed", "priority_changes",
         "{agency_id} {service}: {priority_before} -> {priority_after}"),
        ("Tenggat berubah / deadlines changed", "deadline_changes",
         "{agency_id} {service}: {minutes_before} -> {minutes_after} min"),
        ("Rujukan baru / referrals added", "referrals_added", "{agency_id} {service}"),
        ("Rujukan hilang / referrals removed", "referrals_removed", "{agency_id} {service}"),
        ("Baru ditahan, tanpa persetujuan / newly withheld for lack of consent",
         "newly_withheld", "{agency_id} {service}"),
        ("Baru tanpa persetujuan, dengan dasar hukum / newly overriding consent",
         "newly_overriding_consent", "{agency_id} {service}: {legal_basis}"),
    ]  # fmt: skip
    for title, key, form in sections:
        if result[key]:
            lines += ["", f"{title}:"]
            lines += [
                f"  {form.format(**row)}: {row['cases']} kasus / cases" for row in result[key]
            ]
    return lines
