"""Notify's checks of a partner's reply, as pure functions. (That the logic imports no I/O is
tests/unit/test_service_layout.py's, for every service.)"""

import json

import pytest

from notify.replies import (
    FREE_TEXT_REMOVED,
    ReplyRefused,
    accepted_reply,
    agency_and_reply_of,
    carries_free_text,
    original_id,
    read_reply,
    refused_reply,
    reply_event_id,
    without_free_text,
)
from rujuk.samples import INVENTED_NIK
from rujuk_contracts import make_event
from rujuk_contracts.events import (
    DeclineReason,
    ReferralAcknowledged,
    ReferralDeclined,
    ReferralReplyRefused,
    ReplyKind,
)

AGENCY = "rsud-bangil"
CASE = "3513-AB12CD34EF"
ACK = ReferralAcknowledged(case_id=CASE, referral_id="ref-1", agency_id=AGENCY)


def test_an_accepted_reply_becomes_an_internal_event_with_a_derived_id() -> None:
    event = accepted_reply(AGENCY, ACK, (CASE, AGENCY), "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert event.id == reply_event_id(AGENCY, "ref-1", ReplyKind.ACKNOWLEDGE)
    assert event.source == f"/rujuk/partners/{AGENCY}"
    assert event.type == ACK.event_type()
    assert event.traceparent is not None


@pytest.mark.parametrize(
    "source",
    [
        f"/partners/{AGENCY}",  # what a partner guessed: refused, never rewritten
        f"urn:partner:{AGENCY}",
        "/rujuk/partners/polres-x",  # another agency's
        f"/rujuk/partners/{AGENCY}/",
    ],
)
def test_a_reply_over_nats_must_carry_the_one_documented_source(source: str) -> None:
    with pytest.raises(ReplyRefused, match="must be '/rujuk/partners/rsud-bangil'") as refused:
        accepted_reply(AGENCY, ACK, (CASE, AGENCY), None, source=source)
    assert refused.value.field == "source"
    assert source in refused.value.reason
    event = accepted_reply(AGENCY, ACK, (CASE, AGENCY), None, source=f"/rujuk/partners/{AGENCY}")
    assert event.source == f"/rujuk/partners/{AGENCY}"  # passed on as the partner sent it


@pytest.mark.parametrize(
    ("agency", "delivered", "status", "reason"),
    [
        ("polres-x", (CASE, "polres-x"), 403, "is not 'polres-x'"),
        (AGENCY, None, 404, "was not delivered to 'rsud-bangil'"),
        (AGENCY, (CASE, "polres-x"), 404, "was not delivered to 'rsud-bangil'"),
        (AGENCY, ("3513-ZZ98YY76XX", AGENCY), 422, "is not about case"),
    ],
)
def test_a_reply_is_refused_unless_it_matches_what_notify_delivered(
    agency: str, delivered: tuple[str, str] | None, status: int, reason: str
) -> None:
    with pytest.raises(ReplyRefused, match=reason) as refused:
        accepted_reply(agency, ACK, delivered, None)
    assert refused.value.status == status
    assert refused.value.reply is ACK


def test_the_refusal_names_the_reply_and_has_an_id_per_original() -> None:
    event = refused_reply(AGENCY, "x" * 400, ACK, "orig-1")
    assert event.data["reply"] == ReplyKind.ACKNOWLEDGE.value
    assert len(event.data["reason"]) == 300
    assert event.type == ReferralReplyRefused.event_type()
    assert refused_reply(AGENCY, "other", ACK, "orig-1").id == event.id
    assert refused_reply(AGENCY, "other", ACK, "orig-2").id != event.id


def test_subject_and_original_id() -> None:
    assert agency_and_reply_of("rujuk.partner.rsud-bangil.in.acknowledge") == (
        AGENCY,
        "acknowledge",
    )
    with pytest.raises(ValueError, match="not a partner reply subject"):
        agency_and_reply_of("rujuk.partner.rsud-bangil.out.acknowledge")
    assert original_id(b'{"id": "abc"}', 7) == "abc"
    assert original_id(b"not json", 7) == "seq-7"
    assert original_id(b"\xff", None) is None


# --- free text: refused in a reply, never kept (issue 18) ----------------------------------

TYPED = f"CONTOH Korban, NIK {INVENTED_NIK}, HP 0800-0000-0001"


def _decline(**fields: object) -> ReferralDeclined:
    return ReferralDeclined(
        case_id=CASE, referral_id="ref-1", agency_id=AGENCY, reason=DeclineReason.OTHER, **fields
    )


def test_a_decline_with_a_note_is_refused_naming_the_field_and_where_text_goes() -> None:
    with pytest.raises(ReplyRefused) as refused:
        accepted_reply(AGENCY, _decline(note=TYPED), (CASE, AGENCY), None)
    assert refused.value.field == "note"
    assert refused.value.status == 422
    assert "note_ref" in refused.value.reason
    assert "/v1/cases/{case_id}/notes" in refused.value.reason
    assert TYPED not in refused.value.reason
    assert len(refused.value.reason) <= 300  # it fits a reply.refused event whole


def test_a_decline_with_a_note_ref_and_no_text_is_accepted_carrying_the_ref_only() -> None:
    note_ref = "note-" + "c3" * 16
    event = accepted_reply(AGENCY, _decline(note_ref=note_ref, note=""), (CASE, AGENCY), None)
    assert event.data["note_ref"] == note_ref
    assert event.data.get("note") is None  # "" said nothing: not passed on


def test_read_reply_refuses_a_note_before_anything_is_looked_up() -> None:
    raw = make_event(_decline(note=TYPED), source="urn:partner:test").to_bytes()
    with pytest.raises(ReplyRefused, match="note_ref"):
        read_reply(raw)


def test_what_is_parked_of_a_reply_with_free_text_keeps_everything_but_the_text() -> None:
    raw = make_event(_decline(note=TYPED), source="urn:partner:test").to_bytes()
    assert carries_free_text(raw)
    parked = without_free_text(raw)
    assert TYPED.encode() not in parked
    kept, original = json.loads(parked), json.loads(raw)
    assert kept["data"]["note"] == FREE_TEXT_REMOVED
    assert {k: v for k, v in kept["data"].items() if k != "note"} == {
        k: v for k, v in original["data"].items() if k != "note"
    }
    assert kept["id"] == original["id"]


@pytest.mark.parametrize(
    "raw",
    [
        make_event(ACK, source="urn:partner:test").to_bytes(),
        b"not json",
        b'{"data": "a string"}',
        b'{"data": {"note": ""}}',
    ],
)
def test_messages_without_free_text_are_parked_as_they_came(raw: bytes) -> None:
    assert not carries_free_text(raw)


def test_a_note_too_long_to_parse_is_still_found_and_removed() -> None:
    """An invalid reply (a note past 280 characters) is parked too: without the text."""
    document = json.loads(make_event(_decline(), source="urn:partner:test").to_bytes())
    document["data"]["note"] = TYPED * 10
    raw = json.dumps(document).encode()
    with pytest.raises(ReplyRefused):
        read_reply(raw)
    assert carries_free_text(raw)
    assert TYPED.encode() not in without_free_text(raw)
