"""Notify's checks of a partner's reply, as pure functions. (That the logic imports no I/O is
tests/unit/test_service_layout.py's, for every service.)"""

import pytest

from notify.replies import (
    ReplyRefused,
    accepted_reply,
    agency_and_reply_of,
    original_id,
    refused_reply,
    reply_event_id,
)
from rujuk_contracts.events import ReferralAcknowledged, ReferralReplyRefused, ReplyKind

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
