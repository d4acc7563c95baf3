"""The public contracts: envelope round trip, validation, and checked-in schemas in sync."""

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import jsonschema_rs
import pytest

from rujuk_contracts import EVENT_MODELS, EventError, EventPayload, make_event, parse_event
from rujuk_contracts.events import (
    CaseClosed,
    CaseDetailsDisclosed,
    CaseErased,
    CaseNoteRead,
    CaseReported,
    CloseReason,
    DisclosurePurpose,
    EraseReason,
    NoteKind,
    PickedBy,
    Priority,
    ReferralDeclined,
    ReferralRequested,
    Role,
    Service,
    SopPublished,
    TokenIssued,
)
from rujuk_contracts.generate import render_all
from rujuk_contracts.subjects import partner_outbound
from rujuk_contracts.triage import AgeGroup, Sex, TriageFacts, ViolenceType

SCHEMAS = Path(__file__).parents[2] / "contracts" / "schemas"
RELEASED_V1 = Path(__file__).parents[2] / "contracts" / "released" / "v1"
CASE_ID = "3514-AB12CD34EF"


def _reported() -> CaseReported:
    return CaseReported(
        case_id=CASE_ID,
        channel="hotline",
        reported_at=datetime(2026, 11, 1, 8, 30, tzinfo=UTC),
        triage=TriageFacts(
            violence_types=[ViolenceType.SEXUAL],
            age_group=AgeGroup.CHILD,
            sex=Sex.FEMALE,
            district_code="3514",
        ),
    )


def test_event_round_trips_through_the_json_event_format() -> None:
    event = make_event(_reported(), source="/rujuk/intake")
    envelope, payload = parse_event(event.to_bytes())
    assert envelope.type == "id.rujuk.case.reported.v1"
    assert envelope.subject == CASE_ID
    assert envelope.dataschema == "urn:rujuk:schema:case.reported:v1"
    assert payload == _reported()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe garbage", "not JSON"),
        (b'{"specversion": "1.0"', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "1.0", "id": "x"}', "not a CloudEvent"),
        (b"x" * 70_000, "exceeds the limit"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventError, match=reason):
        parse_event(raw)


def test_unknown_schema_version_is_refused_by_name() -> None:
    event = make_event(_reported(), source="/rujuk/intake").model_copy(
        update={"type": "id.rujuk.case.reported.v9"}
    )
    with pytest.raises(EventError, match=r"unknown event type 'id.rujuk.case.reported.v9'"):
        parse_event(event.to_bytes())


def test_a_dataschema_of_another_version_is_refused() -> None:
    event = make_event(_reported(), source="/rujuk/intake").model_copy(
        update={"dataschema": "urn:rujuk:schema:case.reported:v2"}
    )
    with pytest.raises(EventError, match="unknown schema version: dataschema is not"):
        parse_event(event.to_bytes())


def test_subject_must_match_the_case_in_the_data() -> None:
    event = make_event(_reported(), source="/rujuk/intake").model_copy(
        update={"subject": "3514-ZZZZZZZZZZ"}
    )
    with pytest.raises(EventError, match="differs from what the data is about"):
        parse_event(event.to_bytes())


def test_every_event_type_names_its_version_and_has_its_own_subject() -> None:
    subjects = {model.subject() for model in EVENT_MODELS.values()}
    assert len(subjects) == len(EVENT_MODELS)
    for event_type, model in EVENT_MODELS.items():
        assert event_type.endswith(f".v{model.version}")
        assert model.subject().startswith("rujuk.evt.")
    assert ReferralRequested.subject() == "rujuk.evt.referral.requested"


def test_agency_ids_must_be_nats_token_safe() -> None:
    assert partner_outbound("pkm-bangil", "referral.requested") == (
        "rujuk.partner.pkm-bangil.out.referral.requested"
    )
    for bad in ("PKM", "a.b", "a*", "a>", "", "-x"):
        with pytest.raises(ValueError, match="agency id"):
            partner_outbound(bad, "referral.requested")


