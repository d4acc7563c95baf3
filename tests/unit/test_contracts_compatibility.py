"""A published event schema never changes incompatibly within its version: every schema in
contracts/schemas/ still accepts everything its released copy (contracts/released/) accepted.
The rule is rujuk_contracts.compatibility's; the cases below show that it catches each kind
of break, so a passing check means something."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rujuk_contracts.compatibility import incompatibilities
from rujuk_contracts.events import EVENT_MODELS

CONTRACTS = Path(__file__).parents[2] / "contracts"
RELEASED = sorted((CONTRACTS / "released").glob("v*/*.json"))


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def test_every_released_event_type_is_still_published() -> None:
    assert RELEASED, "no released schemas found"
    published = {path.name for path in (CONTRACTS / "schemas").glob("id.rujuk.*.json")}
    assert {path.name for path in RELEASED} <= published
    assert {f"{event_type}.json" for event_type in EVENT_MODELS} >= {p.name for p in RELEASED}


@pytest.mark.parametrize("released", RELEASED, ids=lambda path: path.name)
def test_a_published_schema_still_accepts_what_its_release_accepted(released: Path) -> None:
    current = load(CONTRACTS / "schemas" / released.name)
    problems = incompatibilities(load(released), current)
    assert not problems, (
        f"{released.name} changed incompatibly: {problems}. Publish a new version "
        "(…v2) side by side instead (docs/partners.md, Versioning)"
    )


DECLINED = CONTRACTS / "released" / "v1" / "id.rujuk.referral.declined.v1.json"


def changed(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(load(DECLINED))
    edit(schema)
    return schema


def data(schema: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = schema["properties"]["data"]
    return found


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (lambda s: data(s)["properties"].pop("note_ref"), "data.note_ref: property removed"),
        (lambda s: data(s)["required"].append("note_ref"), "newly required ['note_ref']"),
        (lambda s: s["$defs"]["DeclineReason"]["enum"].remove("other"), "enum narrowed"),
        (lambda s: data(s)["properties"]["referral_id"].update(type="integer"), "type narrowed"),
        (lambda s: data(s)["properties"]["note"]["anyOf"].pop(1), "alternative 1"),
        (lambda s: data(s)["properties"]["note"]["anyOf"][0].update(maxLength=100), "alternative"),
        (lambda s: data(s)["properties"]["referral_id"].update(pattern="^r"), "pattern changed"),
        (lambda s: s["properties"]["id"].update(maxLength=32), "maxLength tightened"),
        (lambda s: s.update(additionalProperties=False), "other properties are now refused"),
        (lambda s: s["properties"]["type"].update(const="x"), "const 'x'"),
    ],
)
def test_the_rule_catches_each_kind_of_incompatible_change(edit: Any, found: str) -> None:
    problems = incompatibilities(load(DECLINED), changed(edit))
    assert any(found in problem for problem in problems), problems


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: data(s)["properties"].update(extra={"type": "string"}),  # optional, new
        lambda s: s["$defs"]["DeclineReason"]["enum"].append("no_staff"),
        lambda s: data(s)["properties"]["referral_id"].update(description="now explained"),
        lambda s: s["properties"]["id"].update(maxLength=128),
        lambda s: data(s)["required"].remove("reason"),
    ],
)
def test_the_rule_lets_compatible_changes_through(edit: Any) -> None:
    assert incompatibilities(load(DECLINED), changed(edit)) == []


# Properties gained since v1 that are sent as they are, left alone: sop.published names the
# proposal it ends, which a partner reads (only a partner holding the schema files of
# proposals, newer than v1's release, takes part in them); sop.in_force goes to intake only.
GAINED_AND_SENT_AS_THEY_ARE = {
    "id.rujuk.sop.published.v1.json": {
        "proposal_id", "effective_at", "override_reason", "agencies_not_agreed",
    },
    "id.rujuk.sop.in_force.v1.json": {"vault_days_after_close"},
}  # fmt: skip


@pytest.mark.parametrize("released", RELEASED, ids=lambda path: path.name)
def test_a_property_gained_since_the_release_is_declared_so_partners_get_the_release(
    released: Path,
) -> None:
    """A property an event gained after its version was released must be in the event's
    ``added_within_version``, so that it is left out while unset and out of a partner's copy
    (``released_data``): the released schema's data refuses properties it does not name, and
    a partner's client validating with it would refuse, and so lose, the event."""
    gained = set(data(load(CONTRACTS / "schemas" / released.name))["properties"]) - set(
        data(load(released))["properties"]
    )
    model = EVENT_MODELS[released.name.removesuffix(".json")]
    undeclared = (
        gained - model.added_within_version - GAINED_AND_SENT_AS_THEY_ARE.get(released.name, set())
    )
    assert not undeclared, (
        f"{released.name}: {sorted(undeclared)} gained since v1 was released; list them in "
        f"{model.__name__}.added_within_version"
    )
