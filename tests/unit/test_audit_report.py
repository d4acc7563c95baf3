"""What auditors read: a case replayed step by step, and the verdict on the chain."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from audit import report
from audit.chain import FailureKind, VerifyFailure, VerifyResult
from audit.cli import app, parse_anchor
from rujuk_contracts.events import (
    CaseClosed,
    CaseNoteRead,
    OnCallAcknowledged,
    OnCallPaged,
    OnCallPageDelivered,
    OnCallPageFailed,
    PickedBy,
    ReferralDeclined,
    ReferralDeliveryFailed,
    ReferralEscalated,
    ReferralRequested,
    Role,
    TokenIssued,
    TokenRevoked,
)
from tests.unit.test_audit_chain import CASE_ID, case_story, chained

BANGIL = ZoneInfo("Asia/Jakarta")
NOTE_ID = "note-" + "0f" * 16


def test_a_referral_says_who_what_how_urgent_and_the_deadline_in_local_time() -> None:
    steps = report.history(chained(case_story()), BANGIL)

    assert steps[2].summary == (
        "referral 3514-…-01 → rsud-bangil (health, emergency, ack by 02 Mar 09:12 WIB)"
    )


def test_a_referral_the_village_picked_says_how_its_agency_was_chosen() -> None:
    requested = ReferralRequested(
        case_id=CASE_ID,
        referral_id=f"{CASE_ID}-03",
        agency_id="pkm-bangil",
        service="health",
        priority="urgent",
        acknowledgement_deadline=datetime(2026, 3, 2, 4, 0, tzinfo=UTC),
        escalation_chain=["dp3ap2kb-pasuruan"],
        sop_id="sop-3514",
        sop_version=4,
        rule_ids=["adult-physical"],
        picked_by=PickedBy.KECAMATAN_TIMEOUT,
    )

    assert report.summarize(requested, BANGIL) == (
        "referral 3514-…-03 → pkm-bangil (health, urgent, ack by 02 Mar 11:00 WIB, "
        "picked: kecamatan timeout)"
    )


def test_each_step_summarises_what_changed() -> None:
    summaries = [step.summary for step in report.history(chained(case_story()), BANGIL)]

    assert summaries == [
        "reported via hotline in 3514 Bangil: sexual, physical; child, female; immediate danger",
        "SOP sop-3514 v4 (child-sexual-72h): 1 referral: health → rsud-bangil",
        "referral 3514-…-01 → rsud-bangil (health, emergency, ack by 02 Mar 09:12 WIB)",
        "delivered to rsud-bangil via nats, webhook",
        "rsud-bangil acknowledged referral 3514-…-01",
    ]


@pytest.mark.parametrize(
    ("payload", "summary"),
    [
        (
            ReferralDeclined(
                case_id=CASE_ID,
                referral_id=f"{CASE_ID}-02",
                agency_id="rumah-aman",
                reason="no_capacity",
            ),
            "rumah-aman declined referral 3514-…-02: no capacity",
        ),
        (
            ReferralEscalated(
                case_id=CASE_ID,
                referral_id=f"{CASE_ID}-02",
                from_agency_id="rumah-aman",
                to_agency_id="dp3ap2kb-pasuruan",
                reason="declined",
                step=1,
            ),
            "referral 3514-…-02 escalated rumah-aman → dp3ap2kb-pasuruan (declined, step 1)",
        ),
        (
            ReferralDeliveryFailed(
                case_id=CASE_ID,
                referral_id=f"{CASE_ID}-03",
                agency_id="polres-pasuruan",
                reason="webhook answered 503",
                attempts=5,
            ),
            "delivery to polres-pasuruan failed after 5 attempts: webhook answered 503",
        ),
        (
            CaseClosed(case_id=CASE_ID, closed_by="upt-ppa-pasuruan", reason="services completed"),
            "case closed by upt-ppa-pasuruan: services completed",
        ),
        (
            ReferralDeclined(
                case_id=CASE_ID,
                referral_id=f"{CASE_ID}-02",
                agency_id="rumah-aman",
                reason="other",
                note_ref=NOTE_ID,
            ),
            f"rumah-aman declined referral 3514-…-02: other (note {NOTE_ID} at intake)",
        ),
        (
            CaseClosed(
                case_id=CASE_ID,
                closed_by="coordinator:tok-0a1b2c",
                reason="survivor_withdrew",
                note_ref=NOTE_ID,
            ),
            f"case closed by coordinator:tok-0a1b2c: survivor withdrew (note {NOTE_ID} at intake)",
        ),
        (
            CaseNoteRead(
                case_id=CASE_ID,
                note_id=NOTE_ID,
                kind="close_note",
                token_id="tok-0a1b2c",
                role=Role.AUDITOR,
            ),
            f"note {NOTE_ID} (close note) read by auditor:tok-0a1b2c",
        ),
        (
            TokenIssued(
                token_id="tok-0a1b2c3d4e5f",
                role=Role.PARTNER,
                agency_id="rsud-bangil",
                secret_sha256="ab" * 32,
            ),
            "token tok-0a1b2c3d4e5f issued: partner of rsud-bangil",
        ),
        (TokenRevoked(token_id="tok-0a1b2c3d4e5f"), "token tok-0a1b2c3d4e5f revoked"),
        (
            OnCallPaged(
                case_id=CASE_ID,
                alert_id=f"{CASE_ID}-01-e1-oncall",
                referral_id=f"{CASE_ID}-01-e1",
                agency_id="dp3ap2kb-pasuruan",
                priority="emergency",
                reason="deadline_missed",
                round=2,
                rounds=3,
                next_round_at=None,
                contacts=[
                    {"contact_id": "piket-uptppa-pasuruan", "channels": ["sms", "webhook"]},
                    {"contact_id": "kepala-dp3ap2kb-pasuruan", "channels": ["email"]},
                ],
                sop_id="sop-3514",
                sop_version=1,
            ),
            "chain of referral 3514-…-e1 ran out at dp3ap2kb-pasuruan (deadline missed): "
            "on call paged, round 2 of 3: piket-uptppa-pasuruan (sms, webhook), "
            "kepala-dp3ap2kb-pasuruan (email)",
        ),
        (
            OnCallPageDelivered(
                case_id=CASE_ID,
                alert_id="a",
                round=1,
                contact_id="piket-uptppa-pasuruan",
                channels=["sms"],
                attempts=1,
            ),
            "on-call page round 1 delivered to piket-uptppa-pasuruan via sms",
        ),
        (
            OnCallPageFailed(
                case_id=CASE_ID,
                alert_id="a",
                round=3,
                contact_id="kepala-dp3ap2kb-pasuruan",
                reason="no address for email",
                attempts=0,
            ),
            "on-call page round 3 to kepala-dp3ap2kb-pasuruan failed: no address for email",
        ),
        (
            OnCallAcknowledged(
                case_id=CASE_ID,
                alert_id="a",
                via="reply",
                by="piket-uptppa-pasuruan",
                channel="sms",
            ),
            "on-call alert acknowledged by piket-uptppa-pasuruan via reply (sms)",
        ),
        (
            OnCallAcknowledged(
                case_id=CASE_ID, alert_id="a", via="console", by="coordinator:tok-1"
            ),
            "on-call alert acknowledged by coordinator:tok-1 via console",
        ),
    ],
)
def test_other_events_summarise_too(payload: object, summary: str) -> None:
    assert report.summarize(payload, BANGIL) == summary  # type: ignore[arg-type]


def test_each_step_shows_the_time_since_the_report() -> None:
    steps = report.history(chained(case_story()), BANGIL)

    assert [report.elapsed(step.since_report) for step in steps] == [
        "+2s",
        "+3s",
        "+3s",
        "+4s",
        "+4m 12s",
    ]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "+0ms"),
        (timedelta(milliseconds=180), "+180ms"),
        (timedelta(minutes=4, seconds=12), "+4m 12s"),
        (timedelta(hours=1, minutes=4, seconds=59), "+1h 04m"),
        (timedelta(days=2, hours=3), "+2d 03h"),
        (timedelta(seconds=-30), "-30s"),
    ],
)
def test_elapsed_time_reads_at_a_glance(delta: timedelta, text: str) -> None:
    assert report.elapsed(delta) == text


def test_the_table_lists_the_steps_in_ledger_order_with_local_times() -> None:
    steps = report.history(chained(case_story()), BANGIL)

    lines = report.render_table(CASE_ID, steps, BANGIL).splitlines()

    assert lines[0] == (f"Riwayat kasus / case history {CASE_ID}: 5 entries, times in Asia/Jakarta")
    assert lines[2].split() == [
        "seq",
        "time",
        "since",
        "report",
        "actor",
        "event",
        "what",
        "changed",
    ]
    assert lines[3].split()[:6] == [
        "1",
        "2026-03-02",
        "08:00:02",
        "+2s",
        "/rujuk/intake",
        "case.reported",
    ]
    assert lines[7].endswith("rsud-bangil acknowledged referral 3514-…-01")


def test_the_json_replay_carries_each_full_event_and_its_place_in_the_chain() -> None:
    entries = chained(case_story())

    document = json.loads(report.render_json(CASE_ID, report.history(entries)))

    assert document["case_id"] == CASE_ID
    assert [item["seq"] for item in document["entries"]] == [1, 2, 3, 4, 5]
    first = document["entries"][0]
    assert first["hash"] == entries[0].hash.hex()
    assert first["prev_hash"] == "00" * 32
    assert first["event"]["id"] == entries[0].event_id
    assert first["since_report_seconds"] == 2.0


def test_an_event_this_tool_cannot_read_still_appears() -> None:
    entry = chained(case_story())[0]
    newer = dataclasses.replace(
        entry, event=entry.event.replace("case.reported.v1", "case.reported.v9")
    )

    (step,) = report.history([newer])

    assert step.summary == "(payload not readable)"


def test_a_verified_ledger_says_so_in_both_languages_with_its_head() -> None:
    result = VerifyResult(entries=1234, head_seq=1234, head_hash=bytes.fromhex("ab12" * 16))

    text = report.verify_report(result)

    assert text.splitlines()[0] == (
        "Buku besar terverifikasi / ledger verified: 1234 entries, "
        "head seq 1234 hash ab12ab12ab12ab12…"
    )
    assert f"1234:{'ab12' * 16}" in text


def test_a_failed_verification_names_the_entry_and_why() -> None:
    failure = VerifyFailure(7, FailureKind.HASH_MISMATCH, "stored hash … the entry was altered")
    result = VerifyResult(entries=6, head_seq=6, head_hash=bytes(32), failure=failure)

    text = report.verify_report(result)

    assert text.startswith(
        "VERIFIKASI GAGAL / VERIFICATION FAILED at entry 7: entry altered / entri diubah"
    )
    assert "the entry was altered" in text


def test_an_anchor_is_read_as_printed_by_verify() -> None:
    assert parse_anchor(f"12:{'ab' * 32}") == (12, bytes.fromhex("ab" * 32))
    with pytest.raises(ValueError, match="SEQ:HASH"):
        parse_anchor("12:abc")


def test_replay_refuses_something_that_is_not_a_case_id() -> None:
    result = CliRunner().invoke(app, ["replay", "NAMA-CONTOH"])

    assert result.exit_code == 2
    assert "is not a case id" in result.output


def test_verify_refuses_a_malformed_anchor() -> None:
    result = CliRunner().invoke(app, ["verify", "--anchor", "nonsense"])

    assert result.exit_code == 2
    assert "must be SEQ:HASH" in result.output