def test_checked_in_schemas_match_the_models() -> None:
    """Fails when a model changes without `make schemas`."""
    expected = render_all()
    on_disk = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}
    assert set(on_disk) == set(expected), "schema files added or missing: run `make schemas`"
    drifted = sorted(name for name in expected if on_disk[name] != expected[name])
    assert not drifted, f"schemas drifted from the models: {drifted}; run `make schemas`"


def test_an_sop_event_is_about_the_sop_not_a_case() -> None:
    published = SopPublished(
        sop_id="sop-3514",
        district_code="3514",
        sop_version=2,
        sha256="0" * 64,
        published_by="coordinator:tok-1",
    )
    envelope, payload = parse_event(make_event(published, source="/rujuk/routing").to_bytes())
    assert envelope.subject == "sop-3514"
    assert envelope.type == "id.rujuk.sop.published.v1"
    assert payload == published


def test_a_referral_sent_against_refused_consent_names_its_legal_basis() -> None:
    schema = ReferralRequested.model_json_schema()
    assert "consent_override" in schema["properties"]
    assert "consent_override" not in schema.get("required", [])


def _requested(**extra: object) -> ReferralRequested:
    return ReferralRequested.model_validate(
        {
            "case_id": CASE_ID,
            "referral_id": "ref-uji-1",
            "agency_id": "rumah-sae-uji",
            "service": Service.PSYCHOSOCIAL,
            "priority": Priority.URGENT,
            "acknowledgement_deadline": datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
            "escalation_chain": ["upt-ppa-uji"],
            "sop_id": "sop-3513",
            "sop_version": 1,
            "rule_ids": ["uji"],
            **extra,
        }
    )


@pytest.mark.parametrize("picked_by", [None, *PickedBy])
def test_a_referral_says_how_the_desa_picked_its_agency_and_old_ones_still_read(
    picked_by: PickedBy | None,
) -> None:
    requested = _requested(picked_by=picked_by)
    _, payload = parse_event(make_event(requested, source="/rujuk/routing").to_bytes())
    assert payload == requested
    assert isinstance(payload, ReferralRequested)
    assert payload.picked_by == picked_by
    # An event published before the field existed carries no picked_by at all.
    old = make_event(_requested(), source="/rujuk/routing")
    body = json.loads(old.to_bytes())
    body["data"].pop("picked_by", None)
    _, read = parse_event(json.dumps(body).encode())
    assert isinstance(read, ReferralRequested)
    assert read.picked_by is None
    with pytest.raises(ValueError, match="picked_by"):
        _requested(picked_by="chosen_by_hand")


def test_a_referral_no_desa_picked_is_as_valid_under_the_released_schema_as_before() -> None:
    """Partners validate each event against the schema file they hold (docs/partners.md,
    section 4), and v1's data refuses properties it does not name: a referral whose agency no
    desa picked carries no picked_by at all, and the copy a partner gets of one a desa picked
    (``released_data``) leaves it out, so both are valid under the released schema."""
    released = json.loads((RELEASED_V1 / "id.rujuk.referral.requested.v1.json").read_text())
    validator = jsonschema_rs.validator_for(released, validate_formats=True)
    plain = json.loads(make_event(_requested(), source="/rujuk/routing").to_bytes())
    assert "picked_by" not in plain["data"]
    assert [error.message for error in validator.iter_errors(plain)] == []
    picked_payload = _requested(picked_by=PickedBy.VILLAGE)
    picked = make_event(picked_payload, source="/rujuk/routing")
    assert json.loads(picked.to_bytes())["data"]["picked_by"] == "village"
    for_partner = json.loads(
        picked.model_copy(update={"data": picked_payload.released_data()}).to_bytes()
    )
    assert "picked_by" not in for_partner["data"]
    assert [error.message for error in validator.iter_errors(for_partner)] == []


