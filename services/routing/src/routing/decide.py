"""Apply a district SOP to one case's triage facts: which rules fire and which referrals follow.

Pure: the same SOP, case id, facts and time always give the same decision. A ``pick:
by_village`` item cannot be decided from the facts (they never hold the desa): it becomes a
``PendingPick``, which routing asks intake to answer (``routing.picks``).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from routing.sop import Condition, ConsentPolicy, Referral, Rule, Sop, normalise
from rujuk_contracts.events import Priority, Service
from rujuk_contracts.triage import TriageFacts

PRIORITY_RANK = {Priority.EMERGENCY: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}
ONE_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class ReferralDecision:
    """One agency asked for one service, and why."""

    referral_id: str
    service: Service
    agency_id: str
    priority: Priority
    acknowledgement_deadline: datetime
    escalation_chain: tuple[str, ...]
    rule_ids: tuple[str, ...]
    consent_override: str | None = None  # the legal basis, when sent without consent
    acknowledge_within: timedelta = timedelta(0)  # the deadline minus the decision time


@dataclass(frozen=True)
class WithheldReferral:
    """A referral a rule asked for that consent did not allow."""

    service: Service
    agency_id: str
    rule_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class VillageCandidate:
    """A desa-level agency a pick by village may choose, and the villages it lists."""

    agency_id: str
    villages: tuple[str, ...]


@dataclass(frozen=True)
class PendingPick:
    """A referral whose agency the case's desa decides (``pick: by_village``): everything but
    the agency is decided. ``none_agency_id`` gets it when no candidate lists the desa (or no
    answer comes in time): the ``by_kecamatan`` pick (``none_reason`` "kecamatan"), else the
    fallback ("fallback"). ``escalate_to`` is the SOP's steps, most urgent rule's first; the
    chain is made once the agency is known (``escalation_chain``)."""

    referral_id: str
    service: Service
    priority: Priority
    acknowledge_within: timedelta
    escalate_to: tuple[str, ...]
    coordinator: str
    rule_ids: tuple[str, ...]
    consent_override: str | None
    candidates: tuple[VillageCandidate, ...]
    none_agency_id: str
    none_reason: str  # "kecamatan" | "fallback"

    def referral(self, agency_id: str, now: datetime) -> ReferralDecision:
        """The referral once the agency is known, its deadline counted from ``now``."""
        return ReferralDecision(
            referral_id=self.referral_id,
            service=self.service,
            agency_id=agency_id,
            priority=self.priority,
            acknowledgement_deadline=now + self.acknowledge_within,
            escalation_chain=escalation_chain(list(self.escalate_to), agency_id, self.coordinator),
            rule_ids=self.rule_ids,
            consent_override=self.consent_override,
            acknowledge_within=self.acknowledge_within,
        )


@dataclass(frozen=True)
class Decision:
    case_id: str
    sop_id: str
    sop_version: int
    rules_fired: tuple[str, ...]
    referrals: tuple[ReferralDecision, ...]
    withheld: tuple[WithheldReferral, ...] = ()
    pending_picks: tuple[PendingPick, ...] = ()

    def consent_overrides(self) -> dict[str, str]:
        """Referral id -> legal basis, for referrals sent without consent."""
        return {r.referral_id: r.consent_override for r in self.referrals if r.consent_override}


class DistrictMismatch(ValueError):
    """The SOP is for another district than the case."""


def decide(
    sop: Sop,
    case_id: str,
    triage: TriageFacts,
    now: datetime,
    *,
    minute: timedelta = ONE_MINUTE,
) -> Decision:
    """Fire the SOP's rules in order and merge their referrals, one per agency and service.

    ``minute`` is how long one of the SOP's ``acknowledge_within_minutes`` lasts: a real minute
    except where a test or a demo compresses time (``ROUTING_MINUTE_SECONDS``).
    """
    if triage.district != sop.district_code:
        raise DistrictMismatch(
            f"{sop.label} cannot route case {case_id} of district {triage.district}"
        )
    fired = [rule for rule in sop.rules if condition_holds(rule.when, triage)]
    allowed: dict[tuple[str, Service], _Merged] = {}
    withheld: dict[tuple[str, Service], _Merged] = {}
    picks: dict[Service, _Merged] = {}
    for candidate in _candidates(sop, fired, triage):
        target: dict[Any, _Merged] = withheld if candidate.withheld_reason else allowed
        key: Any = (candidate.agency_id, candidate.service)
        if candidate.by_village and not candidate.withheld_reason:
            target, key = picks, candidate.service  # one question per service
        if key in target:
            target[key].absorb(candidate)
        else:
            target[key] = _Merged(candidate)
    ordered = sorted(allowed.values(), key=lambda merged: merged.sort_key())
    pending = sorted(picks.values(), key=lambda merged: merged.sort_key())
    return Decision(
        case_id=case_id,
        sop_id=sop.sop_id,
        sop_version=sop.version,
        rules_fired=tuple(rule.id for rule in fired),
        referrals=tuple(
            merged.referral(f"{case_id}-{number:02d}", now, sop.coordinator, minute)
            for number, merged in enumerate(ordered, start=1)
        ),
        withheld=tuple(
            merged.withheld()
            for merged in sorted(withheld.values(), key=lambda merged: merged.sort_key())
        ),
        pending_picks=tuple(
            merged.pending_pick(f"{case_id}-{number:02d}", sop, minute)
            for number, merged in enumerate(pending, start=len(ordered) + 1)
        ),
    )


def condition_holds(condition: Condition, facts: TriageFacts) -> bool:
    """True when every condition that is set holds for the facts."""
    flags, checks = _compiled(condition)
    for name, wanted in flags:
        if getattr(facts, name) != wanted:
            return False
    return all(check(condition, facts) for check in checks)


_Compiled = tuple[
    tuple[tuple[str, object], ...], tuple[Callable[[Condition, TriageFacts], bool], ...]
]
_COMPILED: dict[int, tuple[Condition, _Compiled]] = {}
MAX_COMPILED = 10_000


def _compiled(condition: Condition) -> _Compiled:
    """The flags a condition sets and the other checks that apply to it, worked out once per
    condition: a rule names two or three of its fourteen fields, and the impact simulation
    asks a rule's condition for 100,000s of facts. Keyed by identity (a condition holds lists,
    so it does not hash); the entry keeps the condition alive, so the id is never reused."""
    found = _COMPILED.get(id(condition))
    if found is not None and found[0] is condition:
        return found[1]
    if len(_COMPILED) >= MAX_COMPILED:  # every SOP parsed adds its conditions: bounded
        _COMPILED.clear()
    flags = tuple(
        (name, wanted) for name in FLAG_FIELDS if (wanted := getattr(condition, name)) is not None
    )
    checks = tuple(
        check
        for check, fields in _CHECK_FIELDS
        if any(getattr(condition, name) is not None for name in fields)
    )
    _COMPILED[id(condition)] = (condition, (flags, checks))
    return flags, checks


def pick_agency(sop: Sop, item: Referral, kecamatan: str | None) -> str:
    """The item's agency, or for ``pick: by_kecamatan`` the first that lists the kecamatan
    (for ``pick: by_village``: the agency that gets it when no village matches)."""
    return pick_by_kecamatan(sop, item, kecamatan)[0]


def pick_by_kecamatan(sop: Sop, item: Referral, kecamatan: str | None) -> tuple[str, str]:
    """(agency id, how): the item's agency ("agency"), the first directory agency offering the
    service that lists the kecamatan ("kecamatan"), else the fallback ("fallback")."""
    if item.agency is not None:
        return item.agency, "agency"
    if kecamatan:
        for agency in sop.directory:
            if item.service in agency.services and agency.serves(kecamatan):
                return agency.id, "kecamatan"
    assert item.fallback is not None  # the SOP model guarantees it with pick
    return item.fallback, "fallback"


def village_candidates(sop: Sop, service: Service) -> tuple[VillageCandidate, ...]:
    """The desa-level agencies offering the service, with their villages, in directory order."""
    return tuple(
        VillageCandidate(agency.id, tuple(agency.villages))
        for agency in sop.directory
        if agency.villages and service in agency.services
    )


def escalation_chain(escalate_to: list[str], agency_id: str, coordinator: str) -> tuple[str, ...]:
    """The SOP's chain without the agency itself or repeats, ending at the coordinator."""
    chain: list[str] = []
    for step in escalate_to:
        if step not in (agency_id, coordinator) and step not in chain:
            chain.append(step)
    if coordinator != agency_id:
        chain.append(coordinator)
    return tuple(chain)


