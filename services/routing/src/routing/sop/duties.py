"""Which agencies a proposed SOP version asks more of than the version in force (pure).

An agency must sign a proposal off when the proposal asks more of it: it joins the directory,
is referred a service it never was, has less time to acknowledge or gets a more urgent
referral under a rule, or appears in an escalation chain where it did not. Relaxed duties
(a longer deadline, a lower priority, a rule removed) need nobody's sign-off.

Choices worth knowing:
- A duty is (agency, service, rule id). A rule kept under its id is compared with itself; a
  new (or renamed) rule asks more only where it is stricter than anything the agency had for
  that service, so renaming a rule asks nobody.
- ``pick: by_kecamatan`` may reach every directory agency that offers the service and lists a
  kecamatan by name (a desa-level agency, which lists ``villages``, aside), and its fallback:
  each of them carries the duty. ``pick: by_village`` may reach those, and every desa-level
  agency that offers the service.
- What a rule fires on counts too: a rule that is new, or whose ``when`` changes, asks every
  agency it may reach (``conditions_changed``), whether it widens or narrows (telling which is
  not decidable from the YAML alone; the impact simulation shows it on real cases); a rule
  renamed with its conditions and referrals as they were asks nobody. So does a
  change of the consent policy for a service an agency is referred (``consent_policy_changed``).
- The coordinator proposes and is never asked; a proposal that makes another agency the
  coordinator asks that agency (``becomes_coordinator``), whatever else changes for it.
"""

from collections.abc import Iterator
from dataclasses import dataclass

from routing.sop.model import ConsentPolicy, Referral, Sop
from rujuk_contracts.events import DutyChange, Priority, Service

PRIORITY_RANK = {Priority.EMERGENCY: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}


@dataclass(frozen=True)
class DutyChangeDetail:
    """One thing asked more of an agency, with what it was and what it becomes."""

    code: DutyChange
    service: Service | None = None
    rule_id: str | None = None
    before: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class AgencyDutyChanges:
    """An agency that must sign the proposal off, and why."""

    agency_id: str
    changes: tuple[DutyChangeDetail, ...]

    @property
    def codes(self) -> list[DutyChange]:
        """Each kind of change once, in the order of ``DutyChange``."""
        found = {change.code for change in self.changes}
        return [code for code in DutyChange if code in found]


@dataclass(frozen=True)
class _Terms:
    """The strictest terms of a duty: fewest minutes to acknowledge, most urgent priority."""

    minutes: int
    rank: int

    def stricter(self, other: "_Terms") -> "_Terms":
        return _Terms(min(self.minutes, other.minutes), min(self.rank, other.rank))


@dataclass(frozen=True)
class _Duties:
    by_rule: dict[tuple[str, Service, str], _Terms]  # (agency, service, rule id)
    by_service: dict[tuple[str, Service], _Terms]  # (agency, service), over every rule
    escalation: frozenset[str]
    directory: frozenset[str]


def duty_changes(before: Sop | None, after: Sop) -> list[AgencyDutyChanges]:
    """The agencies ``after`` asks more of than ``before`` (None: no SOP in force), by id."""
    old, new = _duties(before), _duties(after)
    changes: dict[str, list[DutyChangeDetail]] = {}

    proposer = before.coordinator if before is not None else after.coordinator

    def add(agency_id: str, detail: DutyChangeDetail) -> None:
        if agency_id != proposer and detail not in changes.setdefault(agency_id, []):
            changes[agency_id].append(detail)

    if after.coordinator != proposer:
        add(after.coordinator, DutyChangeDetail(DutyChange.BECOMES_COORDINATOR))
    for agency_id in sorted(new.directory - old.directory):
        add(agency_id, DutyChangeDetail(DutyChange.JOINS_DIRECTORY))
    for (agency_id, service, rule_id), terms in sorted(new.by_rule.items()):
        for detail in _stricter(old, agency_id, service, rule_id, terms):
            add(agency_id, detail)
    for agency_id in sorted(new.escalation - old.escalation):
        add(agency_id, DutyChangeDetail(DutyChange.NEW_ESCALATION_STEP))
    if before is not None:
        for agency_id, detail in sorted(_fires_differently(before, after), key=_by_agency):
            add(agency_id, detail)
    return [
        AgencyDutyChanges(agency_id, tuple(details))
        for agency_id, details in sorted(changes.items())
        if details
    ]


