"""What auditors read: a case's history step by step, and the verdict on the chain (no I/O)."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from pydantic import ValidationError

from audit.bundle import BundleResult, CaseProof
from audit.chain import Entry, FailureKind, VerifyFailure, VerifyResult, timestamp
from rujuk_contracts.envelope import CloudEvent, EventError
from rujuk_contracts.events import (
    TYPE_PREFIX,
    CaseClosed,
    CaseDetailsDisclosed,
    CaseErased,
    CaseNoteRead,
    CaseReported,
    CaseRouted,
    CaseVillageAgencyAsked,
    CaseVillageAgencyFound,
    EventPayload,
    OnCallAcknowledged,
    OnCallPaged,
    OnCallPageDelivered,
    OnCallPageFailed,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralRequested,
    SopAnswerGiven,
    SopAnswerRefused,
    SopInForce,
    SopObjected,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
    SopSignedOff,
    TokenIssued,
    TokenRevoked,
)


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a case's history."""

    seq: int
    time: datetime
    since_report: timedelta
    actor: str
    event_type: str
    summary: str
    entry: Entry


def history(entries: Sequence[Entry], tz: tzinfo = UTC) -> list[Step]:
    """A case's entries as steps, each with the time elapsed since the report."""
    payloads = [_payload(entry) for entry in entries]
    reported = _report_time(entries, payloads)
    return [
        Step(
            seq=entry.seq,
            time=entry.event_time,
            since_report=entry.event_time - reported,
            actor=entry.actor,
            event_type=short_type(entry.event_type),
            summary=summarize(payload, tz) if payload is not None else "(payload not readable)",
            entry=entry,
        )
        for entry, payload in zip(entries, payloads, strict=True)
    ]


def _payload(entry: Entry) -> EventPayload | None:
    try:
        return CloudEvent.model_validate_json(entry.event).payload()
    except (EventError, ValidationError):
        return None  # e.g. a newer event version than this tool knows


def _report_time(entries: Sequence[Entry], payloads: Sequence[EventPayload | None]) -> datetime:
    for payload in payloads:
        if isinstance(payload, CaseReported):
            return payload.reported_at
    return entries[0].event_time if entries else datetime.now(UTC)


def short_type(event_type: str) -> str:
    """``id.rujuk.referral.requested.v1`` -> ``referral.requested v1``."""
    name = event_type.removeprefix(f"{TYPE_PREFIX}.")
    base, dot, version = name.rpartition(".")
    return f"{base} {version}" if dot and version.startswith("v") else name


def short_id(identifier: str) -> str:
    """``3514-ABCDEFGHJK-01`` -> ``3514-…-01``: enough to tell a case's referrals apart."""
    parts = identifier.split("-")
    if len(identifier) <= 12 or len(parts) < 3:
        return identifier
    return f"{parts[0]}-…-{parts[-1]}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _words(value: str) -> str:
    return value.replace("_", " ")


def _note(note_ref: str | None) -> str:
    """Where a person's own words about the step are: a note at intake, never its text."""
    return f" (note {note_ref} at intake)" if note_ref else ""


