"""What the idempotent consumer parks before it touches the database, and the reason it gives."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from rujuk_contracts import make_event
from rujuk_contracts.events import CaseReported, ReferralDelivered
from rujuk_contracts.triage import TriageFacts
from rujuk_runtime.consumer import EventConsumer

CASE_ID = "3514-AB12CD34EF"


@dataclass
class FakeMessage:
    subject: str
    data: bytes


async def handled(*_: Any) -> None:
    raise AssertionError("a parked message never reaches a handler")


def consumer() -> EventConsumer:
    types = (CaseReported, ReferralDelivered)
    return EventConsumer(
        service="routing",
        pool=None,  # type: ignore[arg-type]  # a parking verdict needs no database
        js=lambda: None,  # type: ignore[arg-type, return-value]
        handlers={t.event_type(): handled for t in types},
    )


def delivered() -> bytes:
    payload = ReferralDelivered(
        case_id=CASE_ID, referral_id="r-1", agency_id="rsud-bangil", channels=["nats"], attempts=1
    )
    return make_event(payload, source="/rujuk/test").to_bytes()


async def verdict(subject: str, data: bytes) -> str | None:
    return await consumer()._handle_one(None, FakeMessage(subject, data))  # type: ignore[arg-type]


async def test_an_event_on_another_types_subject_is_parked_naming_both_subjects() -> None:
    reason = await verdict(CaseReported.subject(), delivered())
    assert reason == (
        "id.rujuk.referral.delivered.v1 belongs on rujuk.evt.referral.delivered, "
        "not on rujuk.evt.case.reported"
    )


async def test_an_unknown_schema_version_is_parked_naming_the_known_ones() -> None:
    reported = make_event(
        CaseReported(
            case_id=CASE_ID,
            channel="hotline",
            reported_at=datetime(2026, 11, 1, tzinfo=UTC),
            triage=TriageFacts(
                violence_types=["physical"], age_group="adult", sex="female", district_code="3514"
            ),
        ),
        source="/rujuk/test",
    )
    v2 = reported.model_copy(update={"type": "id.rujuk.case.reported.v2"}).to_bytes()
    assert await verdict(CaseReported.subject(), v2) == (
        "routing does not handle event type 'id.rujuk.case.reported.v2': unknown schema version "
        "(known: id.rujuk.case.reported.v1)"
    )
    schema_v2 = reported.model_copy(update={"dataschema": "urn:rujuk:schema:case.reported:v2"})
    reason = await verdict(CaseReported.subject(), schema_v2.to_bytes())
    assert reason is not None
    assert reason.startswith("unknown schema version: dataschema is not")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x9f\x00garbage", "not JSON"),
        (b'{"specversion": "1.0", "id": "x', "not JSON"),
        (b"{" + b" " * 70_000 + b"}", "exceeds the limit"),
    ],
)
async def test_what_is_not_an_event_is_parked_with_the_problem(data: bytes, problem: str) -> None:
    reason = await verdict(CaseReported.subject(), data)
    assert reason is not None
    assert problem in reason


async def test_a_consumer_that_skips_unhandled_types_acks_them_without_the_database() -> None:
    """Intake's projection reads every subject but projects some types only: the others are
    done (None) without a transaction (no pool here), a type on a wrong subject is still
    parked, and an unknown type still is too."""
    skipping = EventConsumer(
        service="intake",
        pool=None,  # type: ignore[arg-type]  # skipping must not need the database
        js=lambda: None,  # type: ignore[arg-type, return-value]
        handlers={},
        skip_unhandled=True,
    )

    async def verdict_of(subject: str, data: bytes) -> str | None:
        return await skipping._handle_one(None, FakeMessage(subject, data))  # type: ignore[arg-type]

    assert await verdict_of(ReferralDelivered.subject(), delivered()) is None
    assert "belongs on" in (await verdict_of(CaseReported.subject(), delivered()) or "")
    unknown = delivered().replace(b"referral.delivered.v1", b"referral.teleported.v1")
    reason = await verdict_of(ReferralDelivered.subject(), unknown)
    assert reason is not None
    assert "does not handle" in reason
