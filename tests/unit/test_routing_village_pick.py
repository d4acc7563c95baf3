"""The pick by village in the SOP (issue 25): desa-level agencies list ``villages``, a refer item
says ``pick: by_village``; the loader refuses what could not be answered, ``decide`` yields a
pending pick (the facts never hold the desa) and the SOP's examples can expect one."""

from datetime import UTC, datetime, timedelta

import pytest

from routing.decide import PendingPick, VillageCandidate, decide
from routing.events import village_agency_asked
from routing.simulate import Outcome
from routing.sop import SopError, load_sop
from routing.sop.duties import reachable_agencies
from routing.sop.examples import example_problems
from rujuk_contracts.events import Priority, Service
from rujuk_contracts.triage import TriageFacts
from tests.unit.test_routing_sop import line_of

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Invented: kecamatan Bangil and Pandaan of a test district; desa names visibly made up.
VILLAGE_SOP = """\
sop_id: sop-3514
version: 4
district_code: "3514"
name: Test SOP (invented)
sample_data: true
kecamatan: [Bangil, Pandaan, Beji]
coordinator: coord-test
on_call:
  contacts:
    - {id: oncall-test, role: Duty officer (invented), channels: [sms]}
  repeat: {rounds: 3, every_minutes: 10}
consent:
  requires_consent: {police: share_with_police, shelter: share_with_shelter}
directory:
  - id: coord-test
    name: Coordinator (invented)
    services: [case_management]
    kecamatan: all
    hours: "24/7"
    channels: [nats]
  - id: upt-test
    name: UPT PPA (invented)
    services: [case_management, psychosocial, shelter]
    kecamatan: all
    hours: "24/7"
    channels: [nats]
  - id: sae-desa-satu
    name: Rumah SAE desa (invented)
    services: [psychosocial, shelter]
    kecamatan: [Bangil]
    villages: ["Bangil/Desa Contoh Satu", "Bangil/Desa Contoh Dua"]
    hours: "24/7"
    channels: [nats]
  - id: sae-desa-tiga
    name: Rumah SAE desa (invented)
    services: [psychosocial]
    kecamatan: [Pandaan]
    villages: ["Pandaan/Desa Contoh Tiga"]
    hours: "24/7"
    channels: [nats]
  - id: sae-bangil
    name: Rumah SAE kecamatan (invented)
    services: [psychosocial]
    kecamatan: [Bangil]
    hours: "24/7"
    channels: [nats]
rules:
  - id: case-management
    description: Every case gets a case manager
    when: {}
    refer:
      - service: case_management
        agency: upt-test
        priority: urgent
        acknowledge_within_minutes: 120
  - id: village-accompaniment
    description: Accompaniment by the village Rumah SAE
    when: {immediate_danger: false}
    refer:
      - service: psychosocial
        pick: by_village
        fallback: upt-test
        priority: routine
        acknowledge_within_minutes: 1440
        escalate_to: [upt-test]
"""


def facts(**changes: object) -> TriageFacts:
    base: dict[str, object] = {
        "violence_types": ["psychological"],
        "age_group": "adult",
        "sex": "female",
        "district_code": "3514",
        "kecamatan": "Bangil",
    }
    return TriageFacts.model_validate({**base, **changes})


def errors_of(text: str) -> list[str]:
    with pytest.raises(SopError) as caught:
        load_sop(text)
    return str(caught.value).splitlines()


# --- the model and the loader ---------------------------------------------------------------


def test_a_village_is_written_kecamatan_slash_desa() -> None:
    text = VILLAGE_SOP.replace('"Pandaan/Desa Contoh Tiga"', '"Desa Contoh Tiga"')
    line = line_of(text, 'villages: ["Desa')
    assert errors_of(text) == [
        f"SOP 3514 v4, agency sae-desa-tiga (line {line}): "
        "villages[0]: a village is written 'Kecamatan/Desa', got 'Desa Contoh Tiga'"
    ]