def summarize(payload: EventPayload, tz: tzinfo = UTC) -> str:
    """What the event changed, in one line: no identifying data is in events, so none here."""
    match payload:
        case CaseReported(channel=channel, triage=triage):
            place = triage.district + (f" {triage.kecamatan}" if triage.kecamatan else "")
            flags = [
                name
                for name, present in (
                    ("immediate danger", triage.immediate_danger),
                    ("injury", triage.injury),
                    ("disability", triage.disability),
                )
                if present
            ]
            violence = ", ".join(_words(v) for v in triage.violence_types)
            facts = "; ".join([violence, f"{triage.age_group}, {triage.sex}", *flags])
            return f"reported via {_words(channel)} in {place}: {facts}"
        case CaseRouted(sop_id=sop, sop_version=version, rules_fired=rules, referrals=referrals):
            targets = ", ".join(f"{r.service} → {r.agency_id}" for r in referrals) or "none"
            fired = ", ".join(rules) or "no rule"
            return (
                f"SOP {sop} v{version} ({fired}): {_count(len(referrals), 'referral')}: {targets}"
            )
        case ReferralRequested():
            deadline = payload.acknowledgement_deadline.astimezone(tz).strftime("%d %b %H:%M %Z")
            picked = f", picked: {_words(payload.picked_by)}" if payload.picked_by else ""
            return (
                f"referral {short_id(payload.referral_id)} → {payload.agency_id} "
                f"({payload.service}, {payload.priority}, ack by {deadline}{picked})"
            )
        case ReferralDelivered(agency_id=agency, channels=channels, attempts=attempts):
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            return f"delivered to {agency} via {', '.join(channels)}{tries}"
        case ReferralDeliveryFailed(agency_id=agency, reason=reason, attempts=attempts):
            return f"delivery to {agency} failed after {_count(attempts, 'attempt')}: {reason}"
        case ReferralDeclined(agency_id=agency, referral_id=referral, reason=reason, note=note):
            why = _words(reason) + (f" ({note})" if note else "") + _note(payload.note_ref)
            return f"{agency} declined referral {short_id(referral)}: {why}"
        case ReferralAcknowledged() | ReferralAccepted() | ReferralCompleted():
            verb = payload.event  # acknowledged, accepted, completed
            return f"{payload.agency_id} {verb} referral {short_id(payload.referral_id)}"
        case ReferralEscalated():
            return (
                f"referral {short_id(payload.referral_id)} escalated {payload.from_agency_id} → "
                f"{payload.to_agency_id} ({_words(payload.reason)}, step {payload.step})"
            )
        case OnCallPaged():
            who = ", ".join(f"{c.contact_id} ({', '.join(c.channels)})" for c in payload.contacts)
            return (
                f"chain of referral {short_id(payload.referral_id)} ran out at "
                f"{payload.agency_id} ({_words(payload.reason)}): on call paged, round "
                f"{payload.round} of {payload.rounds}: {who}"
            )
        case OnCallPageDelivered(contact_id=contact, channels=channels, round=number):
            return f"on-call page round {number} delivered to {contact} via {', '.join(channels)}"
        case OnCallPageFailed(contact_id=contact, reason=reason, round=number):
            return f"on-call page round {number} to {contact} failed: {reason}"
        case OnCallAcknowledged(by=by, via=via, channel=channel):
            how = f"{via}" + (f" ({channel})" if channel else "")
            return f"on-call alert acknowledged by {by} via {how}"
        case CaseDetailsDisclosed():
            return (
                f"details disclosed to {payload.agency_id} for referral "
                f"{short_id(payload.referral_id)}: {', '.join(payload.fields)} "
                f"— purpose: {_words(payload.purpose)}{_note(payload.note_ref)}"
            )
        case CaseClosed(closed_by=closed_by, reason=reason):
            return f"case closed by {closed_by}: {_words(reason)}{_note(payload.note_ref)}"
        case CaseErased(erased_by=erased_by, reason=reason):
            return f"identifying data erased by {erased_by}: {_words(reason)}"
        case CaseNoteRead(note_id=note_id, kind=kind, token_id=token_id, role=role):
            return f"note {note_id} ({_words(kind)}) read by {role}:{token_id}"
        case SopPublished(sop_id=sop, sop_version=version, district_code=district):
            override = (
                f", override {payload.override_reason} (not agreed: "
                f"{', '.join(payload.agencies_not_agreed)})"
                if payload.override_reason
                else ""
            )
            return f"SOP {sop} v{version} published for district {district}{override}"
        case SopProposed(sop_id=sop, sop_version=version, proposal_id=proposal):
            asked = ", ".join(a.agency_id for a in payload.asked) or "nobody"
            by = payload.proposed_by
            return f"SOP {sop} v{version} proposed ({proposal}) by {by}; asked: {asked}"
        case SopSignedOff(sop_id=sop, sop_version=version, agency_id=agency):
            return f"SOP {sop} v{version} signed off by {agency} ({payload.via})"
        case SopObjected(sop_id=sop, sop_version=version, agency_id=agency, reason=reason):
            return f"SOP {sop} v{version} objected to by {agency}: {_words(reason)}"
        case SopAnswerGiven(sop_id=sop, sop_version=version, agency_id=agency):
            said = f"objected: {_words(payload.reason)}" if payload.reason else "agreed"
            return f"SOP {sop} v{version}: answer on NATS from {agency}, {said}"
        case SopAnswerRefused(sop_id=sop, agency_id=agency, refusal=refusal):
            return f"SOP {sop}: answer of {agency} not recorded ({_words(refusal)})"
        case SopProposalWithdrawn(sop_id=sop, sop_version=version, proposal_id=proposal):
            return f"SOP {sop} v{version} proposal {proposal} withdrawn by {payload.withdrawn_by}"
        case SopInForce(sop_id=sop, sop_version=version, district_code=district):
            return f"SOP {sop} v{version} in force for district {district} ({payload.origin})"
        case CaseVillageAgencyAsked(service=service, candidates=candidates):
            names = ", ".join(c.agency_id for c in candidates)
            return f"asked which desa-level agency lists the case's desa ({service}): {names}"
        case CaseVillageAgencyFound(agency_id=agency):
            return (
                f"answered: {agency} lists the case's desa"
                if agency
                else "answered: no candidate lists the case's desa"
            )
        case TokenIssued(token_id=token_id, role=role, agency_id=agency_id):
            holder = f" of {agency_id}" if agency_id else ""
            return f"token {token_id} issued: {role}{holder}"
        case TokenRevoked(token_id=token_id):
            return f"token {token_id} revoked"
    return short_type(payload.event_type())