# --- conditions ---------------------------------------------------------------------------


def _violence_any(c: Condition, f: TriageFacts) -> bool:
    wanted = c.any_violence_types
    return wanted is None or any(v in f.violence_types for v in wanted)


def _violence_none(c: Condition, f: TriageFacts) -> bool:
    refused = c.none_of_violence_types
    return refused is None or not any(v in f.violence_types for v in refused)


# Conditions on one fact each: set, the fact must equal it (compiled in ``_compiled``).
FLAG_FIELDS = (
    "age_group",
    "sex",
    "disability",
    "immediate_danger",
    "injury",
    "perpetrator_has_access",
    "suicidal_thoughts",
)


def _hours(c: Condition, f: TriageFacts) -> bool:
    hours = f.hours_since_sexual_assault
    if c.sexual_assault_time_known is not None and c.sexual_assault_time_known != (
        hours is not None
    ):
        return False
    if c.max_hours_since_sexual_assault is not None and (
        hours is None or hours > c.max_hours_since_sexual_assault
    ):
        return False
    return c.min_hours_since_sexual_assault is None or (
        hours is not None and hours > c.min_hours_since_sexual_assault
    )


def _consent(c: Condition, f: TriageFacts) -> bool:
    if c.consent is None:
        return True
    given = f.consent
    pairs = (
        (c.consent.share_with_health, given.share_with_health),
        (c.consent.share_with_police, given.share_with_police),
        (c.consent.share_with_shelter, given.share_with_shelter),
        (c.consent.given_by, given.given_by),
    )
    return all(wanted is None or wanted == actual for wanted, actual in pairs)