def test_a_token_event_is_about_the_token_and_only_a_partners_names_an_agency() -> None:
    issued = TokenIssued(
        token_id="tok-0a1b2c3d4e5f",
        role=Role.PARTNER,
        agency_id="rsud-bangil",
        secret_sha256="ab" * 32,
    )
    event, payload = parse_event(make_event(issued, source="/rujuk/intake").to_bytes())
    assert (event.subject, event.type) == ("tok-0a1b2c3d4e5f", "id.rujuk.token.issued.v1")
    assert payload == issued
    assert "label" not in TokenIssued.model_fields
    for role, agency in ((Role.PARTNER, None), (Role.COORDINATOR, "rsud-bangil")):
        with pytest.raises(ValueError, match="partner token names its agency_id"):
            TokenIssued(
                token_id="tok-0a1b2c3d4e5f", role=role, agency_id=agency, secret_sha256="ab" * 32
            )


# --- what a person says of an action: codes, and a reference to text kept in the vault ------

NOTE_ID = "note-" + "5e" * 16


@pytest.mark.parametrize(
    ("model", "field", "codes"),
    [
        (CaseDetailsDisclosed, "purpose", DisclosurePurpose),
        (CaseClosed, "reason", CloseReason),
        (CaseErased, "reason", EraseReason),
    ],
)
def test_purposes_and_reasons_are_codes_in_the_schema_and_old_free_text_still_reads(
    model: type[EventPayload], field: str, codes: type[StrEnum]
) -> None:
    """A partner's client learns the codes from the schema; an event written before the
    codes (free text) still parses, so the ledger replays and verifies as it was."""
    schema = json.loads((SCHEMAS / f"{model.event_type()}.json").read_text())
    variants = schema["properties"]["data"]["properties"][field]["anyOf"]
    enum = schema["$defs"][variants[0]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert enum == [c.value for c in codes]
    old = {"case_id": CASE_ID, field: "alasan lama yang diketik", **_required_of(model)}
    assert getattr(model.model_validate(old), field) == "alasan lama yang diketik"
    new = model.model_validate({**old, field: enum[0]})
    assert getattr(new, field) is codes(enum[0])


def _required_of(model: type[EventPayload]) -> dict[str, object]:
    return {
        CaseDetailsDisclosed: {"agency_id": "rsud-bangil", "referral_id": "r", "fields": []},
        CaseClosed: {"closed_by": "coordinator:tok-0a1b2c"},
        CaseErased: {"erased_by": "coordinator:tok-0a1b2c"},
    }[model]


@pytest.mark.parametrize("model", [CaseDetailsDisclosed, CaseClosed, ReferralDeclined])
def test_a_note_ref_is_an_id_never_text(model: type[EventPayload]) -> None:
    fields = {
        CaseDetailsDisclosed: {"agency_id": "rsud-bangil", "referral_id": "r", "fields": [],
                               "purpose": "medical_care"},
        CaseClosed: {"closed_by": "coordinator:tok-0a1b2c", "reason": "transferred"},
        ReferralDeclined: {"agency_id": "rsud-bangil", "referral_id": "r", "reason": "other"},
    }[model]  # fmt: skip
    assert model.model_validate({"case_id": CASE_ID, **fields, "note_ref": NOTE_ID})
    with pytest.raises(ValueError, match="note_ref"):
        model.model_validate({"case_id": CASE_ID, **fields, "note_ref": "CONTOH Korban pindah"})


def test_a_note_read_names_the_note_and_who_read_it_and_carries_no_text() -> None:
    read = CaseNoteRead(
        case_id=CASE_ID,
        note_id=NOTE_ID,
        kind=NoteKind.DECLINE_NOTE,
        token_id="tok-0a1b2c",
        role=Role.COORDINATOR,
    )
    assert read.subject_id() == CASE_ID
    assert set(CaseNoteRead.model_fields) == {
        "case_id", "note_id", "kind", "token_id", "role", "agency_id"
    }  # fmt: skip
    assert read.event_type() in EVENT_MODELS
