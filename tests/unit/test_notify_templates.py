"""Partner messages: Bahasa Indonesia by default, English on request, nothing identifying."""

import json
from datetime import UTC, datetime

import httpx
import pytest

from notify.channels import SmsGateway
from notify.directory import AgencyChannels, Directory, Language
from notify.templates import render_email, render_sms
from rujuk_contracts.events import DeliveryChannel, Priority, ReferralRequested, Service

INTAKE = "https://intake.rujuk.example"


def referral() -> ReferralRequested:
    return ReferralRequested(
        case_id="3513-AB12CD34EF",
        referral_id="ref-0001",
        agency_id="rsud-bangil",
        service=Service.HEALTH,
        priority=Priority.EMERGENCY,
        acknowledgement_deadline=datetime(2026, 11, 2, 3, 0, tzinfo=UTC),
        escalation_chain=[],
        sop_id="sop-3513",
        sop_version=1,
        rule_ids=["r1"],
    )


def test_sms_is_short_and_in_indonesian_by_default() -> None:
    sms = render_sms(referral(), Language.INDONESIAN, INTAKE)
    assert len(sms.text) <= 320  # two SMS segments at most
    assert "3513-AB12CD34EF" in sms.text
    assert "DARURAT" in sms.text
    assert "layanan kesehatan" in sms.text
    assert "Konfirmasi sebelum 02-11-2026 10:00 WIB" in sms.text
    assert f"{INTAKE}/v1/cases/3513-AB12CD34EF/details" in sms.text


def test_email_in_english_on_request_carries_everything_needed_and_no_more() -> None:
    mail = render_email(referral(), Language.ENGLISH, INTAKE)
    assert mail.subject == "[rujuk] EMERGENCY referral: health care, case 3513-AB12CD34EF"
    assert "ref-0001" in mail.text
    assert "Acknowledge by        : 02-11-2026 10:00 WIB" in mail.text
    assert f"GET {INTAKE}/v1/cases/3513-AB12CD34EF/details" in mail.text
    # The payload has no identifying fields; the message adds none (no rule ids, no SOP).
    assert "sop-3513" not in mail.text


def test_indonesian_email() -> None:
    mail = render_email(referral(), Language.INDONESIAN, INTAKE)
    assert mail.subject.startswith("[rujuk] Rujukan DARURAT: layanan kesehatan")
    assert "Batas konfirmasi: 02-11-2026 10:00 WIB" in mail.text


def test_the_sms_gateway_fills_its_template_safely() -> None:
    gateway = SmsGateway(
        httpx.AsyncClient(),
        "http://sms.example/send",
        '{"msisdn": "{to}", "content": {"body": "{text}"}, "tags": ["rujuk", "{referral_id}"]}',
    )
    text = 'a "quoted" text\nwith {braces}'
    body = gateway.body({"to": "+620000000000", "text": text, "referral_id": "ref-1"})
    assert body == {
        "msisdn": "+620000000000",
        "content": {"body": text},  # JSON-escaped by the client, never spliced into JSON text
        "tags": ["rujuk", "ref-1"],
    }
    with pytest.raises(json.JSONDecodeError):
        SmsGateway(httpx.AsyncClient(), "http://sms.example", "{not json")


def test_channels_come_from_the_directory_and_what_notify_can_send() -> None:
    directory = Directory(
        {
            "rsud-bangil": AgencyChannels(email="ppa@rsud.example", sms_number="+620000000001"),
            "polres-x": AgencyChannels(webhook_url="https://polres.example/hook", language="en"),
        },
        base_url="https://hooks.example/webhooks",
    )
    everything = set(DeliveryChannel)
    assert directory.channels_for("rsud-bangil", everything) == [
        "nats", "webhook", "email", "sms"
    ]  # fmt: skip
    assert directory.webhook_url("rsud-bangil") == "https://hooks.example/webhooks/rsud-bangil"
    assert directory.webhook_url("polres-x") == "https://polres.example/hook"
    assert directory.channels_for("rsud-bangil", {DeliveryChannel.NATS}) == ["nats"]
    assert directory.language("polres-x") == Language.ENGLISH
    assert directory.language("unknown-agency") == Language.INDONESIAN
