"""Properties of SOP examples and the shipped rules: a no-op edit keeps an SOP's examples
passing, and no triage facts fall through a gap between two rules of 3513 or 3514."""

import random
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.decide import decide
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop, parse_sop
from routing.sop.examples import example_problems, run_examples
from rujuk_contracts.events import Priority, Service
from rujuk_contracts.triage import AgeGroup, Consent, ConsentGiver, Sex, TriageFacts, ViolenceType

TEXTS = {district: (SHIPPED_SOPS / f"{district}.yaml").read_text() for district in ("3514", "3513")}
SOPS = {district: load_sop(text) for district, text in TEXTS.items()}
NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
EDITS = 20  # each edit parses a whole SOP (a quarter of a second); the suite shares two cores
UPT_PPA = {"3514": "uptppa-pasuruan", "3513": "uptppa-probolinggo"}


# --- a no-op edit keeps the examples passing ----------------------------------------------


def shuffled(node: Any, rng: random.Random) -> Any:
    """The same document with every mapping's keys in another order (lists keep theirs)."""
    if isinstance(node, dict):
        keys = list(node)
        rng.shuffle(keys)
        return {key: shuffled(node[key], rng) for key in keys}
    if isinstance(node, list):
        return [shuffled(item, rng) for item in node]
    return node


def line_starts(text: str) -> list[int]:
    """Lines (0-based) that begin with a key or a list item: a comment or a blank line may go
    before them (not before the continuation of a long scalar, which would cut it)."""
    lines = text.splitlines()
    starts = set()
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.KeyToken | yaml.BlockEntryToken):
            mark = token.start_mark
            if not lines[mark.line][: mark.column].strip():
                starts.add(mark.line)
    return sorted(starts)


def with_comments(text: str, rng: random.Random, count: int) -> str:
    """Comments and blank lines before some keys or list items, indented as they are."""
    places = line_starts(text)
    lines = text.splitlines()
    for position in sorted(rng.sample(places, min(count, len(places))), reverse=True):
        indent = lines[position][: len(lines[position]) - len(lines[position].lstrip())]
        lines.insert(position, rng.choice(["", f"{indent}# catatan / note (contoh)", "   "]))
    return "\n".join(lines) + "\n"


@st.composite
def no_op_edits(draw: st.DrawFn) -> tuple[str, str]:
    """(district, the SOP text after an edit that changes nothing it means)."""
    district = draw(st.sampled_from(sorted(TEXTS)))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    text = TEXTS[district]
    if draw(st.booleans()):  # re-serialised, its keys reordered, in block or flow style
        text = yaml.safe_dump(
            shuffled(yaml.safe_load(text), rng),
            sort_keys=draw(st.booleans()),
            default_flow_style=draw(st.sampled_from([False, None])),
            allow_unicode=True,
            width=draw(st.sampled_from([80, 120, 4096])),
            indent=draw(st.sampled_from([2, 4])),
        )
    return district, with_comments(text, rng, draw(st.integers(min_value=0, max_value=30)))


@settings(max_examples=EDITS, deadline=None)
@given(no_op_edits())
def test_an_sop_whose_examples_pass_still_passes_after_a_no_op_edit(
    edit: tuple[str, str],
) -> None:
    district, text = edit
    sop = parse_sop(text, run_examples=example_problems)  # refused if one example fails
    assert sop == SOPS[district]
    assert all(result.passed for result in run_examples(sop))


# --- no triage facts fall through ---------------------------------------------------------


@st.composite
def triage_facts(draw: st.DrawFn) -> TriageFacts:
    district = draw(st.sampled_from(sorted(SOPS)))
    return TriageFacts(
        violence_types=draw(st.lists(st.sampled_from(ViolenceType), min_size=1, unique=True)),
        age_group=draw(st.sampled_from(AgeGroup)),
        sex=draw(st.sampled_from(Sex)),
        disability=draw(st.booleans()),
        immediate_danger=draw(st.booleans()),
        injury=draw(st.booleans()),
        # the edges of the 72-hour window are where two rules meet
        hours_since_sexual_assault=draw(
            st.one_of(
                st.none(),
                st.sampled_from([0.0, 71.99, 72.0, 72.01]),
                st.floats(min_value=0, max_value=2000, allow_nan=False),
            )
        ),
        perpetrator_has_access=draw(st.booleans()),
        suicidal_thoughts=draw(st.booleans()),
        consent=Consent(
            share_with_health=draw(st.booleans()),
            share_with_police=draw(st.booleans()),
            share_with_shelter=draw(st.booleans()),
            given_by=draw(st.sampled_from(ConsentGiver)),
        ),
        district_code=district,
        kecamatan=draw(st.one_of(st.none(), st.sampled_from(SOPS[district].kecamatan))),
    )


def within_72_hours(facts: TriageFacts) -> bool:
    hours = facts.hours_since_sexual_assault
    return ViolenceType.SEXUAL in facts.violence_types and (hours is None or hours <= 72)


@settings(max_examples=200, deadline=None)
@given(triage_facts())
def test_no_triage_facts_fall_through_a_gap_between_two_rules(facts: TriageFacts) -> None:
    sop = SOPS[facts.district]
    decision = decide(sop, f"{facts.district}-AB12CD34EF", facts, NOW)
    managers = [r for r in decision.referrals if r.service == Service.CASE_MANAGEMENT]
    assert [r.agency_id for r in managers] == [UPT_PPA[facts.district]]
    if not within_72_hours(facts):
        return
    health = [r for r in decision.referrals if r.service == Service.HEALTH]
    if facts.age_group == AgeGroup.CHILD or facts.consent.share_with_health:
        emergency = [r for r in health if r.priority == Priority.EMERGENCY]
        assert emergency, f"{facts} gets no emergency post-rape care"
        assert all(r.acknowledge_within.total_seconds() <= 30 * 60 for r in emergency)
    else:  # the survivor decides: withheld, and recorded as withheld
        assert health == []
        assert any(w.service == Service.HEALTH for w in decision.withheld)


@settings(max_examples=200, deadline=None)
@given(triage_facts())
def test_sexual_violence_gets_legal_aid_and_mediation_is_for_neglect_alone(
    facts: TriageFacts,
) -> None:
    decision = decide(SOPS[facts.district], f"{facts.district}-AB12CD34EF", facts, NOW)
    services = {r.service for r in decision.referrals}
    if ViolenceType.SEXUAL in facts.violence_types or ViolenceType.TRAFFICKING in (
        facts.violence_types
    ):
        assert Service.LEGAL in services  # UU TPKS, UU TPPO: with or without a police report
        assert Service.MEDIATION not in services  # UU TPKS Pasal 23
    violence = set(facts.violence_types) - {ViolenceType.NEGLECT, ViolenceType.OTHER}
    if violence or facts.immediate_danger or facts.suicidal_thoughts:
        assert Service.MEDIATION not in services  # neglect alone, never beside violence
    if facts.age_group == AgeGroup.CHILD:
        assert Service.MEDIATION not in services
