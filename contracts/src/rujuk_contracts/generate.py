"""Generate the checked-in JSON Schemas and AsyncAPI document from the payload models.

Usage: ``python -m rujuk_contracts.generate contracts/schemas``. A test fails when the
checked-in files drift from what this produces.
"""

import json
import sys
from pathlib import Path
from typing import Any

from rujuk_contracts import subjects
from rujuk_contracts.envelope import CONTENT_TYPE, CloudEvent
from rujuk_contracts.events import EVENT_MODELS, EventPayload

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


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_MODELS.items()):
        name = f"{model.aggregate}.{model.event}.v{model.version}"
        messages[name] = {
            "name": event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": f"schemas/{event_type}.json"},
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {"type": "string", "description": "= CloudEvent id"},
                    "traceparent": {"type": "string", "description": "W3C trace context"},
                },
            },
        }
        channels[name] = {
            "address": model.subject(),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"receive.{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
        }
    channels["partner.outbound"] = {
        "address": "rujuk.partner.{agency}.out.{event}",
        "description": "Each partner agency's own feed; it may read only its own.",
        "parameters": {"agency": {"description": subjects.AGENCY_ID_PATTERN}, "event": {}},
    }
    channels["partner.inbound"] = {
        "address": "rujuk.partner.{agency}.in.{reply}",
        "description": "Where each partner agency publishes its replies; only its own.",
        "parameters": {"agency": {"description": subjects.AGENCY_ID_PATTERN}, "reply": {}},
    }
    channels["dead-letter"] = {
        "address": "rujuk.dlq.{service}",
        "description": "Messages a service parked, with the reason in the Rujuk-Dlq-Reason header.",
        "parameters": {"service": {}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "rujuk events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 (JSON event format) on NATS JetStream. "
            "The event type names its schema version.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
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
