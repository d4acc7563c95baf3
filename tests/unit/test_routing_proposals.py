"""Where the answers to an SOP proposal stand, and its rule-by-rule diff."""

from datetime import UTC, datetime

from routing.proposals import NotAgreed, rule_diff_of
from routing.settings import SHIPPED_SOPS
from routing.sop import Sop, load_sop
from routing.sop.signoff import StoredAnswer, StoredProposal, standing_of

PASURUAN = load_sop(SHIPPED_SOPS / "3514.yaml")
AT = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


def answer(agency_id: str, reason: str | None = None) -> StoredAnswer:
    decision = "agree" if reason is None else "object"
    return StoredAnswer(agency_id, decision, reason, None, "api", "partner:p-0a0a0a", AT)


def proposal(asked: list[str], answers: list[StoredAnswer]) -> StoredProposal:
    return StoredProposal(
        proposal_id="prop-" + "0" * 32,
        district_code="3514",
        sop_id="sop-3514",
        version=2,
        yaml="",
        sha256="0" * 64,
        base_version=1,
        proposed_by="coordinator:c-0a0a0a",
        proposed_at=AT,
        state="open",
        agency_ids=asked,
        closed_at=None,
        closed_by=None,
        asked={agency: ["shorter_deadline"] for agency in asked},
        answers={a.agency_id: a for a in answers},
    )


def test_the_standing_says_who_agreed_who_objected_and_who_has_yet_to_answer() -> None:
    standing = standing_of(
        proposal(
            ["lbh-pasuruan", "pkm-bangil", "rsud-bangil"],
            [answer("rsud-bangil"), answer("pkm-bangil", "capacity_insufficient")],
        )
    )
    assert standing.agreed == ["rsud-bangil"]
    assert standing.objected == [("pkm-bangil", "capacity_insufficient")]
    assert standing.awaiting == ["lbh-pasuruan"]
    assert standing.not_agreed == ["lbh-pasuruan", "pkm-bangil"]
    refusal = str(NotAgreed(standing))
    assert "pkm-bangil (capacity_insufficient)" in refusal
    assert "yet to answer: lbh-pasuruan" in refusal


def test_everyone_agreed_leaves_nobody_not_agreed() -> None:
    agreed = proposal(["rsud-bangil"], [answer("rsud-bangil")])
    assert standing_of(agreed).not_agreed == []
    assert standing_of(proposal([], [])).not_agreed == []


def test_a_proposal_shows_the_rule_by_rule_diff_from_the_version_in_force() -> None:
    document = PASURUAN.model_dump(mode="json", exclude_none=True)
    rules = document["rules"]
    rules[1]["refer"][0]["acknowledge_within_minutes"] = 10
    removed = rules.pop(2)["id"]
    rules.insert(0, rules.pop(3))
    rules.append(dict(rules[-1], id="new-rule"))
    after = Sop.model_validate(document)
    summary = rule_diff_of(PASURUAN, after)["summary"]
    assert summary["rules_added"] == ["new-rule"]
    assert summary["rules_removed"] == [removed]
    assert PASURUAN.rules[1].id in summary["rules_changed"]
    assert summary["rules_moved"]
    assert rule_diff_of(PASURUAN, PASURUAN)["unchanged"] is True


def test_a_first_version_adds_every_rule_and_agency() -> None:
    summary = rule_diff_of(None, PASURUAN)["summary"]
    assert summary["rules_added"] == [rule.id for rule in PASURUAN.rules]
    assert summary["agencies_added"] == [agency.id for agency in PASURUAN.directory]