def elapsed(delta: timedelta) -> str:
    """``+180ms``, ``+4m 12s``, ``+1h 04m``, ``+2d 03h``: how long after the report a step came."""
    sign = "-" if delta < timedelta(0) else "+"
    if abs(delta) < timedelta(seconds=1):
        return f"{sign}{int(abs(delta).total_seconds() * 1000)}ms"
    seconds = int(abs(delta).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {seconds:02d}s"
    return f"{sign}{seconds}s"


def render_table(case_id: str, steps: Sequence[Step], tz: tzinfo = UTC) -> str:
    """The history as aligned text for a terminal."""
    if not steps:
        return no_history(case_id)
    header = ("seq", "time", "since report", "actor", "event", "what changed")
    rows = [
        (
            str(step.seq),
            step.time.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
            elapsed(step.since_report),
            step.actor,
            step.event_type,
            step.summary,
        )
        for step in steps
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].rjust(widths[0])]
        cells += [cell.ljust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)]
        return "  ".join([*cells, row[-1]]).rstrip()

    title = (
        f"Riwayat kasus / case history {case_id}: {len(steps)} "
        f"{'entry' if len(steps) == 1 else 'entries'}, times in {tz}"
    )
    return "\n".join([title, "", line(header), *(line(row) for row in rows)])


def render_json(case_id: str, steps: Sequence[Step]) -> str:
    """The history as JSON, with each full CloudEvent and its place in the chain."""
    return json.dumps(history_document(case_id, steps), ensure_ascii=False, indent=2)


def history_document(case_id: str, steps: Sequence[Step]) -> dict[str, Any]:
    """The history as a JSON object (what ``replay --format json`` and the HTTP API give)."""
    return {
        "case_id": case_id,
        "entries": [
            {
                "seq": step.seq,
                "time": timestamp(step.time),
                "since_report_seconds": step.since_report.total_seconds(),
                "actor": step.actor,
                "event_type": step.entry.event_type,
                "summary": step.summary,
                "event_id": step.entry.event_id,
                "recorded_at": timestamp(step.entry.recorded_at),
                "prev_hash": step.entry.prev_hash.hex(),
                "hash": step.entry.hash.hex(),
                "event": step.entry.cloud_event(),
            }
            for step in steps
        ],
    }


def no_history(case_id: str) -> str:
    return f"Tidak ada entri untuk kasus {case_id} / no ledger entries for case {case_id}"


