"""Properties of routing decisions over random triage facts, for both shipped SOPs."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.decide import decide
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop
from rujuk_contracts.events import Service
from rujuk_contracts.triage import AgeGroup, Consent, ConsentGiver, Sex, TriageFacts, ViolenceType

SOPS = {district: load_sop(SHIPPED_SOPS / f"{district}.yaml") for district in ("3514", "3513")}
NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
EXAMPLES = 100  # per property: the whole suite shares two cores
UPT_PPA = {"3514": "uptppa-pasuruan", "3513": "uptppa-probolinggo"}


@st.composite
def triage_facts(draw: st.DrawFn, age_group: AgeGroup | None = None) -> TriageFacts:
    district = draw(st.sampled_from(sorted(SOPS)))
    kecamatan = draw(
        st.one_of(
            st.none(),
            st.sampled_from(SOPS[district].kecamatan),
            st.text(min_size=1, max_size=20),
        )
    )
    return TriageFacts(
        violence_types=draw(st.lists(st.sampled_from(ViolenceType), min_size=1, unique=True)),
        age_group=age_group or draw(st.sampled_from(AgeGroup)),
        sex=draw(st.sampled_from(Sex)),
        disability=draw(st.booleans()),
        immediate_danger=draw(st.booleans()),
        injury=draw(st.booleans()),
        hours_since_sexual_assault=draw(
            st.one_of(st.none(), st.floats(min_value=0, max_value=2000, allow_nan=False))
        ),
        perpetrator_has_access=draw(st.booleans()),
        suicidal_thoughts=draw(st.booleans()),
        consent=Consent(
            share_with_health=draw(st.booleans()),
            share_with_police=draw(st.booleans()),
            share_with_shelter=draw(st.booleans()),
            given_by=draw(st.sampled_from(ConsentGiver)),
        ),
        district_code=draw(st.sampled_from([district, f"{district[:2]}.{district[2:]}"])),
        kecamatan=kecamatan,
    )


def route(facts: TriageFacts):  # type: ignore[no-untyped-def]
    return decide(SOPS[facts.district], f"{facts.district}-AB12CD34EF", facts, NOW)


@settings(max_examples=EXAMPLES, deadline=None)
@given(triage_facts())
def test_every_case_gets_a_case_manager(facts: TriageFacts) -> None:
    managers = [r for r in route(facts).referrals if r.service == Service.CASE_MANAGEMENT]
    assert [r.agency_id for r in managers] == [UPT_PPA[facts.district]]


@settings(max_examples=EXAMPLES, deadline=None)
@given(triage_facts(age_group=AgeGroup.ADULT))
def test_an_adults_case_never_reaches_police_without_consent(facts: TriageFacts) -> None:
    referrals = route(facts).referrals
    police = [r for r in referrals if r.service == Service.POLICE]
    if not facts.consent.share_with_police:
        assert police == []
    assert all(r.consent_override is None for r in referrals)


@settings(max_examples=EXAMPLES, deadline=None)
@given(triage_facts(age_group=AgeGroup.CHILD))
def test_a_childs_case_always_reaches_upt_ppa_and_the_police(facts: TriageFacts) -> None:
    referrals = route(facts).referrals
    assert any(r.agency_id == UPT_PPA[facts.district] for r in referrals)
    police = [r for r in referrals if r.service == Service.POLICE]
    assert police
    if not facts.consent.share_with_police:
        assert all(r.consent_override for r in police)  # mandatory reporting, with its basis


@settings(max_examples=EXAMPLES, deadline=None)
@given(triage_facts())
def test_every_referral_has_a_deadline_and_a_chain_ending_at_the_coordinator(
    facts: TriageFacts,
) -> None:
    sop = SOPS[facts.district]
    decision = route(facts)
    assert decision.referrals
    for referral in decision.referrals:
        assert referral.acknowledgement_deadline > NOW
        assert referral.escalation_chain
        assert referral.escalation_chain[-1] == sop.coordinator
        assert referral.agency_id not in referral.escalation_chain
        assert referral.rule_ids


@settings(max_examples=EXAMPLES, deadline=None)
@given(triage_facts())
def test_the_same_report_always_gets_the_same_decision(facts: TriageFacts) -> None:
    again = TriageFacts.model_validate_json(facts.model_dump_json())
    assert route(facts) == route(again)
