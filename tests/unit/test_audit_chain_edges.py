"""The hash chain at its edges: time zones, what verification returns after a failure, the
failure texts an auditor reads, and which events take the fast canonical path (issue 26: each
test here kills mutants of audit/chain.py that survived)."""

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785

from audit import chain
from audit.chain import GENESIS, FailureKind, Head
from rujuk_contracts import CloudEvent
from tests.unit.test_audit_chain import REPORTED_AT, case_story, chained

WIB = timezone(timedelta(hours=7))


def event_with(**changes: Any) -> CloudEvent:
    return case_story()[0].model_copy(update=changes)


def extended(extra: dict[str, Any]) -> CloudEvent:
    document = case_story()[1].model_dump(mode="json", exclude_none=True) | extra
    return CloudEvent.model_validate(document)


# --- time zones ------------------------------------------------------------------------------


def test_a_recorded_time_in_wib_seals_the_same_hash_as_that_instant_in_utc() -> None:
    event = case_story()[0]
    in_utc = chain.next_entry(GENESIS, event, REPORTED_AT)
    in_wib = chain.next_entry(GENESIS, event, REPORTED_AT.astimezone(WIB))
    assert in_wib.hash == in_utc.hash
    assert in_wib.recorded_at == REPORTED_AT


def test_a_naive_recorded_time_is_taken_as_utc() -> None:
    event = case_story()[0]
    naive = chain.next_entry(GENESIS, event, REPORTED_AT.replace(tzinfo=None))
    assert naive.recorded_at.tzinfo is UTC
    assert naive.hash == chain.next_entry(GENESIS, event, REPORTED_AT).hash


def test_an_event_time_in_wib_is_kept_as_that_instant() -> None:
    event = case_story()[0]
    in_wib = event_with(time=event.time.astimezone(WIB))
    entry = chain.next_entry(GENESIS, in_wib, REPORTED_AT)
    assert entry.event_time == event.time
    assert chain.timestamp(entry.event_time) == chain.timestamp(event.time)


def test_a_naive_event_time_is_taken_as_utc() -> None:
    event = case_story()[0]
    naive = event_with(time=event.time.replace(tzinfo=None))
    entry = chain.next_entry(GENESIS, naive, REPORTED_AT)
    assert entry.event_time.tzinfo is UTC
    assert entry.event_time == event.time


