"""A referral as HL7 FHIR resources: a ``ServiceRequest`` (what is asked of the agency) and a
``Task`` (where it stands), in a ``collection`` Bundle, the form SATUSEHAT speaks.

Built and validated with ``fhir.resources``: its ``R4B`` models (the package ships R5, R4B
and STU3, not R4 itself; ServiceRequest and Task are the same in R4 and R4B for every element
used here). The patient is referred to only by the pseudonymous case id, as an identifier:
no name, no NIK, no address ever goes into these resources.

The Task status follows the partner's replies as notify passed them on: requested (none yet),
received (acknowledged), accepted, rejected (declined), completed. Routing owns the lifecycle;
a reply it refused afterwards is not reflected here.
"""

import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from rujuk_contracts.events import Priority, ReferralRequested, ReplyKind, Service

CASE_SYSTEM = "urn:rujuk:case-id"
REFERRAL_SYSTEM = "urn:rujuk:referral-id"
AGENCY_SYSTEM = "urn:rujuk:agency-id"
SOP_SYSTEM = "urn:rujuk:sop"
SERVICE_SYSTEM = "urn:rujuk:service"
NAMESPACE = uuid.UUID("a8f5f167-0e1f-4b8e-9a6c-3b9a9d1f6c20")

PRIORITY = {Priority.EMERGENCY: "stat", Priority.URGENT: "urgent", Priority.ROUTINE: "routine"}
SERVICE_TEXT = {
    Service.HEALTH: "Health care for a survivor of violence",
    Service.POLICE: "Police (PPA unit) report",
    Service.SHELTER: "Safe house",
    Service.PSYCHOSOCIAL: "Psychosocial support",
    Service.LEGAL: "Legal aid",
    Service.SOCIAL: "Social services",
    Service.CASE_MANAGEMENT: "Case management",
    Service.MEDIATION: "Mediation",
}
TASK_STATUS = {
    None: "requested",
    ReplyKind.ACKNOWLEDGE: "received",
    ReplyKind.ACCEPT: "accepted",
    ReplyKind.DECLINE: "rejected",
    ReplyKind.COMPLETE: "completed",
}


def task_status(replies: set[ReplyKind]) -> str:
    """The furthest state the replies reached."""
    for kind in (ReplyKind.COMPLETE, ReplyKind.DECLINE, ReplyKind.ACCEPT, ReplyKind.ACKNOWLEDGE):
        if kind in replies:
            return TASK_STATUS[kind]
    return TASK_STATUS[None]


def _id(referral_id: str, kind: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{referral_id}"))


def referral_bundle(
    referral: ReferralRequested, issued_at: datetime, replies: set[ReplyKind]
) -> dict[str, Any]:
    """The ServiceRequest and Task of one referral, validated, as FHIR JSON."""
    request_id, task_id = _id(referral.referral_id, "sr"), _id(referral.referral_id, "task")
    case = {"identifier": {"system": CASE_SYSTEM, "value": referral.case_id}}
    agency = {
        "type": "Organization",
        "identifier": {"system": AGENCY_SYSTEM, "value": referral.agency_id},
    }
    identifier = [{"system": REFERRAL_SYSTEM, "value": referral.referral_id}]
    status = task_status(replies)
    service_request = {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "identifier": identifier,
        "status": "completed" if status == "completed" else "active",
        "intent": "order",
        "category": [{"coding": [{"system": SERVICE_SYSTEM, "code": referral.service.value}]}],
        "code": {"text": SERVICE_TEXT[referral.service]},
        "priority": PRIORITY[referral.priority],
        "subject": case,
        "authoredOn": issued_at.isoformat(),
        "performer": [agency],
        "instantiatesUri": [f"{SOP_SYSTEM}:{referral.sop_id}:v{referral.sop_version}"],
    }
    task = {
        "resourceType": "Task",
        "id": task_id,
        "identifier": identifier,
        "basedOn": [{"reference": f"urn:uuid:{request_id}"}],
        "focus": {"reference": f"urn:uuid:{request_id}"},
        "status": status,
        "intent": "order",
        "priority": PRIORITY[referral.priority],
        "for": case,
        "authoredOn": issued_at.isoformat(),
        "owner": agency,
        "restriction": {"period": {"end": referral.acknowledgement_deadline.isoformat()}},
    }
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"urn:uuid:{request_id}", "resource": service_request},
                {"fullUrl": f"urn:uuid:{task_id}", "resource": task},
            ],
        }
    )
    document: dict[str, Any] = bundle.model_dump(
        mode="json",
        # equivalent: None or left out too, fhir.resources then excludes None itself
        exclude_none=True,  # pragma: no mutate
    )
    return document
