"""Impact simulation: the triage facts of past cases run through two SOP versions, and what
would have gone differently (referrals, weekly load per agency, priorities, deadlines,
consent). Pure: no I/O; facts and codes only, never anything identifying.

A ``pick: by_village`` referral depends on the case's desa, which routing never holds: the
simulation counts it under the agency the case reaches when no listed village is its own (the
``by_kecamatan`` pick, else the fallback), as if intake had answered "none" (and, as routing
does then, not at all when that agency holds the service in the case already). A desa-level
agency's load is therefore not simulated; the kecamatan-level agency's is an upper bound.

A decision's outcome apart from its ids and times depends on the SOP and the facts alone
(``decide`` has no time-of-day rule: a deadline is the decision time plus the rule's
``acknowledge_within_minutes``), so facts the versions cannot tell apart (``FactsKey``) are
decided once per version, and deadlines are compared as ``acknowledge_within_minutes``, not
as instants.
"""

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from routing.decide import Decision, decide
from routing.sop import Sop, normalise
from rujuk_contracts.triage import TriageFacts

MAX_LISTED_CASES = 1000  # changed cases listed one by one; all are counted
_AT = datetime(2026, 1, 1, tzinfo=UTC)  # a pick's deadline is compared as a duration only
CASE_ID_FOR_DECISIONS = "0000-SIMULATED"  # decide() needs one; the outcome never shows it


@dataclass(frozen=True)
class PastCase:
    """A routed case as the simulation sees it. ``triage`` None: routed before routing kept
    the facts (migration 0009), so it cannot be simulated."""

    case_id: str
    reported_at: datetime
    triage: TriageFacts | None


@dataclass(frozen=True, order=True)
class ReferralOutcome:
    """A referral apart from its ids and times."""

    agency_id: str
    service: str
    priority: str
    acknowledge_within_minutes: int
    escalation_chain: tuple[str, ...]
    consent_override: str | None  # the legal basis, when made without consent


@dataclass(frozen=True, order=True)
class WithheldOutcome:
    agency_id: str
    service: str


@dataclass(frozen=True)
class Outcome:
    """What one version decides for a set of facts; ``failed`` names why it could not."""

    referrals: tuple[ReferralOutcome, ...]
    withheld: tuple[WithheldOutcome, ...]
    failed: str | None = None

    @classmethod
    def of(cls, decision: Decision) -> "Outcome":
        referred = {(r.agency_id, r.service) for r in decision.referrals}
        # Routing makes no second referral when the pick's agency holds the service already.
        picked = (
            p.referral(p.none_agency_id, _AT)
            for p in decision.pending_picks
            if (p.none_agency_id, p.service) not in referred
        )
        return cls(
            referrals=tuple(
                sorted(
                    ReferralOutcome(
                        r.agency_id,
                        r.service.value,
                        r.priority.value,
                        round(r.acknowledge_within.total_seconds() / 60),
                        r.escalation_chain,
                        r.consent_override,
                    )
                    for r in (*decision.referrals, *picked)
                )
            ),
            withheld=tuple(
                sorted(WithheldOutcome(w.agency_id, w.service.value) for w in decision.withheld)
            ),
        )


@dataclass(frozen=True)
class Comparison:
    """One set of facts under both versions."""

    before: Outcome
    after: Outcome

    @property
    def differs(self) -> bool:
        return self.before != self.after

    @property
    def simulable(self) -> bool:
        return self.before.failed is None and self.after.failed is None


class FactsKey:
    """What of a case's facts the two versions can tell apart, hashable: facts with equal keys
    get equal decisions, so each key is decided once.

    Facts no rule of either version looks at are left out (a flag no condition names, violence
    types no condition names, a kecamatan neither the conditions nor the directory name), and
    the hours since a sexual assault become the thresholds of the conditions they pass:
    ``max_hours`` holds for hours <= t, ``min_hours`` for hours > t, so what matters is how
    many thresholds lie below the hours.
    """

    FLAGS = ("sex", "disability", "immediate_danger", "injury", "perpetrator_has_access",
             "suicidal_thoughts")  # fmt: skip

    def __init__(self, *sops: Sop) -> None:
        conditions = [rule.when for sop in sops for rule in sop.rules]
        self.violence = frozenset(
            kind
            for c in conditions
            for kind in (c.any_violence_types or []) + (c.none_of_violence_types or [])
        )
        limits = [c.max_hours_since_sexual_assault for c in conditions]
        limits += [c.min_hours_since_sexual_assault for c in conditions]
        self.thresholds = sorted({limit for limit in limits if limit is not None})
        self.flags = tuple(
            f for f in self.FLAGS if any(getattr(c, f) is not None for c in conditions)
        )
        self.given_by = any(c.consent is not None and c.consent.given_by is not None
                            for c in conditions)  # fmt: skip
        named = {normalise(k) for c in conditions for k in c.kecamatan or []}
        named |= {normalise(k) for sop in sops for agency in sop.directory
                  if agency.kecamatan != "all" for k in agency.kecamatan}  # fmt: skip
        self.kecamatan = frozenset(named)

    def __call__(self, facts: TriageFacts) -> tuple[Any, ...]:
        hours = facts.hours_since_sexual_assault
        consent = facts.consent
        kecamatan = normalise(facts.kecamatan) if facts.kecamatan else None
        return (
            facts.district,
            facts.age_group,
            frozenset(self.violence.intersection(facts.violence_types)),
            None if hours is None else bisect_left(self.thresholds, hours),
            tuple(getattr(facts, flag) for flag in self.flags),
            consent.share_with_health,
            consent.share_with_police,
            consent.share_with_shelter,
            consent.given_by if self.given_by else None,
            kecamatan if kecamatan in self.kecamatan else None,
        )


