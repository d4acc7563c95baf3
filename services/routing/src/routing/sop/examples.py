"""Running an SOP's own examples through ``decide``: each passes, or says what failed and where.

Pure. Every failure is a sentence a coordinator can act on (Bahasa Indonesia, then English)
and the location in the SOP document it is about, which the loader turns into a line: every
entry point that must refuse an SOP whose examples fail (``rujuk sop check``, publishing, the
files read at start) reads it with ``parse_sop(text, run_examples=example_problems)``.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from routing.decide import (
    PRIORITY_RANK,
    Decision,
    DistrictMismatch,
    PendingPick,
    ReferralDecision,
    decide,
)
from routing.sop.checks import Location, Problem
from routing.sop.model import Example, ExpectedReferral, Sop
from rujuk_contracts.events import Service

# A decision does not depend on the time, its deadlines aside; examples compare durations.
EXAMPLE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
ONE_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class ExampleFailure:
    """One expectation that did not hold: where it is written, and what happened instead."""

    location: Location  # in the SOP document: ("examples", index, "expect", ...)
    reason: str


@dataclass(frozen=True)
class ExampleResult:
    example: Example
    index: int  # its position in the SOP's ``examples``
    failures: tuple[ExampleFailure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def run_examples(sop: Sop) -> list[ExampleResult]:
    """Every example of the SOP, in order, with its failures (none when it passes)."""
    return [run_example(sop, index, example) for index, example in enumerate(sop.examples)]


def example_problems(sop: Sop) -> list[Problem]:
    """Every expectation of the SOP's examples that does not hold, for the loader to report."""
    return [
        # equivalent: None too, the loader reads show_path as a truth value
        Problem(failure.location, failure.reason, show_path=False)  # pragma: no mutate
        for result in run_examples(sop)
        for failure in result.failures
    ]


def run_example(sop: Sop, index: int, example: Example) -> ExampleResult:
    here: Location = ("examples", index)
    try:
        # equivalent: any case id, it only names the referrals, which examples do not read
        decision = decide(
            sop,
            f"{sop.district_code}-0000000000",
            example.facts,
            EXAMPLE_TIME,  # pragma: no mutate
        )
    except DistrictMismatch:
        failure = ExampleFailure(
            (*here, "facts", "district_code"),
            f"fakta dari kabupaten lain / the facts are of district {example.facts.district}, "
            f"not {sop.district_code}",
        )
        return ExampleResult(example, index, (failure,))
    return ExampleResult(example, index, tuple(_failures(decision, example, (*here, "expect"))))


def _failures(decision: Decision, example: Example, here: Location) -> Iterator[ExampleFailure]:
    expect = example.expect
    for position, expected in enumerate(expect.refer):
        yield from _referral_failures(decision, expected, (*here, "refer", position))
    for position, name in enumerate(expect.never):
        yield from _never_failures(decision, name, (*here, "never", position))
    for position, service in enumerate(expect.withheld):
        reason = _withheld_failure(decision, service)
        if reason is not None:
            yield ExampleFailure((*here, "withheld", position), reason)
    for position, service in enumerate(expect.consent_override):
        reason = _override_failure(decision, service)
        if reason is not None:
            yield ExampleFailure((*here, "consent_override", position), reason)


# --- referrals that must follow -----------------------------------------------------------


def _referral_failures(
    decision: Decision, expected: ExpectedReferral, at: Location
) -> list[ExampleFailure]:
    """None when one referral meets every term; else what the closest one missed."""
    if expected.pick == "by_village":
        return _pick_failures(decision, expected, at)
    same_service = [r for r in decision.referrals if r.service == expected.service]
    candidates = [r for r in same_service if expected.agency in (None, r.agency_id)]
    if not candidates:
        return [ExampleFailure(at, _missing(decision, expected, same_service))]
    missed = [list(_terms_missed(expected, referral, at)) for referral in candidates]
    if any(not terms for terms in missed):
        return []
    return missed[0]  # the most urgent candidate: decide orders referrals by urgency


def _pick_failures(
    decision: Decision, expected: ExpectedReferral, at: Location
) -> list[ExampleFailure]:
    """A pending pick by village of the service, its agency when no village matches (if
    given), its priority and deadline."""
    service = expected.service.value
    picks = [p for p in decision.pending_picks if p.service == expected.service]
    if not picks:
        referred = [r for r in decision.referrals if r.service == expected.service]
        how = (
            f": {service} dirujuk ke {', '.join(r.agency_id for r in referred)} / {service} goes "
            f"to {', '.join(r.agency_id for r in referred)}{_rules(referred[0].rule_ids)}"
            if referred
            else _fired(decision)
        )
        return [
            ExampleFailure(
                at,
                f"tidak ada pilihan {service} menurut desa / no {service} pick by village "
                f"follows{how}",
            )
        ]
    pick = picks[0]
    failures = []
    if expected.agency is not None and expected.agency != pick.none_agency_id:
        failures.append(
            ExampleFailure(
                (*at, "agency"),
                f"{service}: tanpa desa yang cocok ke {pick.none_agency_id}, bukan "
                f"{expected.agency} / {service}: when no village matches it goes to "
                f"{pick.none_agency_id}, not {expected.agency}{_rules(pick.rule_ids)}",
            )
        )
    as_referral = pick.referral(pick.none_agency_id, EXAMPLE_TIME)
    return failures + list(_terms_missed(expected, as_referral, at))


