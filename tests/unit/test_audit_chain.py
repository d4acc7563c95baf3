"""The audit ledger's hash chain: how entries are sealed, and how verify names what was altered."""

import dataclasses
import hashlib
import inspect
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785

from audit import chain
from audit.chain import GENESIS, GENESIS_HASH, Entry, FailureKind, Head
from rujuk_contracts import CloudEvent, make_event
from rujuk_contracts.events import (
    CaseReported,
    CaseRouted,
    ReferralAcknowledged,
    ReferralDelivered,
    ReferralRequested,
    ReferralSummary,
)
from rujuk_contracts.triage import AgeGroup, Sex, TriageFacts, ViolenceType

CASE_ID = "3514-AB12CD34EF"
REPORTED_AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 08:00 in Bangil (WIB, UTC+7)


def case_story(case_id: str = CASE_ID, start: datetime = REPORTED_AT) -> list[CloudEvent]:
    """One invented case from report to acknowledgement, as the services would publish it."""
    referral_id = f"{case_id}-01"
    return [
        make_event(
            CaseReported(
                case_id=case_id,
                channel="hotline",
                reported_at=start,
                triage=TriageFacts(
                    violence_types=[ViolenceType.SEXUAL, ViolenceType.PHYSICAL],
                    age_group=AgeGroup.CHILD,
                    sex=Sex.FEMALE,
                    immediate_danger=True,
                    hours_since_sexual_assault=5.5,
                    district_code="35.14",
                    kecamatan="Bangil",
                ),
            ),
            source="/rujuk/intake",
            time=start + timedelta(seconds=2),
        ),
        make_event(
            CaseRouted(
                case_id=case_id,
                sop_id="sop-3514",
                sop_version=4,
                rules_fired=["child-sexual-72h"],
                referrals=[
                    ReferralSummary(
                        referral_id=referral_id,
                        service="health",
                        agency_id="rsud-bangil",
                        priority="emergency",
                    )
                ],
            ),
            source="/rujuk/routing",
            time=start + timedelta(seconds=3),
        ),
        make_event(
            ReferralRequested(
                case_id=case_id,
                referral_id=referral_id,
                agency_id="rsud-bangil",
                service="health",
                priority="emergency",
                acknowledgement_deadline=start + timedelta(hours=1, minutes=12),
                escalation_chain=["pkm-bangil", "dp3ap2kb-pasuruan"],
                sop_id="sop-3514",
                sop_version=4,
                rule_ids=["child-sexual-72h"],
            ),
            source="/rujuk/routing",
            time=start + timedelta(seconds=3),
        ),
        make_event(
            ReferralDelivered(
                case_id=case_id,
                referral_id=referral_id,
                agency_id="rsud-bangil",
                channels=["nats", "webhook"],
                attempts=1,
            ),
            source="/rujuk/notify",
            time=start + timedelta(seconds=4),
        ),
        make_event(
            ReferralAcknowledged(case_id=case_id, referral_id=referral_id, agency_id="rsud-bangil"),
            source="/rujuk/partner/rsud-bangil",
            time=start + timedelta(minutes=4, seconds=12),
        ),
    ]


def chained(events: list[CloudEvent], head: Head = GENESIS) -> list[Entry]:
    entries = []
    for number, event in enumerate(events):
        entry = chain.next_entry(head, event, REPORTED_AT + timedelta(minutes=10, seconds=number))
        entries.append(entry)
        head = Head(entry.seq, entry.hash)
    return entries


def test_the_first_entry_links_to_32_zero_bytes_and_hashes_its_rfc8785_form() -> None:
    event = case_story()[0]
    recorded_at = datetime(2026, 3, 2, 1, 10, 0, 5, tzinfo=UTC)

    entry = chain.next_entry(GENESIS, event, recorded_at)

    body = rfc8785.dumps(
        {
            "seq": 1,
            "event_id": event.id,
            "case_id": CASE_ID,
            "event_type": "id.rujuk.case.reported.v1",
            "actor": "/rujuk/intake",
            "event_time": "2026-03-02T01:00:02.000000Z",
            "recorded_at": "2026-03-02T01:10:00.000005Z",
            "event": event.model_dump(mode="json", exclude_none=True),
        }
    )
    assert entry.seq == 1
    assert entry.prev_hash == GENESIS_HASH == bytes(32)
    assert entry.hash == hashlib.sha256(bytes(32) + body).digest()
    assert json.loads(entry.event) == json.loads(event.to_bytes())