def iso_week(moment: datetime, zone: tzinfo) -> str:
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


class Simulation:
    """Accumulates past cases a chunk at a time (``add``), then says what changed (``result``).
    Weeks are ISO weeks in ``zone`` (the district's, for the coordinator's reading)."""

    def __init__(self, before: Sop, after: Sop, *, zone: tzinfo = UTC) -> None:
        if before.district_code != after.district_code:
            raise ValueError(f"{before.label} and {after.label} are for different districts")
        self.before, self.after, self.zone = before, after, zone
        self._key = FactsKey(before, after)
        self._decided: dict[tuple[Any, ...], Comparison] = {}
        self._by_key_and_week: Counter[tuple[tuple[Any, ...], str]] = Counter()
        self._changed: list[dict[str, Any]] = []
        self._changed_count = 0
        self.not_simulable: Counter[str] = Counter()
        self.cases_seen = 0

    def add(self, cases: Iterable[PastCase]) -> None:
        for case in cases:
            self.cases_seen += 1
            if case.triage is None:
                self.not_simulable["no_triage_facts"] += 1
                continue
            key = self._key(case.triage)
            comparison = self._decided.get(key)
            if comparison is None:
                comparison = self._decided[key] = self._compare(case.triage, case.reported_at)
            if not comparison.simulable:
                self.not_simulable["decision_failed"] += 1
                continue
            week = iso_week(case.reported_at, self.zone)
            self._by_key_and_week[key, week] += 1
            if comparison.differs:
                self._changed_count += 1
                if len(self._changed) < MAX_LISTED_CASES:
                    self._changed.append(_changed_case(case.case_id, week, comparison))

    def comparison(self, facts: TriageFacts) -> Comparison | None:
        """What both versions decided for facts like these, if such facts were added."""
        return self._decided.get(self._key(facts))

    def _compare(self, facts: TriageFacts, reported_at: datetime) -> Comparison:
        return Comparison(
            _outcome(self.before, facts, reported_at), _outcome(self.after, facts, reported_at)
        )

    def result(self) -> "SimulationResult":
        weekly: dict[tuple[str, str], list[int]] = {}
        priorities: Counter[tuple[str, str, str, str]] = Counter()
        deadlines: Counter[tuple[str, str, int, int]] = Counter()
        withheld: Counter[tuple[str, str]] = Counter()
        released: Counter[tuple[str, str]] = Counter()
        overrides: Counter[tuple[str, str, str]] = Counter()
        added: Counter[tuple[str, str]] = Counter()
        removed: Counter[tuple[str, str]] = Counter()
        simulated = 0
        for (key, week), count in self._by_key_and_week.items():
            simulated += count
            comparison = self._decided[key]
            for side, outcome in enumerate((comparison.before, comparison.after)):
                for referral in outcome.referrals:
                    weekly.setdefault((referral.agency_id, week), [0, 0])[side] += count
            if comparison.differs:
                _tally_changes(comparison, count, priorities, deadlines, withheld, released,
                               overrides, added, removed)  # fmt: skip
        return SimulationResult(
            before=self.before.label,
            after=self.after.label,
            cases_total=self.cases_seen,
            cases_simulated=simulated,
            cases_not_simulable=dict(sorted(self.not_simulable.items())),
            cases_changed=self._changed_count,
            changed_cases=list(self._changed),
            changed_cases_listed=len(self._changed),
            distinct_facts=len(self._decided),  # as far as the two versions can tell
            weekly_referrals=[
                WeeklyLoad(agency, week, before, after)
                for (agency, week), (before, after) in sorted(weekly.items())
            ],
            agency_totals=_agency_totals(weekly),
            referrals_added=_counts(added, ("agency_id", "service")),
            referrals_removed=_counts(removed, ("agency_id", "service")),
            priority_changes=_counts(
                priorities, ("agency_id", "service", "priority_before", "priority_after")
            ),
            deadline_changes=_counts(
                deadlines, ("agency_id", "service", "minutes_before", "minutes_after")
            ),
            newly_withheld=_counts(withheld, ("agency_id", "service")),
            no_longer_withheld=_counts(released, ("agency_id", "service")),
            newly_overriding_consent=_counts(overrides, ("agency_id", "service", "legal_basis")),
        )


def simulate(
    before: Sop, after: Sop, cases: Iterable[PastCase], *, zone: tzinfo = UTC
) -> "SimulationResult":
    """Run the cases' facts through both versions (decision time: each case's report)."""
    simulation = Simulation(before, after, zone=zone)
    simulation.add(cases)
    return simulation.result()


