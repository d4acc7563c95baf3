"""Generate the checked-in JSON Schemas and AsyncAPI document from the payload models.

Usage: ``python -m rujuk_contracts.generate contracts/schemas``. A test fails when the
checked-in files drift from what this produces.
"""

import json
import sys
from pathlib import Path
from typing import Any

from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE, TRACEPARENT_PATTERN, CloudEvent
from rujuk_contracts.events import (
    EVENT_MODELS,
    EventPayload,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralCompleted,
    ReferralDeclined,
    ReferralReplyRefused,
    ReferralRequested,
    ReplyKind,
    SopAnswerGiven,
    SopAnswerRefused,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
)

ASYNCAPI_FILE = "asyncapi.json"


def event_schema(model: type[EventPayload]) -> dict[str, Any]:
    """JSON Schema of the whole CloudEvent carrying this payload."""
    envelope = CloudEvent.model_json_schema()
    data = model.model_json_schema(ref_template="#/$defs/{model}")
    defs = {**envelope.pop("$defs", {}), **data.pop("$defs", {})}
    envelope["properties"]["type"] = {"const": model.event_type(), "type": "string"}
    envelope["properties"]["dataschema"] = {"const": model.schema_uri(), "type": "string"}
    envelope["properties"]["data"] = data
    envelope["title"] = model.event_type()
    envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    envelope["$id"] = model.schema_uri()
    if defs:
        envelope["$defs"] = defs
    return envelope


# What each partner reads on its feed and publishes as replies: (event name on its subject,
# payload model). The subjects are ``subjects.partner_outbound`` / ``partner_inbound``.
PARTNER_FEED: tuple[tuple[str, type[EventPayload]], ...] = (
    ("referral.requested", ReferralRequested),
    ("reply.refused", ReferralReplyRefused),
    # SOP proposals: to each asked agency (section 12 of docs/partners.md)
    ("sop.proposed", SopProposed),
    ("sop.proposal_withdrawn", SopProposalWithdrawn),
    ("sop.published", SopPublished),
    ("sop.answer_refused", SopAnswerRefused),
)
PARTNER_REPLIES: tuple[tuple[ReplyKind, type[EventPayload]], ...] = (
    (ReplyKind.ACKNOWLEDGE, ReferralAcknowledged),
    (ReplyKind.ACCEPT, ReferralAccepted),
    (ReplyKind.DECLINE, ReferralDeclined),
    (ReplyKind.COMPLETE, ReferralCompleted),
)
# What a partner publishes besides its replies to referrals: (its subject's last token, the
# model, the feed event on which a refusal of it comes back).
PARTNER_ANSWERS: tuple[tuple[str, type[EventPayload], str], ...] = (
    (subjects.SOP_ANSWER, SopAnswerGiven, "sop.answer_refused"),
)
# The feed events that carry a problem document when what the partner sent was unreadable.
REFUSAL_FEEDS = ("reply.refused", "sop.answer_refused")
REFUSAL_PROBLEM = "reply.refused.problem"
PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE = "urn:rujuk:problem:reply-refused"
AGENCY = "{agency}"
AGENCY_PLACEHOLDER = "agency-x"  # a valid agency id, replaced by the {agency} parameter


def message_name(model: type[EventPayload]) -> str:
    return f"{model.aggregate}.{model.event}.v{model.version}"


def _headers(*, sent_by_partner: bool = False) -> dict[str, Any]:
    msg_id = (
        "Set it to the CloudEvent id: JetStream then drops a repeat of the same reply "
        "within its duplicate window"
        if sent_by_partner
        else "The CloudEvent id (the idempotency key): a repeat of the same event has the same"
    )
    return {
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {"type": "string", "maxLength": 64, "description": msg_id},
            "traceparent": {
                "type": "string",
                "pattern": TRACEPARENT_PATTERN,
                "description": "W3C trace context, the same as the event's traceparent "
                "attribute" + ("; optional" if sent_by_partner else "; when the event has one"),
            },
            "Content-Type": {"type": "string", "const": CONTENT_TYPE},
        },
        **({} if sent_by_partner else {"required": ["Nats-Msg-Id", "Content-Type"]}),
    }


