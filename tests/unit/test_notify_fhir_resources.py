"""The FHIR bundle's ids, references and statuses, exactly (issue 26: each test here kills
mutants of notify/fhir.py that survived)."""

import json
import uuid

from notify.fhir import NAMESPACE, REFERRAL_SYSTEM, referral_bundle
from rujuk_contracts.events import ReplyKind
from tests.unit.test_notify_fhir import ISSUED, health_referral


def test_the_request_and_task_ids_are_named_uuids_of_the_referral() -> None:
    bundle = referral_bundle(health_referral(), ISSUED, set())
    request, task = (entry["resource"] for entry in bundle["entry"])
    assert request["id"] == str(uuid.uuid5(NAMESPACE, "sr:ref-0007"))
    assert task["id"] == str(uuid.uuid5(NAMESPACE, "task:ref-0007"))
    assert [entry["fullUrl"] for entry in bundle["entry"]] == [
        f"urn:uuid:{request['id']}",
        f"urn:uuid:{task['id']}",
    ]
    assert task["basedOn"] == [{"reference": f"urn:uuid:{request['id']}"}]


def test_both_resources_carry_the_referral_id_and_name_the_agency_as_an_organization() -> None:
    bundle = referral_bundle(health_referral(), ISSUED, set())
    request, task = (entry["resource"] for entry in bundle["entry"])
    identifier = [{"system": REFERRAL_SYSTEM, "value": "ref-0007"}]
    assert request["identifier"] == identifier
    assert task["identifier"] == identifier
    assert request["performer"][0]["type"] == "Organization"
    assert task["owner"]["type"] == "Organization"


def test_a_completed_task_completes_its_request() -> None:
    bundle = referral_bundle(health_referral(), ISSUED, {ReplyKind.COMPLETE})
    request, task = (entry["resource"] for entry in bundle["entry"])
    assert (request["status"], task["status"]) == ("completed", "completed")
    declined = referral_bundle(health_referral(), ISSUED, {ReplyKind.DECLINE})
    assert declined["entry"][0]["resource"]["status"] == "active"


def test_the_bundle_has_no_empty_elements() -> None:
    assert "null" not in json.dumps(referral_bundle(health_referral(), ISSUED, set()))