def test_a_listed_desa_must_lie_in_a_kecamatan_the_agency_serves() -> None:
    text = VILLAGE_SOP.replace('"Pandaan/Desa Contoh Tiga"', '"Beji/Desa Contoh Tiga"')
    assert errors_of(text) == [
        f"SOP 3514 v4, agency sae-desa-tiga (line {line_of(text, 'Beji/Desa')}): desa "
        "'Desa Contoh Tiga' lies in kecamatan 'Beji', which agency 'sae-desa-tiga' does not "
        "serve (its kecamatan: Pandaan)"
    ]


def test_a_listed_desa_must_lie_in_one_of_the_districts_kecamatan() -> None:
    text = VILLAGE_SOP.replace('"Bangil/Desa Contoh Dua"', '"Nowhere/Desa Contoh Dua"')
    errors = errors_of(text)
    assert any("kecamatan 'Nowhere' is not one of the district's kecamatan" in e for e in errors)


def test_a_desa_listed_by_two_agencies_for_one_service_is_refused() -> None:
    text = VILLAGE_SOP.replace(
        'villages: ["Pandaan/Desa Contoh Tiga"]',
        'villages: ["Pandaan/Desa Contoh Tiga", "Bangil/desa  contoh SATU"]',
    ).replace("    kecamatan: [Pandaan]\n", "    kecamatan: [Pandaan, Bangil]\n")
    assert errors_of(text) == [
        f"SOP 3514 v4, agency sae-desa-tiga (line {line_of(text, 'contoh SATU')}): desa "
        "'Bangil/desa  contoh SATU' is listed by agencies 'sae-desa-satu' and 'sae-desa-tiga' "
        "for psychosocial: a desa has one agency per service"
    ]


def test_a_desa_listed_by_two_agencies_for_different_services_is_fine() -> None:
    text = VILLAGE_SOP.replace(
        "    services: [psychosocial]\n    kecamatan: [Pandaan]\n",
        "    services: [psychosocial]\n    kecamatan: [Pandaan]\n",
    ).replace("    services: [psychosocial, shelter]\n", "    services: [shelter]\n")
    text = text.replace(
        'villages: ["Pandaan/Desa Contoh Tiga"]',
        'villages: ["Pandaan/Desa Contoh Tiga", "Bangil/Desa Contoh Satu"]',
    ).replace("    kecamatan: [Pandaan]\n", "    kecamatan: [Pandaan, Bangil]\n")
    load_sop(text)  # sae-desa-satu: shelter only; sae-desa-tiga: psychosocial


def test_pick_by_village_needs_a_fallback() -> None:
    text = VILLAGE_SOP.replace("        fallback: upt-test\n", "")
    assert errors_of(text) == [
        f"SOP 3514 v4, rule village-accompaniment (line {line_of(text, 'service: psycho')}): "
        "refer[0]: 'pick: by_village' needs a 'fallback' agency"
    ]


def test_pick_by_village_for_a_service_no_desa_level_agency_offers_is_refused() -> None:
    text = VILLAGE_SOP.replace(
        "      - service: psychosocial\n        pick: by_village\n        fallback: upt-test\n",
        "      - service: case_management\n        pick: by_village\n        fallback: upt-test\n",
    )
    assert errors_of(text) == [
        f"SOP 3514 v4, rule village-accompaniment (line {line_of(text, 'pick: by_village')}): "
        "no agency lists villages for case_management: the pick by village would never find one"
    ]


