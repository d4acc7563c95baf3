"""The CloudEvent envelope in detail: what make_event fills in, the size limit at its edge,
and how a refusal names the first problems (issue 26: each test here kills mutants of
rujuk_contracts/envelope.py that survived)."""

import json
import re
from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from rujuk_contracts import EventError, make_event, parse_event
from rujuk_contracts.envelope import (
    MAX_EVENT_BYTES,
    CloudEvent,
    _first_errors,
    new_event_id,
    parse_envelope,
)
from tests.unit.test_contracts import CASE_ID, _reported

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_make_event_fills_in_an_id_the_time_now_in_utc_and_json_data() -> None:
    event = make_event(_reported(), source="/rujuk/intake")
    assert re.fullmatch(UUID4, event.id)
    assert event.time.utcoffset() == timedelta(0)
    assert event.data["reported_at"] == "2026-11-01T08:30:00Z"
    assert json.loads(event.to_bytes())["data"] == event.data


def test_make_event_carries_the_traceparent_it_is_given() -> None:
    event = make_event(_reported(), source="/rujuk/intake", traceparent=TRACEPARENT)
    assert event.traceparent == TRACEPARENT
    assert parse_event(event.to_bytes())[0].traceparent == TRACEPARENT


def test_an_event_without_a_traceparent_leaves_it_out_of_its_bytes() -> None:
    document = json.loads(make_event(_reported(), source="/rujuk/intake").to_bytes())
    assert "traceparent" not in document
    assert None not in document.values()


def test_event_ids_are_random_uuids() -> None:
    ids = {new_event_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(UUID4, event_id) for event_id in ids)


def test_a_message_of_exactly_the_limit_is_read() -> None:
    raw = make_event(_reported(), source="/rujuk/intake").to_bytes()
    padded = raw + b" " * (MAX_EVENT_BYTES - len(raw))
    assert len(padded) == MAX_EVENT_BYTES
    assert parse_envelope(padded).subject == CASE_ID
    with pytest.raises(EventError) as refused:
        parse_envelope(padded + b" ")
    assert str(refused.value) == (
        f"message of {MAX_EVENT_BYTES + 1} bytes exceeds the limit of {MAX_EVENT_BYTES}"
    )


def test_a_body_that_is_not_an_object_says_so() -> None:
    with pytest.raises(EventError) as refused:
        parse_envelope(b'"CONTOH"')
    assert str(refused.value) == "body is not a JSON object"


def test_a_refusal_names_the_first_three_problems_by_their_place() -> None:
    with pytest.raises(EventError) as refused:
        parse_envelope(b'{"specversion": "0.3", "data": [], "subject": "?", "time": "x"}')
    problems = str(refused.value).removeprefix("not a CloudEvent: ").split("; ")
    assert [problem.split(":")[0] for problem in problems] == ["specversion", "id", "source"]


def test_invalid_data_names_the_type_and_each_field_by_its_dotted_place() -> None:
    event = make_event(_reported(), source="/rujuk/intake")
    document = event.model_dump(mode="json")
    document["data"]["triage"]["violence_types"] = ["CONTOH"]
    broken = CloudEvent.model_validate(document)
    with pytest.raises(EventError) as refused:
        broken.payload()
    assert str(refused.value).startswith(
        "invalid data for id.rujuk.case.reported.v1: triage.violence_types.0: Input should be"
    )


def test_invalid_data_names_at_most_three_problems() -> None:
    event = make_event(_reported(), source="/rujuk/intake")
    broken = event.model_copy(update={"data": {}})  # four required fields missing
    with pytest.raises(EventError) as refused:
        broken.payload()
    message = str(refused.value)
    assert message.startswith("invalid data for id.rujuk.case.reported.v1: ")
    assert message.count("; ") == 2  # three problems of the data, no more


class Pair(BaseModel):
    a: int


def test_a_whole_body_problem_is_placed_at_body() -> None:
    with pytest.raises(ValidationError) as caught:
        Pair.model_validate("CONTOH")
    assert _first_errors(caught.value).startswith("(body): ")