def _missing(
    decision: Decision, expected: ExpectedReferral, same_service: list[ReferralDecision]
) -> str:
    service = expected.service.value
    if same_service:
        agencies = ", ".join(r.agency_id for r in same_service)
        return (
            f"{service} dirujuk ke {agencies}, bukan {expected.agency} / {service} goes to "
            f"{agencies}, not {expected.agency}{_rules(same_service[0].rule_ids)}"
        )
    for withheld in decision.withheld:
        if withheld.service == expected.service and expected.agency in (None, withheld.agency_id):
            return (
                f"{service} ditahan / {service} is withheld: {withheld.reason}"
                f"{_rules(withheld.rule_ids)}"
            )
    return f"tidak ada rujukan {service} / no {service} referral follows{_fired(decision)}"


def _terms_missed(
    expected: ExpectedReferral, referral: ReferralDecision, at: Location
) -> Iterator[ExampleFailure]:
    label = f"{referral.service.value} -> {referral.agency_id}"
    wanted = expected.min_priority
    if wanted is not None and PRIORITY_RANK[referral.priority] > PRIORITY_RANK[wanted]:
        yield ExampleFailure(
            (*at, "min_priority"),
            f"{label}: prioritas {referral.priority.value}, seharusnya paling rendah "
            f"{wanted.value} / priority {referral.priority.value}, expected {wanted.value} "
            f"or more urgent{_rules(referral.rule_ids)}",
        )
    limit = expected.max_acknowledge_minutes
    minutes = referral.acknowledge_within / ONE_MINUTE
    if limit is not None and minutes > limit:
        yield ExampleFailure(
            (*at, "max_acknowledge_minutes"),
            f"{label}: dikonfirmasi dalam {minutes:g} menit, seharusnya paling lama {limit} / "
            f"to be acknowledged within {minutes:g} minutes, expected {limit} at most"
            f"{_rules(referral.rule_ids)}",
        )


# --- what must never appear, what consent withholds, what the law overrides ----------------


def _never_failures(decision: Decision, name: str, at: Location) -> Iterator[ExampleFailure]:
    for referral in decision.referrals:
        if name in (referral.service.value, referral.agency_id):
            label = f"{referral.service.value} -> {referral.agency_id}"
            yield ExampleFailure(
                at,
                f"{label} dirujuk, padahal tidak boleh / {label} is referred, but must never be"
                f"{_rules(referral.rule_ids)}",
            )
    for pick in decision.pending_picks:
        if name in (pick.service.value, *_reachable(pick)):
            label = f"{pick.service.value} -> {', '.join(_reachable(pick))}"
            yield ExampleFailure(
                at,
                f"{label} bisa dirujuk menurut desa, padahal tidak boleh / {label} may be "
                f"referred by village, but must never be{_rules(pick.rule_ids)}",
            )


def _reachable(pick: PendingPick) -> list[str]:
    """Every agency a pending pick may reach: a candidate, or the agency for no match."""
    return [*(c.agency_id for c in pick.candidates), pick.none_agency_id]


def _withheld_failure(decision: Decision, service: Service) -> str | None:
    if any(withheld.service == service for withheld in decision.withheld):
        return None
    referred = [r for r in decision.referrals if r.service == service]
    if referred and referred[0].consent_override:
        return (
            f"{service.value} dirujuk tanpa persetujuan atas dasar hukum, tidak ditahan / "
            f"{service.value} is referred without consent under a legal basis "
            f"({referred[0].consent_override}), not withheld{_rules(referred[0].rule_ids)}"
        )
    if referred:
        return (
            f"{service.value} dirujuk, tidak ditahan / {service.value} is referred, not "
            f"withheld for lack of consent{_rules(referred[0].rule_ids)}"
        )
    return (
        f"tidak ada rujukan {service.value} yang ditahan / no {service.value} referral is "
        f"withheld: no rule asks for it{_fired(decision)}"
    )


def _override_failure(decision: Decision, service: Service) -> str | None:
    referred = [r for r in decision.referrals if r.service == service]
    if any(r.consent_override for r in referred) or any(
        p.consent_override for p in decision.pending_picks if p.service == service
    ):
        return None
    if referred:
        return (
            f"{service.value} dirujuk dengan persetujuan, bukan atas dasar hukum / "
            f"{service.value} is referred with consent, not under a legal basis"
            f"{_rules(referred[0].rule_ids)}"
        )
    for withheld in decision.withheld:
        if withheld.service == service:
            return (
                f"{service.value} ditahan, tidak ada dasar hukum / {service.value} is withheld, "
                f"no legal basis overrides consent: {withheld.reason}"
            )
    return f"tidak ada rujukan {service.value} / no {service.value} referral follows" + _fired(
        decision
    )


def _rules(rule_ids: tuple[str, ...]) -> str:
    return f" (aturan / rules: {', '.join(rule_ids)})"


def _fired(decision: Decision) -> str:
    # equivalent: any text for no rule; an SOP's unconditional case-management rule always fires
    fired = ", ".join(decision.rules_fired) or "-"  # pragma: no mutate
    return f" (aturan yang berlaku / rules fired: {fired})"
