"""A health referral as FHIR R4(B) ServiceRequest + Task, validated with fhir.resources."""

import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from notify.fhir import referral_bundle, task_status
from rujuk_contracts.events import Priority, ReferralRequested, ReplyKind, Service

ISSUED = datetime(2026, 11, 1, 8, 45, tzinfo=UTC)


def health_referral() -> ReferralRequested:
    return ReferralRequested(
        case_id="3513-AB12CD34EF",
        referral_id="ref-0007",
        agency_id="rsud-bangil",
        service=Service.HEALTH,
        priority=Priority.EMERGENCY,
        acknowledgement_deadline=datetime(2026, 11, 1, 9, 45, tzinfo=UTC),
        escalation_chain=["rsud-dr-saleh"],
        sop_id="sop-3513",
        sop_version=2,
        rule_ids=["child-injury"],
    )


def test_a_new_referral_is_an_active_request_and_a_requested_task() -> None:
    bundle = referral_bundle(health_referral(), ISSUED, set())
    assert bundle["type"] == "collection"
    request = ServiceRequest.model_validate(bundle["entry"][0]["resource"])
    task = Task.model_validate(bundle["entry"][1]["resource"])
    assert (request.status, request.intent, request.priority) == ("active", "order", "stat")
    assert request.subject.identifier.value == "3513-AB12CD34EF"
    assert request.performer[0].identifier.value == "rsud-bangil"
    assert (task.status, task.intent) == ("requested", "order")
    assert task.focus.reference == bundle["entry"][0]["fullUrl"]
    assert task.restriction.period.end.isoformat().startswith("2026-11-01T09:45")
    # Deterministic ids: the same referral renders the same resources.
    assert referral_bundle(health_referral(), ISSUED, set()) == bundle


@pytest.mark.parametrize(
    ("replies", "status"),
    [
        ({ReplyKind.ACKNOWLEDGE}, "received"),
        ({ReplyKind.ACKNOWLEDGE, ReplyKind.ACCEPT}, "accepted"),
        ({ReplyKind.ACKNOWLEDGE, ReplyKind.DECLINE}, "rejected"),
        ({ReplyKind.ACKNOWLEDGE, ReplyKind.ACCEPT, ReplyKind.COMPLETE}, "completed"),
    ],
)
def test_the_task_follows_the_replies(replies: set[ReplyKind], status: str) -> None:
    assert task_status(replies) == status
    bundle = referral_bundle(health_referral(), ISSUED, replies)
    assert Task.model_validate(bundle["entry"][1]["resource"]).status == status


def test_nothing_identifying_and_nothing_internal_beyond_the_sop_reference() -> None:
    text = json.dumps(referral_bundle(health_referral(), ISSUED, set()))
    assert "child-injury" not in text  # rule ids stay inside rujuk
    assert "rsud-dr-saleh" not in text  # so does the escalation chain
    assert '"name"' not in text
    assert "Patient/" not in text