@pytest.fixture
def machine_in_jakarta(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Jakarta")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("machine_in_jakarta")
def test_times_are_written_as_utc_whatever_the_machines_zone() -> None:
    moment = datetime(2026, 3, 2, 8, 0, 2, 5, tzinfo=WIB)
    assert chain.timestamp(moment) == "2026-03-02T01:00:02.000005Z"
    assert chain.timestamp(moment.replace(tzinfo=None)) == "2026-03-02T08:00:02.000005Z"


# --- what verification returns and says --------------------------------------------------------


def test_feed_returns_false_at_a_gap_and_ignores_everything_after() -> None:
    entries = chained(case_story())
    verifier = chain.ChainVerifier()
    assert verifier.feed(entries[:2])
    assert verifier.feed([entries[3]]) is False
    assert verifier.failed
    assert verifier.feed([entries[2], entries[3]]) is False  # the missing one, too late
    result = verifier.result()
    assert result.failure is not None
    assert (result.failure.seq, result.failure.kind) == (3, FailureKind.GAP)
    assert (result.entries, result.head_seq, result.head_hash) == (2, 2, entries[1].hash)


def test_feed_returns_false_at_a_broken_link_and_names_both_hashes() -> None:
    entries = chained(case_story())
    forged = dataclasses.replace(entries[1], actor="/rujuk/forger")
    entries[1] = dataclasses.replace(forged, hash=chain.recompute_hash(forged))
    verifier = chain.ChainVerifier()
    assert verifier.feed(entries) is False
    failure = verifier.result().failure
    assert failure is not None
    assert failure.detail == (
        f"prev_hash {chain.short_hash(entries[2].prev_hash)} is not the hash of entry 2 "
        f"({chain.short_hash(entries[1].hash)}): an earlier entry was rewritten"
    )


def test_feed_returns_false_at_an_altered_entry() -> None:
    entries = chained(case_story())
    entries[1] = dataclasses.replace(entries[1], actor="/rujuk/someone-else")
    verifier = chain.ChainVerifier()
    assert verifier.feed(entries) is False
    assert verifier.feed(entries[2:]) is False


def test_feed_returns_false_at_an_anchor_mismatch_and_names_the_anchor() -> None:
    entries = chained(case_story())
    verifier = chain.ChainVerifier({2: bytes(32)}, labels={2: "checkpoint 2 (CONTOH)"})
    assert verifier.feed(entries) is False
    assert verifier.feed(entries) is False
    result = verifier.result()
    assert result.failure is not None
    assert result.failure.detail == (
        f"hash {chain.short_hash(entries[1].hash)} differs from checkpoint 2 (CONTOH) "
        f"({chain.short_hash(bytes(32))}) recorded earlier: the chain was rewritten from "
        "here or before"
    )
    assert (result.entries, result.head_seq) == (1, 1)


def test_an_anchor_without_a_label_is_called_the_anchor() -> None:
    entries = chained(case_story())
    failure = chain.verify(entries, {3: bytes(32)}).failure
    assert failure is not None
    assert "differs from the anchor (" in failure.detail


def test_a_truncated_ledger_names_the_newest_anchor_it_lost() -> None:
    entries = chained(case_story())
    anchors = {4: entries[3].hash, 5: entries[4].hash}
    verifier = chain.ChainVerifier(anchors, labels={5: "the head written down (CONTOH)"})
    assert verifier.feed(entries[:3])
    failure = verifier.result().failure
    assert failure is not None
    assert failure.detail == (
        "the ledger ends at entry 3 but entry 5 is covered by the head written down (CONTOH) "
        "recorded earlier: the newest entries were removed"
    )
    unlabelled = chain.verify(entries[:3], anchors).failure
    assert unlabelled is not None
    assert "entry 5 is covered by an anchor recorded earlier" in unlabelled.detail


def test_several_missing_entries_are_named_as_a_range() -> None:
    entries = chained(case_story())
    failure = chain.verify([entries[0], entries[4]]).failure
    assert failure is not None
    assert (failure.seq, failure.kind) == (2, FailureKind.GAP)
    assert failure.detail == "entries 2-4 are missing: the next is 5"


def test_a_seq_going_back_says_which_came_after_which() -> None:
    entries = chained(case_story())
    failure = chain.verify([*entries[:3], entries[1]]).failure
    assert failure is not None
    assert (failure.seq, failure.kind) == (2, FailureKind.OUT_OF_ORDER)
    assert failure.detail == "entry 2 comes after entry 3"


def test_a_segment_verifies_from_the_head_it_attaches_to() -> None:
    entries = chained(case_story())
    start = Head(entries[1].seq, entries[1].hash)
    result = chain.verify(entries[2:], start=start)
    assert result.ok
    assert (result.entries, result.head_seq) == (3, 5)
    assert not chain.verify(entries[2:]).ok


def test_a_short_hash_is_its_first_8_bytes_in_hex_and_an_ellipsis() -> None:
    assert chain.short_hash(bytes(range(32))) == "0001020304050607…"


def test_an_entry_gives_back_its_cloud_event() -> None:
    event = case_story()[2]
    entry = chain.next_entry(GENESIS, event, REPORTED_AT)
    assert entry.cloud_event() == event.model_dump(mode="json", exclude_none=True)


# --- canonical texts ----------------------------------------------------------------------------


def test_next_entry_uses_the_canonical_text_it_is_given() -> None:
    event = case_story()[0]
    text = chain.canonical_event(event)
    given = chain.next_entry(GENESIS, event, REPORTED_AT, text=text[:-1] + " }")
    assert given.event == text[:-1] + " }"


def test_canonical_texts_gives_each_events_text_or_its_refusal_in_order() -> None:
    events = case_story()[:2]
    unsafe = extended({"n": 2**53})
    texts = chain.canonical_texts([events[0], unsafe, events[1]])
    assert texts[0] == chain.canonical_event(events[0])
    assert isinstance(texts[1], chain.UnrepresentableEvent)
    assert "no RFC 8785 canonical form" in str(texts[1])
    assert texts[2] == chain.canonical_event(events[1])


def test_a_source_that_is_not_utf8_is_refused_with_the_reason() -> None:
    event = case_story()[0]
    text = chain.canonical_event(event)
    broken = event_with(source="/rujuk/\ud800")
    with pytest.raises(chain.UnrepresentableEvent, match="is not valid UTF-8: surrogates"):
        chain.next_entry(GENESIS, broken, REPORTED_AT, text=text)


@pytest.fixture
def reference_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the slow reference implementation is called at all."""

    def refuse(document: Any) -> bytes:
        raise AssertionError("took the reference path")

    monkeypatch.setattr(rfc8785, "dumps", refuse)


@pytest.mark.usefixtures("reference_refused")
@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2**53 - 1, "m": -(2**53) + 1, "nested": [{"k": 2**53 - 1}]},
        {"kecamatan": "Tosari é 日本"},
        {"ünïcode": {"é": ["日本", 1, None, True]}, "\ud7ff": "last key below U+D800"},
    ],
)
def test_events_with_safe_integers_or_text_beyond_ascii_take_the_fast_path(
    extra: dict[str, Any],
) -> None:
    event = extended(extra)
    assert chain.canonical_event(event).startswith('{"')


@pytest.mark.parametrize(
    "extra",
    [
        {"outer": {"😀": "astral key", "\uffff": "sorted by UTF-16"}},
        {"outer": [{"x": {"😀": 1, "\uffff": 2}}]},
    ],
)
def test_nested_keys_beyond_the_bmp_are_sorted_by_utf16(extra: dict[str, Any]) -> None:
    event = extended(extra)
    document = event.model_dump(mode="json", exclude_none=True)
    assert chain.canonical_event(event) == rfc8785.dumps(document).decode()


def test_only_keys_below_u_d800_are_plain() -> None:
    assert chain._keys_plain({"a": [{"\ud7ff": 1}], "é": "x"})
    assert not chain._keys_plain({"\ud800": 1})
    assert not chain._keys_plain([{"a": {"😀": 1}}])