def test_a_village_longer_than_the_question_carries_is_refused() -> None:
    """case.village_agency_asked carries each side of the '/' in 64 characters: an SOP the
    loader took with a longer name failed every case its pick fired for, after the decision."""
    desa = "Desa Contoh " + "Sangat Panjang " * 4  # 72 characters, invented
    text = VILLAGE_SOP.replace('"Pandaan/Desa Contoh Tiga"', f'"Pandaan/{desa}"')
    assert errors_of(text) == [
        f"SOP 3514 v4, agency sae-desa-tiga (line {line_of(text, 'Sangat Panjang')}): "
        "villages[0]: a village's kecamatan and desa are at most 64 characters each, got "
        f"'Pandaan/{desa}'"
    ]
    longest = "Desa Contoh " + "x" * 52  # 64 characters: taken, and the question carries it
    sop = load_sop(VILLAGE_SOP.replace('"Pandaan/Desa Contoh Tiga"', f'"Pandaan/{longest}"'))
    pick = decide(sop, "3514-AAAAAAAAAA", facts(), NOW).pending_picks[0]
    asked = village_agency_asked(
        "3514-AAAAAAAAAA", f"vq-{'0' * 32}", pick, NOW, None, answer_by=NOW
    )
    assert f"Pandaan/{longest}" in asked.to_bytes().decode()


def test_a_pick_by_village_whose_question_would_not_fit_in_an_event_is_refused() -> None:
    villages = ", ".join(f'"Pandaan/Desa Contoh {n:04d}"' for n in range(3000))
    text = VILLAGE_SOP.replace('villages: ["Pandaan/Desa Contoh Tiga"]', f"villages: [{villages}]")
    [error] = errors_of(text)
    assert error.startswith(
        f"SOP 3514 v4, rule village-accompaniment (line {line_of(text, 'pick: by_village')}): "
        "the villages listed for psychosocial make the question routing asks intake "
    )
    assert error.endswith(" bytes, over the limit of an event (65536): list fewer")


def test_a_pick_by_village_among_more_agencies_than_a_question_names_is_refused() -> None:
    desa_agencies = "".join(
        f"  - id: sae-desa-{n:03d}\n"
        "    name: Rumah SAE desa (invented)\n"
        "    services: [psychosocial]\n"
        "    kecamatan: [Beji]\n"
        f'    villages: ["Beji/Desa Contoh {n:03d}"]\n'
        '    hours: "24/7"\n'
        "    channels: [nats]\n"
        for n in range(501)
    )
    text = VILLAGE_SOP.replace("rules:\n", desa_agencies + "rules:\n")
    assert errors_of(text) == [
        f"SOP 3514 v4, rule village-accompaniment (line {line_of(text, 'pick: by_village')}): "
        "503 agencies list villages for psychosocial: the question routing asks intake names "
        "at most 500"
    ]


# --- decide -----------------------------------------------------------------------------------


def test_decide_yields_a_pending_pick_with_the_candidates_and_the_kecamatan_agency() -> None:
    sop = load_sop(VILLAGE_SOP)
    decision = decide(sop, "3514-AAAAAAAAAA", facts(), NOW)
    assert [(r.service, r.agency_id) for r in decision.referrals] == [
        (Service.CASE_MANAGEMENT, "upt-test")
    ]
    assert decision.pending_picks == (
        PendingPick(
            referral_id="3514-AAAAAAAAAA-02",
            service=Service.PSYCHOSOCIAL,
            priority=Priority.ROUTINE,
            acknowledge_within=timedelta(minutes=1440),
            escalate_to=("upt-test",),
            coordinator="coord-test",
            rule_ids=("village-accompaniment",),
            consent_override=None,
            candidates=(
                VillageCandidate(
                    "sae-desa-satu", ("Bangil/Desa Contoh Satu", "Bangil/Desa Contoh Dua")
                ),
                VillageCandidate("sae-desa-tiga", ("Pandaan/Desa Contoh Tiga",)),
            ),
            none_agency_id="sae-bangil",
            none_reason="kecamatan",
        ),
    )
    referral = decision.pending_picks[0].referral("sae-desa-satu", NOW)
    assert referral.escalation_chain == ("upt-test", "coord-test")
    assert referral.acknowledgement_deadline == NOW + timedelta(minutes=1440)