def test_each_entry_links_to_the_hash_of_the_one_before() -> None:
    entries = chained(case_story())

    assert [entry.seq for entry in entries] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash


@pytest.mark.parametrize(
    "actor",
    ["/rujuk/intake", 'quote " back\\slash', "tab\tnew\nline\x01\x1f\x7f", "Kraksaan é ü 日本 😀"],
)
def test_the_fast_canonical_body_is_exactly_rfc8785(actor: str) -> None:
    event = case_story()[1].model_copy(update={"source": actor})
    entry = chain.next_entry(Head(41, bytes(range(32))), event, REPORTED_AT)

    reference = rfc8785.dumps(
        {
            "seq": 42,
            "event_id": entry.event_id,
            "case_id": entry.case_id,
            "event_type": entry.event_type,
            "actor": actor,
            "event_time": chain.timestamp(entry.event_time),
            "recorded_at": chain.timestamp(entry.recorded_at),
            "event": json.loads(entry.event),
        }
    )
    assert chain.body_of(entry) == reference
    assert entry.event == rfc8785.dumps(json.loads(entry.event)).decode()


def test_the_entry_fields_are_defined_once_in_entry_order() -> None:
    """The ledger's columns and the hashed body follow Entry's field order (chain.ENTRY_FIELDS):
    canonical_body takes the body fields in that order, so body_of can pass them positionally."""
    assert tuple(field.name for field in dataclasses.fields(Entry)) == chain.ENTRY_FIELDS
    assert (*chain.BODY_FIELDS, "prev_hash", "hash") == chain.ENTRY_FIELDS
    assert tuple(inspect.signature(chain.canonical_body).parameters) == chain.BODY_FIELDS


def test_a_time_in_another_offset_hashes_like_the_same_instant_in_utc() -> None:
    event = case_story()[0]
    in_bangil = event.time.astimezone(timezone(timedelta(hours=7)))
    utc_entry = chain.next_entry(GENESIS, event, REPORTED_AT)
    wib_entry = dataclasses.replace(utc_entry, event_time=in_bangil)

    assert chain.recompute_hash(wib_entry) == utc_entry.hash


def test_an_event_without_a_canonical_form_is_refused_with_the_reason() -> None:
    event = CloudEvent.model_validate(
        {**case_story()[0].model_dump(mode="json"), "sequencenumber": 2**60}
    )

    with pytest.raises(chain.UnrepresentableEvent, match="no RFC 8785 canonical form"):
        chain.next_entry(GENESIS, event, REPORTED_AT)


def test_an_untouched_chain_verifies() -> None:
    entries = chained(case_story())

    result = chain.verify(entries)

    assert result.ok
    assert result.entries == 5
    assert (result.head_seq, result.head_hash) == (5, entries[-1].hash)


def test_an_empty_ledger_verifies_with_the_genesis_head() -> None:
    result = chain.verify([])

    assert result.ok
    assert (result.entries, result.head_seq, result.head_hash) == (0, 0, GENESIS_HASH)


@pytest.mark.parametrize(
    "tamper",
    [
        {"actor": "/rujuk/someone-else"},
        {"event_type": "id.rujuk.referral.declined.v1"},
        {"case_id": "3514-ZZZZZZZZZZ"},
        {"event_time": REPORTED_AT + timedelta(days=1)},
        {"recorded_at": REPORTED_AT - timedelta(days=1)},
    ],
)
def test_altering_a_field_names_that_entry(tamper: dict[str, object]) -> None:
    entries = chained(case_story())
    entries[2] = dataclasses.replace(entries[2], **tamper)  # type: ignore[arg-type]

    result = chain.verify(entries)

    assert not result.ok
    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (3, FailureKind.HASH_MISMATCH)
    assert "altered" in result.failure.detail
    assert (result.entries, result.head_seq) == (2, 2)


def test_altering_the_stored_event_names_that_entry() -> None:
    entries = chained(case_story())
    entries[3] = dataclasses.replace(entries[3], event=entries[3].event.replace("webhook", "email"))

    result = chain.verify(entries)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (4, FailureKind.HASH_MISMATCH)


def test_removing_an_entry_names_the_gap() -> None:
    entries = chained(case_story())
    del entries[2]

    result = chain.verify(entries)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (3, FailureKind.GAP)
    assert result.failure.detail == "entry 3 is missing: the next is 4"


def test_removing_the_first_entry_names_seq_1() -> None:
    result = chain.verify(chained(case_story())[1:])

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (1, FailureKind.GAP)