def _event_message(model: type[EventPayload], *, sent_by_partner: bool = False) -> dict[str, Any]:
    summary = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
    message: dict[str, Any] = {
        "name": model.event_type(),
        "title": model.__name__,
        "contentType": CONTENT_TYPE,
        "payload": {"$ref": f"./{model.event_type()}.json"},
        "headers": _headers(sent_by_partner=sent_by_partner),
    }
    if summary:
        message["summary"] = summary
    if sent_by_partner:
        about = "data.sop_id" if model is SopAnswerGiven else "the case id"
        message["description"] = (
            f"A partner's reply: a CloudEvent with type {model.event_type()!r}, dataschema "
            f"{model.schema_uri()!r}, subject = {about}, source = "
            f"'/rujuk/partners/<agency>' exactly (any other is refused), a unique id, time, "
            "datacontenttype 'application/json'; data.agency_id is the replying agency."
        )
    return message


def _problem_message() -> dict[str, Any]:
    return {
        "name": REFUSAL_PROBLEM,
        "title": "Reply refused (unreadable reply)",
        "summary": "A reply (or SOP answer) notify could not read as a CloudEvent of its type.",
        "contentType": PROBLEM_CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {
                    "type": "string",
                    "description": "refused:<agency>:<the reply's id, or seq-<stream sequence>>",
                },
                "Content-Type": {"type": "string", "const": PROBLEM_CONTENT_TYPE},
            },
            "required": ["Content-Type"],
        },
        "payload": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "detail", "reply_id"],
            "properties": {
                "type": {"type": "string", "const": PROBLEM_TYPE},
                "title": {"type": "string"},
                "detail": {"type": "string", "maxLength": 500, "description": "Why"},
                "reply_id": {
                    "type": ["string", "null"],
                    "description": "The refused reply's CloudEvent id, else seq-<its stream "
                    "sequence>",
                },
            },
        },
    }


def _agency_parameter() -> dict[str, Any]:
    return {
        "description": "The partner agency's id: lowercase letters, digits and dashes "
        f"({subjects.AGENCY_ID_PATTERN}); a partner may use only its own",
        "examples": ["rsud-bangil"],
    }