def test_without_a_kecamatan_agency_the_answer_none_goes_to_the_fallback() -> None:
    sop = load_sop(VILLAGE_SOP)
    (pick,) = decide(sop, "3514-AAAAAAAAAA", facts(kecamatan="Pandaan"), NOW).pending_picks
    assert (pick.none_agency_id, pick.none_reason) == ("upt-test", "fallback")
    (pick,) = decide(sop, "3514-AAAAAAAAAA", facts(kecamatan=None), NOW).pending_picks
    assert (pick.none_agency_id, pick.none_reason) == ("upt-test", "fallback")


def test_a_desa_level_agency_is_never_picked_by_kecamatan() -> None:
    text = VILLAGE_SOP.replace("pick: by_village", "pick: by_kecamatan").replace(
        "  - id: sae-bangil\n", "  - id: sae-bangil\n"
    )
    sop = load_sop(text)
    decision = decide(sop, "3514-AAAAAAAAAA", facts(kecamatan="Pandaan"), NOW)
    assert ("psychosocial", "upt-test") in [(r.service, r.agency_id) for r in decision.referrals]
    assert decision.pending_picks == ()


def test_a_withheld_pick_by_village_is_withheld_and_nothing_is_asked() -> None:
    text = VILLAGE_SOP.replace("      - service: psychosocial\n", "      - service: shelter\n")
    sop = load_sop(text)
    decision = decide(sop, "3514-AAAAAAAAAA", facts(), NOW)
    assert decision.pending_picks == ()
    assert [(w.service, w.agency_id, w.rule_ids) for w in decision.withheld] == [
        (Service.SHELTER, "upt-test", ("village-accompaniment",))
    ]
    consented = decide(sop, "3514-AAAAAAAAAA", facts(consent={"share_with_shelter": True}), NOW)
    assert [p.service for p in consented.pending_picks] == [Service.SHELTER]
    assert consented.withheld == ()


def test_two_picks_by_village_of_one_service_are_one_question_on_the_most_urgent_terms() -> None:
    text = VILLAGE_SOP + (
        "  - id: injury-accompaniment\n"
        "    description: Injured - sooner\n"
        "    when: {injury: true}\n"
        "    refer:\n"
        "      - service: psychosocial\n"
        "        pick: by_village\n"
        "        fallback: upt-test\n"
        "        priority: urgent\n"
        "        acknowledge_within_minutes: 60\n"
    )
    sop = load_sop(text)
    (pick,) = decide(sop, "3514-AAAAAAAAAA", facts(injury=True), NOW).pending_picks
    assert (pick.priority, pick.acknowledge_within) == (Priority.URGENT, timedelta(minutes=60))
    assert pick.rule_ids == ("village-accompaniment", "injury-accompaniment")


# --- examples, simulation, duties -----------------------------------------------------------------


def test_an_example_can_expect_a_pick_by_village_and_its_agency_when_none_matches() -> None:
    passing = VILLAGE_SOP + (
        "examples:\n"
        "  - id: accompanied-close-to-home\n"
        "    speaks_for: sae-bangil\n"
        "    facts: {violence_types: [psychological], age_group: adult, sex: female, "
        "kecamatan: Bangil}\n"
        "    expect:\n"
        "      refer:\n"
        "        - {service: psychosocial, pick: by_village, agency: sae-bangil, "
        "max_acknowledge_minutes: 1440}\n"
    )
    assert example_problems(load_sop(passing)) == []
    wrong_agency = passing.replace(
        "pick: by_village, agency: sae-bangil", "pick: by_village, agency: upt-test"
    )
    assert errors_of_examples(wrong_agency) == [
        "psychosocial: tanpa desa yang cocok ke sae-bangil, bukan upt-test / psychosocial: when "
        "no village matches it goes to sae-bangil, not upt-test (aturan / rules: "
        "village-accompaniment)"
    ]
    too_slow = passing.replace("max_acknowledge_minutes: 1440}", "max_acknowledge_minutes: 60}")
    assert len(errors_of_examples(too_slow)) == 1
    no_pick = passing.replace(
        "{service: psychosocial, pick: by_village, agency: sae-bangil,",
        "{service: case_management, pick: by_village,",
    )
    assert errors_of_examples(no_pick)[0].startswith(
        "tidak ada pilihan case_management menurut desa / no case_management pick by village "
        "follows: case_management dirujuk ke upt-test"
    )