@dataclass(frozen=True)
class WeeklyLoad:
    agency_id: str
    week: str  # ISO week, e.g. 2026-W45
    before: int
    after: int


@dataclass(frozen=True)
class SimulationResult:
    before: str
    after: str
    cases_total: int
    cases_simulated: int
    cases_not_simulable: dict[str, int]  # reason -> cases: no_triage_facts, decision_failed
    cases_changed: int
    changed_cases: list[dict[str, Any]]  # the first MAX_LISTED_CASES, in reading order
    changed_cases_listed: int
    distinct_facts: int
    weekly_referrals: list[WeeklyLoad]
    agency_totals: list[dict[str, Any]]
    referrals_added: list[dict[str, Any]]
    referrals_removed: list[dict[str, Any]]
    priority_changes: list[dict[str, Any]]
    deadline_changes: list[dict[str, Any]]
    newly_withheld: list[dict[str, Any]]
    no_longer_withheld: list[dict[str, Any]]
    newly_overriding_consent: list[dict[str, Any]]
    notes: list[str] = field(
        default_factory=lambda: [
            "Tenggat dibandingkan sebagai menit konfirmasi aturan / deadlines are compared as "
            "the rule's acknowledge_within_minutes (decide() has no time-of-day rule)",
            "Kasus yang dirutekan sebelum fakta triase disimpan tidak bisa disimulasikan / "
            "cases routed before routing kept their triage facts cannot be simulated",
        ]
    )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- helpers ------------------------------------------------------------------------------


def _outcome(sop: Sop, facts: TriageFacts, at: datetime) -> Outcome:
    try:
        return Outcome.of(decide(sop, CASE_ID_FOR_DECISIONS, facts, at))
    except Exception as exc:  # a case the version cannot decide is counted, not fatal
        return Outcome((), (), failed=f"{type(exc).__name__}: {exc}"[:300])


def _changed_case(case_id: str, week: str, comparison: Comparison) -> dict[str, Any]:
    before, after = comparison.before, comparison.after
    return {
        "case_id": case_id,
        "week": week,
        "referrals_before": [_referral_view(r) for r in before.referrals],
        "referrals_after": [_referral_view(r) for r in after.referrals],
        "withheld_before": [_withheld_view(w) for w in before.withheld],
        "withheld_after": [_withheld_view(w) for w in after.withheld],
    }


# Written out: dataclasses.asdict deep-copies, and took a sixth of a 90-day simulation.
def _referral_view(referral: ReferralOutcome) -> dict[str, Any]:
    return {
        "agency_id": referral.agency_id,
        "service": referral.service,
        "priority": referral.priority,
        "acknowledge_within_minutes": referral.acknowledge_within_minutes,
        "escalation_chain": list(referral.escalation_chain),
        "consent_override": referral.consent_override,
    }


def _withheld_view(withheld: WithheldOutcome) -> dict[str, Any]:
    return {"agency_id": withheld.agency_id, "service": withheld.service}


def _tally_changes(
    comparison: Comparison,
    count: int,
    priorities: Counter[tuple[str, str, str, str]],
    deadlines: Counter[tuple[str, str, int, int]],
    withheld: Counter[tuple[str, str]],
    released: Counter[tuple[str, str]],
    overrides: Counter[tuple[str, str, str]],
    added: Counter[tuple[str, str]],
    removed: Counter[tuple[str, str]],
) -> None:
    """Count, ``count`` times, what changes for one set of facts, per agency and service."""
    old = {(r.agency_id, r.service): r for r in comparison.before.referrals}
    new = {(r.agency_id, r.service): r for r in comparison.after.referrals}
    for key, referral in new.items():
        previous = old.get(key)
        if previous is None:
            added[key] += count
        else:
            if previous.priority != referral.priority:
                priorities[(*key, previous.priority, referral.priority)] += count
            if previous.acknowledge_within_minutes != referral.acknowledge_within_minutes:
                minutes = (previous.acknowledge_within_minutes, referral.acknowledge_within_minutes)
                deadlines[(*key, *minutes)] += count
        if referral.consent_override and (previous is None or not previous.consent_override):
            overrides[(*key, referral.consent_override)] += count
    for key in old.keys() - new.keys():
        removed[key] += count
    held_before = {(w.agency_id, w.service) for w in comparison.before.withheld}
    held_after = {(w.agency_id, w.service) for w in comparison.after.withheld}
    for key in held_after - held_before:
        withheld[key] += count
    for key in held_before - held_after:
        released[key] += count


def _counts(counter: Counter[Any], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of (names..., cases), the largest first."""
    return [
        {**dict(zip(names, key, strict=True)), "cases": count}
        for key, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    ]


def _agency_totals(weekly: dict[tuple[str, str], list[int]]) -> list[dict[str, Any]]:
    totals: dict[str, list[int]] = {}
    for (agency, _), (before, after) in weekly.items():
        total = totals.setdefault(agency, [0, 0])
        total[0] += before
        total[1] += after
    return [
        {"agency_id": agency, "before": before, "after": after, "change": after - before}
        for agency, (before, after) in sorted(totals.items())
    ]