_FAILURE_NAMES = {
    FailureKind.GAP: "entry missing / entri hilang",
    FailureKind.OUT_OF_ORDER: "entries out of order / urutan entri salah",
    FailureKind.BROKEN_LINK: "chain link broken / tautan rantai putus",
    FailureKind.HASH_MISMATCH: "entry altered / entri diubah (hash tidak cocok)",
    FailureKind.ANCHOR_MISMATCH: "differs from the recorded anchor or checkpoint / "
    "berbeda dari jangkar atau checkpoint",
    FailureKind.TRUNCATED: "newest entries removed / entri terbaru dihapus",
    FailureKind.BAD_CHECKPOINT: "checkpoint does not verify / checkpoint tidak sah",
    FailureKind.BAD_HEAD: "signed head does not verify / kepala pohon tidak sah",
    FailureKind.INCONSISTENT_HEADS: "two signed heads disagree / dua kepala pohon bertentangan",
    FailureKind.HEAD_MISMATCH: "entries rewritten after a signed head / "
    "entri ditulis ulang setelah kepala pohon ditandatangani",
    FailureKind.HEAD_MISSING: "a signed head is missing from the database / "
    "kepala pohon hilang dari basis data",
    FailureKind.NOT_WITNESSED: "head not cosigned by a quorum of witnesses / "
    "kepala pohon tidak ditandatangani cukup saksi",
    FailureKind.STALE_HEAD: "no recent signed head / kepala pohon terlalu lama",
    FailureKind.TREE_MISMATCH: "stored Merkle tree differs / pohon Merkle tersimpan berbeda",
}
# Failures that name a head (by its size) rather than an entry.
_HEAD_KINDS = {
    FailureKind.BAD_HEAD,
    FailureKind.INCONSISTENT_HEADS,
    FailureKind.HEAD_MISMATCH,
    FailureKind.HEAD_MISSING,
    FailureKind.NOT_WITNESSED,
}


def _where(failure: VerifyFailure) -> str:
    if failure.kind in _HEAD_KINDS:
        return f"the head of size {failure.seq}"
    return f"entry {failure.seq}"


def verify_report(result: VerifyResult) -> str:
    """The verdict on the chain, in English and Bahasa Indonesia."""
    if result.failure is not None:
        failure = result.failure
        lines = [
            f"VERIFIKASI GAGAL / VERIFICATION FAILED at {_where(failure)}: "
            f"{_FAILURE_NAMES[failure.kind]}",
            f"  {failure.detail}",
            f"  {result.entries} entries verified in their chain / "
            f"{result.entries} entri terverifikasi dalam rantai",
        ]
        for other in result.problems[1:]:
            lines.append(f"  also / juga, at {_where(other)}: {_FAILURE_NAMES[other.kind]}")
            lines.append(f"    {other.detail}")
        return "\n".join(lines + _sources(result) + _extras(result))
    if result.entries == 0:
        lines = ["Buku besar kosong / ledger is empty: 0 entries, nothing to verify"]
        return "\n".join(lines + _extras(result))
    lines = [
        f"Buku besar terverifikasi / ledger verified: {result.entries} entries, "
        f"head seq {result.head_seq} hash {result.head_hash.hex()[:16]}…",
    ]
    if result.latest_checkpoint is not None:
        latest = result.latest_checkpoint
        lines.append(
            f"Checkpoint bertanda tangan / signed checkpoints: {result.checkpoints} verified, "
            f"latest at entry {latest.seq} ({timestamp(latest.time)}, key {latest.key_id})"
        )
        if latest.seq < result.head_seq:
            lines.append(
                f"  entries {latest.seq + 1}-{result.head_seq} are not yet covered by a "
                "checkpoint / belum tercakup checkpoint"
            )
    else:
        lines.append("Belum ada checkpoint / no signed checkpoint yet")
    head = result.latest_head
    if head is not None:
        signed = "unknown time" if head.signed_at is None else timestamp(head.signed_at)
        witnesses = ", ".join(head.witnesses) or "none checked"
        lines.append(
            f"Kepala pohon bertanda tangan / signed tree heads: {result.heads} consistent; "
            f"newest of size {head.size}, root {head.root_hash.hex()[:16]}…, signed {signed}, "
            f"cosigned by: {witnesses}"
        )
        if head.size < result.head_seq:
            lines.append(
                f"  entries {head.size + 1}-{result.head_seq} are not yet under a signed head / "
                "belum tercakup kepala pohon"
            )
    else:
        lines.append("Belum ada kepala pohon / no signed tree head yet")
    lines.append(
        "Anchor to record (catat jangkar ini) for `verify --anchor`: "
        f"{result.head_seq}:{result.head_hash.hex()}"
    )
    return "\n".join(lines + _sources(result) + _extras(result))