def test_rewriting_an_entry_and_its_hash_breaks_the_next_link() -> None:
    entries = chained(case_story())
    forged = dataclasses.replace(entries[1], actor="/rujuk/forger")
    entries[1] = dataclasses.replace(forged, hash=chain.recompute_hash(forged))

    result = chain.verify(entries)

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (3, FailureKind.BROKEN_LINK)


def test_a_repeated_seq_is_out_of_order() -> None:
    entries = chained(case_story())

    result = chain.verify([*entries[:3], entries[2]])

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (3, FailureKind.OUT_OF_ORDER)


def test_verifying_in_chunks_equals_verifying_at_once() -> None:
    entries = chained(case_story() + case_story("3513-0123456789"))
    verifier = chain.ChainVerifier()

    for start in range(0, len(entries), 3):
        assert verifier.feed(entries[start : start + 3])

    assert verifier.result() == chain.verify(entries)


def test_an_anchor_recorded_earlier_catches_removal_of_the_newest_entries() -> None:
    entries = chained(case_story())
    anchors = {5: entries[4].hash}

    assert chain.verify(entries, anchors).ok
    truncated = chain.verify(entries[:3], anchors)

    assert truncated.failure is not None
    assert (truncated.failure.seq, truncated.failure.kind) == (4, FailureKind.TRUNCATED)


def test_an_anchor_that_differs_names_the_entry() -> None:
    entries = chained(case_story())

    result = chain.verify(entries, {2: bytes(32)})

    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (2, FailureKind.ANCHOR_MISMATCH)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"zkey": 'tab\tnew\nline\x01\x1f\x7f quote " back\\slash </script>'},
        {"ünïcode": "é 日本 😀", "\ue000key": 1, "a": [True, None, -(2**53) + 1, {"b": []}]},
        {"score": 5.5, "big": 1e21, "small": 5e-07, "whole": 5.0},  # the reference path
        {"😀": "astral key", "\uffff": "sorted by UTF-16, not code point"},
    ],
)
def test_the_fast_event_form_is_exactly_rfc8785(extra: dict[str, object]) -> None:
    for event in case_story():
        document = event.model_dump(mode="json", exclude_none=True) | extra
        extended = CloudEvent.model_validate(document)

        assert chain.canonical_event(extended) == rfc8785.dumps(document).decode()


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2**53},
        {"n": -(2**53)},
        {"a": [2**60]},
    ],
)
def test_an_event_with_no_rfc8785_form_is_refused(extra: dict[str, object]) -> None:
    event = case_story()[0]
    document = event.model_dump(mode="json", exclude_none=True) | extra
    with pytest.raises(chain.UnrepresentableEvent):
        chain.canonical_event(CloudEvent.model_validate(document))


def test_the_number_precheck_flags_every_number_the_full_check_refuses() -> None:
    numbers: list[object] = [0, 7, -7, 10**15 - 1, 10**15, 2**53 - 1, 2**53, -(2**53), 10**30]
    numbers += [0.5, -0.5, 5.0, 1e21, 5e-07, 1e300, float("nan"), float("inf"), -float("inf")]
    for number in numbers:
        for value in ({"k": number}, [number], [1, number], {"k": [{"j": number}]}):
            text = chain._SORTED_COMPACT.encode(value)
            try:
                chain._PLAIN_NUMBERS.decode(text)
                refused = False
            except chain._NotPlain:
                refused = True
            if refused:
                assert chain._MAYBE_NOT_PLAIN.search(text), text
    assert not chain._MAYBE_NOT_PLAIN.search('{"a":[1,-2,{"b":999999999999999}],"c":"x"}')


def test_times_in_any_zone_are_written_as_utc() -> None:
    from pydantic import TypeAdapter

    moment = datetime(2026, 3, 2, 8, 0, 2, 5, tzinfo=timezone(timedelta(hours=7)))
    parsed = TypeAdapter(datetime).validate_python("2026-03-02T01:00:02.000005Z")
    for value in (
        moment,
        moment.astimezone(UTC),
        parsed,
        moment.astimezone(UTC).replace(tzinfo=None),
    ):
        assert chain.timestamp(value) == "2026-03-02T01:00:02.000005Z"
    assert chain.timestamp(datetime(2026, 3, 2, 1, 0, 2, tzinfo=timezone(timedelta(0)))) == (
        "2026-03-02T01:00:02.000000Z"
    )