def _internal_channels() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for _, model in sorted(EVENT_MODELS.items()):
        name = message_name(model)
        channels[f"internal.{name}"] = {
            "address": model.subject(),
            "title": f"internal {model.aggregate}.{model.event}",
            "description": f"Internal event, stream {subjects.EVENTS_STREAM}: services and "
            "audit read it; a partner may not.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
    channels["internal.dead-letter"] = {
        "address": "rujuk.dlq.{service}",
        "title": "dead letters",
        "description": f"Messages a service parked (stream {subjects.DLQ_STREAM}), as they "
        "came, with the reason in the Rujuk-Dlq-Reason header; for ops, not partners.",
        "parameters": {"service": {"description": "The service that parked it"}},
    }
    channels["internal.audit-checkpoint"] = {
        "address": subjects.CHECKPOINT_SUBJECT,
        "title": "audit checkpoints",
        "description": f"Audit's signed ledger heads (stream {subjects.AUDIT_STREAM}), for "
        "witnesses; see docs/audit.md.",
    }
    channels["internal.replay"] = {
        "address": "rujuk.replay.{request}.{aggregate}.{event}",
        "title": "replays",
        "description": f"History audit re-publishes on request (stream "
        f"{subjects.REPLAY_STREAM}), for a projection being rebuilt; see docs/audit.md.",
        "parameters": {
            "request": {"description": "The replay request's id"},
            "aggregate": {"description": "As in rujuk.evt.<aggregate>.<event>"},
            "event": {"description": "As in rujuk.evt.<aggregate>.<event>"},
        },
    }
    return channels


def _partner_channels_and_operations() -> tuple[dict[str, Any], dict[str, Any]]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    feed_note = (
        f"On the partner's own feed, stream {subjects.PARTNER_STREAM}, read through its "
        "durable consumer partner-<agency> (filter rujuk.partner.<agency>.out.>; pull, "
        "acknowledge each message after handling it)."
    )
    for event, model in PARTNER_FEED:
        name = message_name(model)
        channel = f"partner.out.{event}"
        messages = {name: {"$ref": f"#/components/messages/{name}"}}
        if event in REFUSAL_FEEDS:
            messages[REFUSAL_PROBLEM] = {"$ref": f"#/components/messages/{REFUSAL_PROBLEM}"}
        channels[channel] = {
            "address": subjects.partner_outbound(AGENCY_PLACEHOLDER, event).replace(
                AGENCY_PLACEHOLDER, AGENCY
            ),
            "title": f"partner feed: {event}",
            "description": feed_note,
            "parameters": {"agency": _agency_parameter()},
            "messages": messages,
        }
        operations[f"receive.{event}"] = {
            "action": "receive",
            "title": f"Receive {event}",
            "summary": "The partner receives this on its feed (notify publishes it).",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
        }
    for kind, model in PARTNER_REPLIES:
        name = f"reply.{kind.value}"
        channel = f"partner.in.{kind.value}"
        message = message_name(model)
        channels[channel] = {
            "address": subjects.partner_inbound(AGENCY_PLACEHOLDER, kind.value).replace(
                AGENCY_PLACEHOLDER, AGENCY
            ),
            "title": f"partner reply: {kind.value}",
            "description": f"Where the partner publishes its {kind.value} replies (stream "
            f"{subjects.PARTNER_STREAM}); only its own agency's subject. A refused reply is "
            "answered on rujuk.partner.<agency>.out.reply.refused.",
            "parameters": {"agency": _agency_parameter()},
            "messages": {message: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"send.{kind.value}"] = {
            "action": "send",
            "title": f"Send {kind.value}",
            "summary": "The partner publishes this (notify checks it and passes it to routing).",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }
    for token, model, refused_on in PARTNER_ANSWERS:
        channel = f"partner.in.{token}"
        message = message_name(model)
        channels[channel] = {
            "address": subjects.partner_inbound(AGENCY_PLACEHOLDER, token).replace(
                AGENCY_PLACEHOLDER, AGENCY
            ),
            "title": f"partner answer: {token}",
            "description": f"Where the partner publishes its {model.event_type()} (stream "
            f"{subjects.PARTNER_STREAM}); only its own agency's subject. A refused one is "
            f"answered on rujuk.partner.<agency>.out.{refused_on}.",
            "parameters": {"agency": _agency_parameter()},
            "messages": {message: {"$ref": f"#/components/messages/reply.{token}"}},
        }
        operations[f"send.{token}"] = {
            "action": "send",
            "title": f"Send {token}",
            "summary": "The partner publishes this (notify checks it and passes it to routing).",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }
    return channels, operations


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3 document, written from a partner agency's point of view: the operations
    are what a partner's application does (receive its feed, send its replies). The internal
    channels are listed for completeness, without operations: a partner may not use them."""
    messages: dict[str, Any] = {
        message_name(model): _event_message(model) for _, model in sorted(EVENT_MODELS.items())
    }
    for kind, model in PARTNER_REPLIES:
        messages[f"reply.{kind.value}"] = _event_message(model, sent_by_partner=True)
    for token, model, _ in PARTNER_ANSWERS:
        messages[f"reply.{token}"] = _event_message(model, sent_by_partner=True)
    messages[REFUSAL_PROBLEM] = _problem_message()
    partner_channels, operations = _partner_channels_and_operations()
    return {
        "asyncapi": "3.0.0",
        "id": "urn:rujuk:asyncapi:partner",
        "info": {
            "title": "rujuk: a partner agency's feed and replies",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 in the JSON event format on NATS JetStream. The "
            "event type names its schema version (id.rujuk.<aggregate>.<event>.v<N>); a "
            "breaking change is a new version, published side by side. Operations are a "
            "partner agency's: it receives its feed and sends its replies. Guide: "
            "docs/partners.md.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:4322",
                "protocol": "nats",
                "description": "The bus `rujuk up` starts (TLS and the URL in production: what "
                "`rujuk partner creds` prints)",
                "security": [{"$ref": "#/components/securitySchemes/nkey"}],
            }
        },
        "channels": {**partner_channels, **_internal_channels()},
        "operations": operations,
        "components": {
            "messages": messages,
            "securitySchemes": {
                "nkey": {
                    "type": "asymmetricEncryption",
                    "description": "An NATS nkey: the seed file `rujuk partner creds AGENCY` "
                    "makes (the server holds only the public key). Connect with inbox prefix "
                    "_INBOX_<agency>.",
                }
            },
        },
    }


def render_all() -> dict[str, str]:
    """File name (relative to the output folder) -> content."""
    files = {
        f"{event_type}.json": _dump(event_schema(model))
        for event_type, model in EVENT_MODELS.items()
    }
    files[ASYNCAPI_FILE] = _dump(asyncapi_document())
    return files


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_all().items():
        path = folder / name
        path.write_text(content)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "contracts/schemas")
    for path in write_all(target):
        print(path)