def _kecamatan(c: Condition, f: TriageFacts) -> bool:
    if c.kecamatan is None:
        return True
    return f.kecamatan is not None and normalise(f.kecamatan) in map(normalise, c.kecamatan)


# Each other check, and the condition fields that make it apply.
_CHECK_FIELDS: tuple[tuple[Callable[[Condition, TriageFacts], bool], tuple[str, ...]], ...] = (
    (_violence_any, ("any_violence_types",)),
    (_violence_none, ("none_of_violence_types",)),
    (
        _hours,
        (
            "sexual_assault_time_known",
            "max_hours_since_sexual_assault",
            "min_hours_since_sexual_assault",
        ),
    ),
    (_consent, ("consent",)),
    (_kecamatan, ("kecamatan",)),
)


# --- referrals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    rule_id: str
    service: Service
    agency_id: str
    priority: Priority
    minutes: int
    escalate_to: tuple[str, ...]
    consent_override: str | None
    withheld_reason: str | None
    by_village: bool = False
    none_reason: str = "agency"  # how agency_id was chosen: agency, kecamatan, fallback


def _candidates(sop: Sop, fired: list[Rule], triage: TriageFacts) -> Iterator[_Candidate]:
    """The fired rules' refer items, in SOP order."""
    for rule in fired:
        for item in rule.refer:
            override, reason = _consent_verdict(sop.consent, item.service, triage)
            agency_id, how = pick_by_kecamatan(sop, item, triage.kecamatan)
            yield _Candidate(
                rule_id=rule.id,
                service=item.service,
                agency_id=agency_id,
                priority=item.priority,
                minutes=item.acknowledge_within_minutes,
                escalate_to=tuple(item.escalate_to),
                consent_override=override,
                withheld_reason=reason,
                by_village=item.pick == "by_village",
                none_reason=how,
            )


