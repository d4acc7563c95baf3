"""rujuk's public contracts: what crosses a service boundary, and nothing else.

Depends on pydantic only, so a partner agency can install it alone.
"""

from rujuk_contracts.envelope import CloudEvent, EventError, make_event, parse_event
from rujuk_contracts.events import EVENT_MODELS, EventPayload, model_for_type

__all__ = [
    "EVENT_MODELS",
    "CloudEvent",
    "EventError",
    "EventPayload",
    "make_event",
    "model_for_type",
    "parse_event",
]
