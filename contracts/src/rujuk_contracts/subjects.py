"""The NATS subject hierarchy and JetStream stream names, in one place.

| subject                              | publisher          | reader                         |
| ------------------------------------ | ------------------ | ------------------------------ |
| rujuk.evt.<aggregate>.<event>        | the owning service | services, audit                |
| rujuk.partner.<agency>.out.<event>   | notify             | that agency only               |
| rujuk.partner.<agency>.in.<reply>    | that agency only   | notify                         |
| rujuk.dlq.<service>                  | any service        | ops                            |
| rujuk.audit.checkpoint               | audit              | anyone with the public key     |
| rujuk.replay.<request>.<agg>.<event> | audit (on request) | a projection being rebuilt     |
"""

import re

PREFIX = "rujuk"
EVENTS_STREAM = "RUJUK_EVENTS"
EVENTS_WILDCARD = f"{PREFIX}.evt.>"
PARTNER_STREAM = "RUJUK_PARTNER"
PARTNER_WILDCARD = f"{PREFIX}.partner.>"
DLQ_STREAM = "RUJUK_DLQ"
DLQ_WILDCARD = f"{PREFIX}.dlq.>"

AUDIT_STREAM = "RUJUK_AUDIT"
AUDIT_WILDCARD = f"{PREFIX}.audit.>"
CHECKPOINT_SUBJECT = f"{PREFIX}.audit.checkpoint"
REPLAY_STREAM = "RUJUK_REPLAY"
REPLAY_WILDCARD = f"{PREFIX}.replay.>"

# The last token of the subject on which a partner answers a proposed SOP version:
# ``rujuk.partner.<agency>.in.sop_answer`` (its referral replies use the ReplyKind values).
SOP_ANSWER = "sop_answer"

AGENCY_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


def event_subject(aggregate: str, event: str) -> str:
    """Internal event subject, e.g. ``rujuk.evt.case.reported``."""
    return f"{PREFIX}.evt.{aggregate}.{event}"


def check_agency_id(agency_id: str) -> str:
    """Return the agency id if it is NATS-token-safe, else raise ValueError."""
    if not _AGENCY_ID.fullmatch(agency_id):
        raise ValueError(
            f"agency id {agency_id!r} must be lowercase letters, digits and dashes "
            "(it becomes a NATS subject token)"
        )
    return agency_id


def partner_outbound(agency_id: str, event: str) -> str:
    """What notify publishes to one agency.

    e.g. ``rujuk.partner.rsud-bangil.out.referral.requested``
    """
    return f"{PREFIX}.partner.{check_agency_id(agency_id)}.out.{event}"


def partner_outbound_wildcard(agency_id: str) -> str:
    return f"{PREFIX}.partner.{check_agency_id(agency_id)}.out.>"


def partner_inbound(agency_id: str, reply: str) -> str:
    """Where an agency publishes its replies, e.g. ``rujuk.partner.rsud-bangil.in.acknowledge``."""
    return f"{PREFIX}.partner.{check_agency_id(agency_id)}.in.{reply}"


def partner_inbound_wildcard(agency_id: str) -> str:
    return f"{PREFIX}.partner.{check_agency_id(agency_id)}.in.>"


def partner_source(agency_id: str) -> str:
    """The CloudEvents ``source`` of an agency's replies, e.g. ``/rujuk/partners/rsud-bangil``:
    the partner sets it, and notify passes the reply on to routing under it unchanged."""
    return f"/{PREFIX}/partners/{check_agency_id(agency_id)}"


def replay_subject(request_id: str, aggregate: str, event: str) -> str:
    """Where audit re-publishes history for one replay request."""
    return f"{PREFIX}.replay.{request_id}.{aggregate}.{event}"


def dead_letter(service: str) -> str:
    """Where a service parks a message it cannot process, with the reason."""
    return f"{PREFIX}.dlq.{service}"