def _consent_verdict(
    policy: ConsentPolicy, service: Service, triage: TriageFacts
) -> tuple[str | None, str | None]:
    """(legal basis of an override, reason to withhold); both None when consent allows it."""
    flag = policy.requires_consent.get(service)
    if flag is None or getattr(triage.consent, flag) is True:
        return None, None
    basis = policy.mandatory_basis(triage.age_group, service)
    if basis is not None:
        return basis, None
    return None, f"no consent to share with {service.value} ({flag} is false)"


@dataclass
class _Merged:
    """Referral candidates for one agency and service, folded into the most urgent terms.

    What consent says depends on the service and the case alone, so every candidate folded in
    carries the first one's consent override or reason to withhold.
    """

    first: _Candidate
    priority: Priority = field(init=False)
    minutes: int = field(init=False)
    rule_ids: list[str] = field(init=False)
    chains: list[tuple[int, tuple[str, ...]]] = field(init=False)

    def __post_init__(self) -> None:
        self.priority = self.first.priority
        self.minutes = self.first.minutes
        self.rule_ids = [self.first.rule_id]
        self.chains = [(PRIORITY_RANK[self.first.priority], self.first.escalate_to)]

    @property
    def service(self) -> Service:
        return self.first.service

    @property
    def agency_id(self) -> str:
        return self.first.agency_id

    @property
    def consent_override(self) -> str | None:
        return self.first.consent_override

    @property
    def withheld_reason(self) -> str | None:
        return self.first.withheld_reason

    def absorb(self, other: _Candidate) -> None:
        # equivalent: `<=` too, equal ranks are the same priority
        if PRIORITY_RANK[other.priority] < PRIORITY_RANK[self.priority]:  # pragma: no mutate
            self.priority = other.priority
        self.minutes = min(self.minutes, other.minutes)
        if other.rule_id not in self.rule_ids:
            self.rule_ids.append(other.rule_id)
        self.chains.append((PRIORITY_RANK[other.priority], other.escalate_to))

    def sort_key(self) -> tuple[int, int]:
        # Ties keep SOP order: candidates arrive in it, dicts keep it and the sort is stable.
        return (PRIORITY_RANK[self.priority], self.minutes)

    def referral(
        self, referral_id: str, now: datetime, coordinator: str, minute: timedelta
    ) -> ReferralDecision:
        # The most urgent rule's chain comes first; the sort is stable, so ties keep SOP order.
        steps = [step for _, chain in sorted(self.chains, key=lambda c: c[0]) for step in chain]
        return ReferralDecision(
            referral_id=referral_id,
            service=self.service,
            agency_id=self.agency_id,
            priority=self.priority,
            acknowledgement_deadline=now + self.minutes * minute,
            escalation_chain=escalation_chain(steps, self.agency_id, coordinator),
            rule_ids=tuple(self.rule_ids),
            consent_override=self.consent_override,
            acknowledge_within=self.minutes * minute,
        )

    def _steps(self) -> tuple[str, ...]:
        return tuple(step for _, chain in sorted(self.chains, key=lambda c: c[0]) for step in chain)

    def pending_pick(self, referral_id: str, sop: Sop, minute: timedelta) -> PendingPick:
        return PendingPick(
            referral_id=referral_id,
            service=self.service,
            priority=self.priority,
            acknowledge_within=self.minutes * minute,
            escalate_to=self._steps(),
            coordinator=sop.coordinator,
            rule_ids=tuple(self.rule_ids),
            consent_override=self.consent_override,
            candidates=village_candidates(sop, self.service),
            none_agency_id=self.agency_id,
            none_reason=self.first.none_reason,
        )

    def withheld(self) -> WithheldReferral:
        assert self.withheld_reason is not None  # only candidates consent withholds get here
        return WithheldReferral(
            self.service, self.agency_id, tuple(self.rule_ids), self.withheld_reason
        )
