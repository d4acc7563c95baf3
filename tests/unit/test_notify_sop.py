"""Notify and SOP proposals, without I/O: what it checks of an agency's answer on NATS, the
ids it passes answers on and sends notices under, and the texts of its notices."""

import json
from datetime import UTC, datetime

import pytest

from audit.report import summarize
from notify.sop_answers import (
    SopAnswerNotValid,
    accepted_sop_answer,
    read_sop_answer,
    refused_sop_answer,
)
from notify.sop_notices import HowToAnswer, notice_event, notice_key, notice_text
from rujuk_contracts import make_event, subjects
from rujuk_contracts.events import (
    AskedAgency,
    DutyChange,
    ObjectionReason,
    OverrideReason,
    SopAnswerGiven,
    SopAnswerRefusal,
    SopDecision,
    SopProposalWithdrawn,
    SopProposed,
    SopPublished,
)

PROPOSAL = "prop-" + "0" * 32
AGENCY = "uptppa-probolinggo"
HOW = HowToAnswer(console_url="https://console.example", routing_url="https://routing.example/")


def given(agency_id: str = AGENCY, **changes: object) -> SopAnswerGiven:
    fields: dict[str, object] = {
        "proposal_id": PROPOSAL,
        "sop_id": "sop-3513",
        "district_code": "3513",
        "sop_version": 2,
        "agency_id": agency_id,
        "decision": SopDecision.AGREE,
    }
    return SopAnswerGiven.model_validate({**fields, **changes})


def sent(answer: SopAnswerGiven, source: str | None = None, event_id: str = "a-1") -> bytes:
    source = source or subjects.partner_source(answer.agency_id)
    return make_event(answer, source=source, event_id=event_id).to_bytes()


def test_an_objection_needs_a_reason_code_and_an_agreement_takes_none() -> None:
    with pytest.raises(ValueError, match="objection needs a reason"):
        given(decision=SopDecision.OBJECT)
    with pytest.raises(ValueError, match="objection needs a reason"):
        given(reason=ObjectionReason.OTHER)
    with pytest.raises(ValueError, match="note_ref goes with an objection"):
        given(note_ref="note-" + "a" * 32)
    objection = given(decision=SopDecision.OBJECT, reason=ObjectionReason.LEGAL_CONCERN)
    assert objection.reason is ObjectionReason.LEGAL_CONCERN


def test_only_a_well_formed_sop_answer_is_read() -> None:
    with pytest.raises(SopAnswerNotValid, match="not a valid SOP answer: body is not JSON"):
        read_sop_answer(b"agree")
    document = json.loads(sent(given()))
    document["data"]["note"] = "CONTOH teks bebas"  # free text: no such field
    with pytest.raises(SopAnswerNotValid, match="not a valid SOP answer") as refused:
        read_sop_answer(json.dumps(document).encode())
    assert refused.value.answer is None
    proposed = make_event(proposed_payload(), source="/rujuk/routing").to_bytes()
    with pytest.raises(SopAnswerNotValid, match="is not an SOP answer"):
        read_sop_answer(proposed)
    event, answer = read_sop_answer(sent(given()))
    assert (event.id, answer.agency_id) == ("a-1", AGENCY)


def test_an_answer_passes_on_only_from_its_own_agency_and_source_under_a_derived_id() -> None:
    event, answer = read_sop_answer(sent(given()))
    internal = accepted_sop_answer(AGENCY, event, answer)
    assert internal.source == "/rujuk/partners/uptppa-probolinggo"
    assert internal.id != event.id  # never the partner's own id: it could name another event
    again = accepted_sop_answer(AGENCY, *read_sop_answer(sent(given())))
    assert again.id == internal.id  # the partner's retry
    later = accepted_sop_answer(AGENCY, *read_sop_answer(sent(given(), event_id="a-2")))
    assert later.id != internal.id  # a new answer
    with pytest.raises(SopAnswerNotValid, match="is not 'lbh-probolinggo'") as other:
        accepted_sop_answer("lbh-probolinggo", event, answer)
    assert other.value.answer == answer
    wrong = read_sop_answer(sent(given(), source="/partners/uptppa-probolinggo"))
    with pytest.raises(SopAnswerNotValid, match="must be '/rujuk/partners/uptppa-probolinggo'"):
        accepted_sop_answer(AGENCY, *wrong)