def _sources(result: VerifyResult) -> list[str]:
    if not result.sources:
        return []
    return [f"Kepala pohon dibaca dari / heads read from: {', '.join(result.sources)}"]


def _extras(result: VerifyResult) -> list[str]:
    if result.parked is None:
        return []
    return [f"Pesan yang diparkir / messages parked on the dead-letter queue: {result.parked}"]


def verify_document(result: VerifyResult) -> dict[str, Any]:
    """The verdict as a JSON object (the HTTP API's ``/v1/ledger/verify``)."""
    failure = result.failure
    latest = result.latest_checkpoint
    return {
        "ok": result.ok,
        "entries_verified": result.entries,
        "head": {"seq": result.head_seq, "hash": result.head_hash.hex()},
        "failure": None
        if failure is None
        else {"seq": failure.seq, "kind": failure.kind.value, "detail": failure.detail},
        "problems": [
            {"seq": p.seq, "kind": p.kind.value, "detail": p.detail} for p in result.problems
        ],
        "checkpoints_verified": result.checkpoints,
        "latest_checkpoint": None if latest is None else json.loads(latest.to_bytes()),
        "heads": result.heads,
        "latest_head": None
        if result.latest_head is None
        else {
            "size": result.latest_head.size,
            "root_hash": result.latest_head.root_hash.hex(),
            "signed_at": None
            if result.latest_head.signed_at is None
            else timestamp(result.latest_head.signed_at),
            "witnesses": list(result.latest_head.witnesses),
        },
        "parked": result.parked,
    }


def case_proof_document(proof: CaseProof) -> dict[str, Any]:
    """A case's own verdict as a JSON object (the HTTP API's ``/v1/cases/{case_id}/verify``):
    its entries proven under the newest signed head, those that head does not cover yet."""
    result = proof.result
    failure = None if result is None else result.failure
    return {
        "case_id": proof.case_id,
        "ok": proof.ok,
        "entries_verified": 0 if result is None or failure is not None else result.case_entries,
        "entries_pending": proof.pending,
        "checkpoint": None
        if result is None or result.head_size is None
        else {
            "size": result.head_size,
            "signed_at": None if result.signed_at is None else timestamp(result.signed_at),
            "witnesses": list(result.witnesses),
        },
        "failure": None
        if failure is None
        else {"seq": failure.seq, "kind": failure.kind.value, "detail": failure.detail},
    }


def bundle_report(result: BundleResult) -> str:
    """The verdict on an export bundle."""
    if result.failure is not None:
        failure = result.failure
        where = "the head" if failure.kind is FailureKind.BAD_HEAD else f"entry {failure.seq}"
        return "\n".join(
            [
                f"BUNDEL TIDAK SAH / BUNDLE DOES NOT VERIFY at {where}: "
                f"{_FAILURE_NAMES[failure.kind]}",
                f"  {failure.detail}",
            ]
        )
    signed = "" if result.signed_at is None else f" signed {timestamp(result.signed_at)}"
    witnesses = ", ".join(result.witnesses) or "no witness checked"
    return (
        f"Bundel terverifikasi / bundle verified: case {result.case_id}, "
        f"{result.case_entries} entries, each proven included in the signed head of size "
        f"{result.head_size}{signed}; cosigned by: {witnesses}"
    )