def test_an_example_without_pick_is_not_met_by_a_pending_pick() -> None:
    text = VILLAGE_SOP + (
        "examples:\n"
        "  - id: not-a-plain-referral\n"
        "    speaks_for: sae-bangil\n"
        "    facts: {violence_types: [psychological], age_group: adult, sex: female, "
        "kecamatan: Bangil}\n"
        "    expect:\n"
        "      refer: [{service: psychosocial, agency: sae-bangil}]\n"
        "      never: [sae-desa-tiga]\n"
    )
    errors = errors_of_examples(text)
    assert errors[0] == (
        "tidak ada rujukan psychosocial / no psychosocial referral follows (aturan yang "
        "berlaku / rules fired: case-management, village-accompaniment)"
    )
    assert "may be referred by village, but must never be" in errors[1]


def errors_of_examples(text: str) -> list[str]:
    return [problem.reason for problem in example_problems(load_sop(text))]


def test_simulation_counts_a_pick_under_the_agency_for_no_match() -> None:
    sop = load_sop(VILLAGE_SOP)
    outcome = Outcome.of(decide(sop, "0000-SIMULATED", facts(), NOW))
    assert [(r.agency_id, r.service) for r in outcome.referrals] == [
        ("sae-bangil", "psychosocial"),
        ("upt-test", "case_management"),
    ]


def test_a_pick_by_village_reaches_every_desa_level_agency_and_the_kecamatan_ones() -> None:
    sop = load_sop(VILLAGE_SOP)
    item = sop.rules[1].refer[0]
    assert reachable_agencies(sop, item) == [
        "sae-desa-satu",
        "sae-desa-tiga",
        "sae-bangil",
        "upt-test",
    ]
    by_kecamatan = item.model_copy(update={"pick": "by_kecamatan"})
    assert reachable_agencies(sop, by_kecamatan) == ["sae-bangil", "upt-test"]


def test_a_desa_level_agency_serving_every_kecamatan_carries_the_duty_of_a_pick_by_village() -> (
    None
):
    """The loader takes a desa-level agency with ``kecamatan: all``; the pick may reach it, so
    sign-off must ask it."""
    text = VILLAGE_SOP.replace(
        "    kecamatan: [Pandaan]\n    villages:", "    kecamatan: all\n    villages:"
    )
    sop = load_sop(text)
    (pick,) = decide(sop, "3514-AAAAAAAAAA", facts(), NOW).pending_picks
    reachable = reachable_agencies(sop, sop.rules[1].refer[0])
    assert "sae-desa-tiga" in [c.agency_id for c in pick.candidates]
    assert reachable == ["sae-desa-satu", "sae-desa-tiga", "sae-bangil", "upt-test"]


def test_simulation_counts_no_second_referral_where_the_agency_for_no_match_has_the_service() -> (
    None
):
    """Routing makes no second referral when the pick's agency holds the service already
    (``already_referred``): nor does the simulation, which would count it twice."""
    text = VILLAGE_SOP + (
        "  - id: crisis\n"
        "    description: Suicidal thoughts - crisis support (invented)\n"
        "    when: {suicidal_thoughts: true}\n"
        "    refer:\n"
        "      - service: psychosocial\n"
        "        agency: upt-test\n"
        "        priority: emergency\n"
        "        acknowledge_within_minutes: 30\n"
    )
    decision = decide(
        load_sop(text), "0000-SIMULATED", facts(kecamatan="Pandaan", suicidal_thoughts=True), NOW
    )
    assert decision.pending_picks[0].none_agency_id == "upt-test"
    outcome = Outcome.of(decision)
    assert [(r.agency_id, r.service, r.priority) for r in outcome.referrals] == [
        ("upt-test", "case_management", "urgent"),
        ("upt-test", "psychosocial", "emergency"),
    ]