def test_a_refusal_names_the_proposal_and_the_reason() -> None:
    refused = refused_sop_answer(AGENCY, "source harus / must be …", given(), "a-1")
    payload = refused.payload()
    assert payload.model_dump()["refusal"] == SopAnswerRefusal.NOT_VALID
    assert payload.model_dump()["proposal_id"] == PROPOSAL
    assert refused.id == refused_sop_answer(AGENCY, "other words", given(), "a-1").id


def proposed_payload() -> SopProposed:
    return SopProposed(
        proposal_id=PROPOSAL,
        sop_id="sop-3513",
        district_code="3513",
        sop_version=2,
        sha256="0" * 64,
        base_version=1,
        proposed_by="coordinator:tok-000001",
        asked=[AskedAgency(agency_id=AGENCY, duty_changes=[DutyChange.SHORTER_DEADLINE])],
    )


def test_each_agency_gets_a_notice_of_its_own_and_a_redelivery_the_same() -> None:
    event = make_event(proposed_payload(), source="/rujuk/routing")
    to_upt, to_lbh = notice_event(event, AGENCY), notice_event(event, "lbh-probolinggo")
    assert len({event.id, to_upt.id, to_lbh.id}) == 3
    assert notice_event(event, AGENCY) == to_upt
    assert (to_upt.type, to_upt.data, to_upt.source) == (event.type, event.data, event.source)
    assert notice_key(PROPOSAL, event, AGENCY) == f"{PROPOSAL}:proposed:{AGENCY}"


def test_a_notice_says_what_is_asked_and_how_to_answer_in_both_languages() -> None:
    at = datetime(2026, 5, 4, 1, 30, tzinfo=UTC)
    text = notice_text(proposed_payload(), AGENCY, HOW, at=at)
    assert text.sms.startswith("rujuk: SOP 3513 v2 diusulkan; mohon persetujuan Anda")
    assert "/ SOP 3513 v2 proposed; your sign-off is asked" in text.sms
    assert len(text.sms) < 250
    assert f"POST https://routing.example/v1/sop-proposals/{PROPOSAL}/answers" in text.body
    assert "rujuk.partner.uptppa-probolinggo.in.sop_answer" in text.body
    assert "https://console.example" in text.body

    withdrawn = SopProposalWithdrawn(
        proposal_id=PROPOSAL, sop_id="sop-3513", district_code="3513", sop_version=2,
        withdrawn_by="coordinator:tok-000001",
    )  # fmt: skip
    assert "ditarik; tidak perlu dijawab lagi. / " in notice_text(withdrawn, AGENCY, HOW, at=at).sms

    published = SopPublished(
        sop_id="sop-3513", district_code="3513", sop_version=2, sha256="0" * 64,
        published_by="coordinator:tok-000001", proposal_id=PROPOSAL,
        override_reason=OverrideReason.RAKOR_DECISION, agencies_not_agreed=["lbh-probolinggo"],
    )  # fmt: skip
    to_upt = notice_text(published, AGENCY, HOW, at=at).sms
    assert "berlaku mulai 04-05-2026 08:30 WIB. / SOP 3513 v2 published, in force from" in to_upt
    assert "override" not in to_upt  # it agreed
    assert "override (rakor_decision)" in notice_text(published, "lbh-probolinggo", HOW, at=at).sms


def test_the_audit_report_tells_an_answer_on_nats_and_its_refusal() -> None:
    objection = given(decision=SopDecision.OBJECT, reason=ObjectionReason.LEGAL_CONCERN)
    assert summarize(objection) == (
        "SOP sop-3513 v2: answer on NATS from uptppa-probolinggo, objected: legal concern"
    )
    refused = refused_sop_answer(AGENCY, "…", given(), "a-1").payload()
    assert summarize(refused) == (
        "SOP sop-3513: answer of uptppa-probolinggo not recorded (not valid)"
    )
