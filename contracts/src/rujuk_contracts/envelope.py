"""CloudEvents 1.0 envelope, JSON event format (structured content mode of the NATS binding)."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rujuk_contracts.events import EventPayload, model_for_type

CONTENT_TYPE = "application/cloudevents+json"
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
MAX_EVENT_BYTES = 64 * 1024


class EventError(ValueError):
    """A message that is not a valid rujuk event; the text says why."""


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, description="URI-reference of the producing service")
    type: str
    subject: str = Field(
        pattern=SUBJECT_PATTERN, description="What the event is about: the pseudonymous case id"
    )
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN)
    data: dict[str, Any]

    def payload(self) -> EventPayload:
        """The typed payload; raises EventError for an unknown type or invalid data."""
        model = model_for_type(self.type)
        if model is None:
            raise EventError(f"unknown event type {self.type!r}")
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise EventError(f"invalid data for {self.type}: {_first_errors(exc)}") from exc

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def new_event_id() -> str:
    return str(uuid.uuid4())


def make_event(
    payload: EventPayload,
    *,
    source: str,
    traceparent: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id or new_event_id(),
        source=source,
        type=payload.event_type(),
        subject=payload.subject_id(),
        time=time or datetime.now(UTC),
        dataschema=payload.schema_uri(),
        traceparent=traceparent,
        data=payload.event_data(),
    )


def parse_envelope(raw: bytes) -> CloudEvent:
    """Parse a message body as a CloudEvent, whatever its type; failures are EventErrors."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"message of {len(raw)} bytes exceeds the limit of {MAX_EVENT_BYTES}")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise EventError("body is not a JSON object")
    try:
        envelope = CloudEvent.model_validate(document)
    except ValidationError as exc:
        raise EventError(f"not a CloudEvent: {_first_errors(exc)}") from exc
    return envelope


def parse_event(raw: bytes) -> tuple[CloudEvent, EventPayload]:
    """Parse and validate a message body and its typed payload; failures are EventErrors."""
    envelope = parse_envelope(raw)
    return envelope, payload_of(envelope)


def payload_of(envelope: CloudEvent) -> EventPayload:
    """The typed payload of a parsed envelope, validated against its type and schema version;
    failures are EventErrors."""
    model = model_for_type(envelope.type)
    if model is not None and envelope.dataschema != model.schema_uri():
        raise EventError(
            f"unknown schema version: dataschema is not {model.schema_uri()!r}, the schema of "
            f"{envelope.type}"
        )
    payload = envelope.payload()
    if payload.subject_id() != envelope.subject:
        raise EventError(f"subject {envelope.subject!r} differs from what the data is about")
    return payload


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(part) for part in error["loc"]) or "(body)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)
