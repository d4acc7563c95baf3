"""Rule-by-rule difference between two versions of a district SOP, structured and as text.

Rules fire in order, so a rule that keeps its content but changes place is reported as
moved. Rules are matched by id, directory agencies by id, ``refer`` items of a rule by their
service and agency (or ``pick``); every other top-level section (consent, on_call, retention,
the names, and any section added later) is compared as a whole. Pure: no I/O.
"""

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from routing.sop.model import Referral, Rule, Sop

# Sections with a diff of their own; every other field of Sop is compared as a whole.
_ITEMISED = ("rules", "directory")
# Fields that say which document this is rather than what it asks of anyone.
_IDENTITY = ("version",)


@dataclass(frozen=True)
class FieldChange:
    """One value that differs: where (``when.age_group``, ``refer[health@rsud-bangil].priority``),
    before and after (None: absent)."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class RuleChange:
    """A rule added, removed or changed; ``position`` is 1-based, in the version it is in
    (after, except for a removed rule)."""

    rule_id: str
    kind: str  # added | removed | changed
    position: int
    changes: tuple[FieldChange, ...] = ()
    text: str = ""  # unified diff of the rule's YAML


@dataclass(frozen=True)
class RuleMove:
    """A rule kept, in another place among the rules both versions have (order matters)."""

    rule_id: str
    position_before: int
    position_after: int


@dataclass(frozen=True)
class AgencyChange:
    agency_id: str
    kind: str  # added | removed | changed
    changes: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class SectionChange:
    """A top-level section other than rules and directory (consent, on_call, retention, ...)."""

    section: str
    changes: tuple[FieldChange, ...]
    text: str


@dataclass(frozen=True)
class SopDiff:
    before: str  # label, e.g. "SOP 3514 v1"
    after: str
    rules: tuple[RuleChange, ...] = ()
    moved: tuple[RuleMove, ...] = ()
    directory: tuple[AgencyChange, ...] = ()
    sections: tuple[SectionChange, ...] = ()
    rule_order_before: tuple[str, ...] = field(default=())
    rule_order_after: tuple[str, ...] = field(default=())

    @property
    def unchanged(self) -> bool:
        return not (self.rules or self.moved or self.directory or self.sections)

    def of_kind(self, kind: str) -> list[str]:
        """Ids of the rules added, removed or changed."""
        return [change.rule_id for change in self.rules if change.kind == kind]

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["unchanged"] = self.unchanged
        body["summary"] = {
            "rules_added": self.of_kind("added"),
            "rules_removed": self.of_kind("removed"),
            "rules_changed": self.of_kind("changed"),
            "rules_moved": [move.rule_id for move in self.moved],
            "agencies_added": [a.agency_id for a in self.directory if a.kind == "added"],
            "agencies_removed": [a.agency_id for a in self.directory if a.kind == "removed"],
            "agencies_changed": [a.agency_id for a in self.directory if a.kind == "changed"],
            "sections_changed": [s.section for s in self.sections],
        }
        return body

    def text(self) -> str:
        """The whole difference, readable: a heading per change, then its unified diff."""
        lines = [f"{self.before} -> {self.after}"]
        if self.unchanged:
            return "\n".join([*lines, "  tidak ada perubahan / no change"])
        for change in self.rules:
            lines.append(f"rule {change.rule_id}: {change.kind} (position {change.position})")
            lines += [f"    {line}" for line in change.text.splitlines()]
        for move in self.moved:
            lines.append(
                f"rule {move.rule_id}: moved from position {move.position_before} "
                f"to {move.position_after}"
            )
        for agency in self.directory:
            fields = ", ".join(c.path for c in agency.changes)
            lines.append(
                f"agency {agency.agency_id}: {agency.kind}{f' ({fields})' if fields else ''}"
            )
        for section in self.sections:
            lines.append(f"{section.section}: changed")
            lines += [f"    {line}" for line in section.text.splitlines()]
        return "\n".join(lines)


def rule_diff(before: Sop, after: Sop) -> SopDiff:
    """What changes from ``before`` to ``after``, rule by rule (the version number aside)."""
    return SopDiff(
        before=before.label,
        after=after.label,
        rules=tuple(_rule_changes(before.rules, after.rules)),
        moved=tuple(_moves(before.rules, after.rules)),
        directory=tuple(_agency_changes(before, after)),
        sections=tuple(_section_changes(before, after)),
        rule_order_before=tuple(rule.id for rule in before.rules),
        rule_order_after=tuple(rule.id for rule in after.rules),
    )


# --- rules --------------------------------------------------------------------------------


def _rule_changes(before: list[Rule], after: list[Rule]) -> list[RuleChange]:
    old = {rule.id: rule for rule in before}
    new = {rule.id: rule for rule in after}
    changes = []
    for position, rule in enumerate(after, start=1):
        if rule.id not in old:
            changes.append(RuleChange(rule.id, "added", position, text=_unified(None, rule)))
        elif old[rule.id] != rule:
            changes.append(
                RuleChange(
                    rule.id,
                    "changed",
                    position,
                    tuple(_rule_field_changes(old[rule.id], rule)),
                    _unified(old[rule.id], rule),
                )
            )
    for position, rule in enumerate(before, start=1):
        if rule.id not in new:
            changes.append(RuleChange(rule.id, "removed", position, text=_unified(rule, None)))
    return changes


def _rule_field_changes(before: Rule, after: Rule) -> list[FieldChange]:
    changes = []
    if before.description != after.description:
        changes.append(FieldChange("description", before.description, after.description))
    changes += _compare(
        "when",
        before.when.model_dump(mode="json", exclude_none=True),
        after.when.model_dump(mode="json", exclude_none=True),
    )
    old = {_refer_key(item): item for item in before.refer}
    new = {_refer_key(item): item for item in after.refer}
    for key, item in new.items():
        path = f"refer[{key}]"
        if key not in old:
            changes.append(FieldChange(path, None, _dump(item)))
        else:
            changes += _compare(path, _dump(old[key]), _dump(item))
    changes += [
        FieldChange(f"refer[{key}]", _dump(item), None)
        for key, item in old.items()
        if key not in new
    ]
    old_order, new_order = [k for k in old if k in new], [k for k in new if k in old]
    if old_order != new_order:
        changes.append(FieldChange("refer (order)", old_order, new_order))
    return changes


def _refer_key(item: Referral) -> str:
    return f"{item.service.value}@{item.agency or 'pick:' + str(item.pick)}"


def _moves(before: list[Rule], after: list[Rule]) -> list[RuleMove]:
    """Rules both versions have whose order among those common rules changed: those outside
    the longest run of rules that kept their relative order."""
    common = {rule.id for rule in before} & {rule.id for rule in after}
    old = [rule.id for rule in before if rule.id in common]
    new = [rule.id for rule in after if rule.id in common]
    kept: set[str] = set()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for block in matcher.get_matching_blocks():
        kept.update(old[block.a : block.a + block.size])
    position_before = {rule.id: n for n, rule in enumerate(before, start=1)}
    position_after = {rule.id: n for n, rule in enumerate(after, start=1)}
    return [
        RuleMove(rule_id, position_before[rule_id], position_after[rule_id])
        for rule_id in new
        if rule_id not in kept
    ]


# --- directory and the other sections -----------------------------------------------------


def _agency_changes(before: Sop, after: Sop) -> list[AgencyChange]:
    old = {agency.id: _dump(agency) for agency in before.directory}
    new = {agency.id: _dump(agency) for agency in after.directory}
    changes = [
        AgencyChange(agency_id, "added") if agency_id not in old else
        AgencyChange(agency_id, "changed", tuple(_compare("", old[agency_id], dumped)))
        for agency_id, dumped in new.items()
        if old.get(agency_id) != dumped
    ]  # fmt: skip
    return changes + [
        AgencyChange(agency_id, "removed") for agency_id in old if agency_id not in new
    ]


def _section_changes(before: Sop, after: Sop) -> list[SectionChange]:
    old, new = _dump(before), _dump(after)
    changes = []
    for name in type(before).model_fields:
        if name in _ITEMISED or name in _IDENTITY or old.get(name) == new.get(name):
            continue
        changes.append(
            SectionChange(
                name,
                tuple(_compare(name, old.get(name), new.get(name))),
                _unified_data(name, old.get(name), new.get(name)),
            )
        )
    return changes


# --- comparing data -----------------------------------------------------------------------


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return dumped


def _compare(path: str, before: Any, after: Any) -> list[FieldChange]:
    """The leaves that differ, dict keys followed; lists are compared whole."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        changes = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            changes += _compare(sub, before.get(key), after.get(key))
        return changes
    return [FieldChange(path or "(value)", before, after)]


def _unified(before: Rule | None, after: Rule | None) -> str:
    rule = after or before
    assert rule is not None
    return _unified_data(
        f"rule {rule.id}",
        None if before is None else _dump(before),
        None if after is None else _dump(after),
    )


def _unified_data(name: str, before: Any, after: Any) -> str:
    def lines(data: Any) -> list[str]:
        if data is None:
            return []
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        return text.splitlines()

    return "\n".join(
        difflib.unified_diff(
            lines(before), lines(after), f"{name} (before)", f"{name} (after)", lineterm="", n=2
        )
    )
