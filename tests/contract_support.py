"""What contracts/ publishes, as a test reads it: each event type's JSON Schema (validated as a
partner's validator would, formats included) and the subjects the AsyncAPI document names."""

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

SCHEMAS = Path(__file__).parents[1] / "contracts" / "schemas"


@cache
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMAS / "asyncapi.json").read_text())
    return document


@cache
def _validator(event_type: str) -> Any:
    schema = json.loads((SCHEMAS / f"{event_type}.json").read_text())
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def schema_errors(event: dict[str, Any]) -> list[str]:
    """Why a CloudEvent does not match the published schema of its type; empty when it does."""
    event_type = event.get("type")
    if not isinstance(event_type, str) or not (SCHEMAS / f"{event_type}.json").is_file():
        return [f"no published schema for type {event_type!r}"]
    return [
        f"{error.instance_path}: {error.message}"
        for error in _validator(event_type).iter_errors(event)
    ]


def _pattern(address: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", address)
    return re.compile(
        "^" + "".join("[^.]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


def channel_of(subject: str) -> str | None:
    """The AsyncAPI channel whose address this subject is (parameters filled in), if any."""
    for name, channel in asyncapi()["channels"].items():
        if _pattern(channel["address"]).match(subject):
            return str(name)
    return None


def header_errors(channel: str, headers: dict[str, str], content_type: str) -> list[str]:
    """Why a message's NATS headers do not match what the channel's message of that content
    type declares; empty when they do."""
    document = asyncapi()
    for reference in document["channels"][channel].get("messages", {}).values():
        message = document["components"]["messages"][reference["$ref"].rsplit("/", 1)[1]]
        if message["contentType"] == content_type:
            validator = jsonschema_rs.validator_for(message["headers"])
            return [error.message for error in validator.iter_errors(headers)]
    return [f"channel {channel} declares no message of content type {content_type!r}"]