def _stricter(
    old: _Duties, agency_id: str, service: Service, rule_id: str, terms: _Terms
) -> Iterator[DutyChangeDetail]:
    had = old.by_service.get((agency_id, service))
    if had is None:
        yield DutyChangeDetail(DutyChange.NEW_SERVICE, service, rule_id)
        return
    base = old.by_rule.get((agency_id, service, rule_id), had)
    if terms.minutes < base.minutes:
        yield DutyChangeDetail(
            DutyChange.SHORTER_DEADLINE,
            service,
            rule_id,
            f"{base.minutes} min",
            f"{terms.minutes} min",
        )
    if terms.rank < base.rank:
        yield DutyChangeDetail(
            DutyChange.HIGHER_PRIORITY,
            service,
            rule_id,
            _priority(base.rank),
            _priority(terms.rank),
        )


def _by_agency(found: tuple[str, DutyChangeDetail]) -> tuple[str, str, str]:
    agency_id, detail = found
    return agency_id, detail.code.value, f"{detail.service}:{detail.rule_id}"


def _fires_differently(before: Sop, after: Sop) -> Iterator[tuple[str, DutyChangeDetail]]:
    """Agencies other cases may now reach: a rule new or with other conditions, and services
    whose consent policy changes."""
    old_rules = {rule.id: rule for rule in before.rules}
    for rule in after.rules:
        old = old_rules.get(rule.id)
        if old is not None and old.when == rule.when:
            continue
        if old is None and any(o.when == rule.when and o.refer == rule.refer for o in before.rules):
            continue  # a rule renamed, or copied, as it was: it fires on the same cases
        for item in rule.refer:
            for agency_id in reachable_agencies(after, item):
                detail = DutyChangeDetail(DutyChange.CONDITIONS_CHANGED, item.service, rule.id)
                yield agency_id, detail
    changed = _consent_changes(before, after)
    for rule in after.rules:
        for item in rule.refer:
            if item.service in changed:
                for agency_id in reachable_agencies(after, item):
                    yield (
                        agency_id,
                        DutyChangeDetail(DutyChange.CONSENT_POLICY_CHANGED, item.service),
                    )


def _consent_changes(before: Sop, after: Sop) -> set[Service]:
    """Services whose consent requirement or mandatory reporting differs."""
    old, new = before.consent, after.consent
    services = set(old.requires_consent) | set(new.requires_consent)
    changed = {s for s in services if old.requires_consent.get(s) != new.requires_consent.get(s)}

    def reported(policy: ConsentPolicy) -> set[tuple[str, Service, str]]:
        return {
            (entry.age_group.value, service, entry.legal_basis)
            for entry in policy.mandatory_reporting
            for service in entry.services
        }

    changed |= {service for _, service, _ in reported(old) ^ reported(new)}
    return changed


def _priority(rank: int) -> str:
    return next(priority.value for priority, r in PRIORITY_RANK.items() if r == rank)


def _duties(sop: Sop | None) -> _Duties:
    if sop is None:
        return _Duties({}, {}, frozenset(), frozenset())
    by_rule: dict[tuple[str, Service, str], _Terms] = {}
    by_service: dict[tuple[str, Service], _Terms] = {}
    escalation = {sop.coordinator}
    for rule in sop.rules:
        for item in rule.refer:
            terms = _Terms(item.acknowledge_within_minutes, PRIORITY_RANK[item.priority])
            for agency_id in reachable_agencies(sop, item):
                key = (agency_id, item.service, rule.id)
                by_rule[key] = by_rule[key].stricter(terms) if key in by_rule else terms
                pair = (agency_id, item.service)
                by_service[pair] = by_service[pair].stricter(terms) if pair in by_service else terms
            escalation.update(item.escalate_to)
    return _Duties(
        by_rule, by_service, frozenset(escalation), frozenset(a.id for a in sop.directory)
    )


def reachable_agencies(sop: Sop, item: Referral) -> list[str]:
    """Every agency a ``refer`` item may reach: its agency, or for ``pick: by_kecamatan``
    each directory agency offering the service that lists a kecamatan, and the fallback; for
    ``pick: by_village`` the desa-level agencies offering it too."""
    if item.agency is not None:
        return [item.agency]
    # As decide picks: by kecamatan an agency listing kecamatan (not ``all``) and no villages;
    # by village also every desa-level agency, whatever its kecamatan (``all`` included).
    picked = [
        agency.id
        for agency in sop.directory
        if item.service in agency.services
        and (
            (agency.villages is None and agency.kecamatan != "all")
            or (agency.villages is not None and item.pick == "by_village")
        )
    ]
    return [*picked, *([item.fallback] if item.fallback is not None else [])]
