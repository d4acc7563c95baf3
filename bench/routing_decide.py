"""Decisions per second and p99 decision time of routing's decide() for the shipped SOPs.

    .venv/bin/python bench/routing_decide.py [--cases 5000] [--seed 7]

Pure, in process: no database, no bus. Target: p99 below 1 ms.
"""

import argparse
import itertools
import random
import statistics
import time
from datetime import UTC, datetime

from routing.decide import decide
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop
from rujuk_contracts.triage import AgeGroup, Consent, ConsentGiver, Sex, TriageFacts, ViolenceType

NOW = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


def varied_facts(rng: random.Random, district: str, kecamatan: list[str]) -> TriageFacts:
    violence = rng.sample(list(ViolenceType), rng.randint(1, 3))
    return TriageFacts(
        violence_types=violence,
        age_group=rng.choice(list(AgeGroup)),
        sex=rng.choice(list(Sex)),
        disability=rng.random() < 0.1,
        immediate_danger=rng.random() < 0.2,
        injury=rng.random() < 0.3,
        hours_since_sexual_assault=rng.choice([None, rng.uniform(0, 200)]),
        perpetrator_has_access=rng.random() < 0.3,
        suicidal_thoughts=rng.random() < 0.1,
        consent=Consent(
            share_with_health=rng.random() < 0.7,
            share_with_police=rng.random() < 0.4,
            share_with_shelter=rng.random() < 0.5,
            given_by=rng.choice(list(ConsentGiver)),
        ),
        district_code=district,
        kecamatan=rng.choice([None, *kecamatan]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sops = [load_sop(SHIPPED_SOPS / f"{district}.yaml") for district in ("3514", "3513")]
    cases = [
        (sop, varied_facts(rng, sop.district_code, sop.kecamatan))
        for sop in itertools.islice(itertools.cycle(sops), args.cases)
    ]
    for sop, facts in cases[:200]:  # warm up
        decide(sop, f"{sop.district_code}-AB12CD34EF", facts, NOW)
    timings = []
    referrals = 0
    started = time.perf_counter()
    for sop, facts in cases:
        before = time.perf_counter_ns()
        decision = decide(sop, f"{sop.district_code}-AB12CD34EF", facts, NOW)
        timings.append(time.perf_counter_ns() - before)
        referrals += len(decision.referrals)
    elapsed = time.perf_counter() - started
    timings.sort()
    p50, p99 = timings[len(timings) // 2], timings[int(len(timings) * 0.99) - 1]
    print(f"decide(): {len(cases)} varied cases over SOP 3514 and 3513 (seed {args.seed})")
    print(f"  decisions per second  {len(cases) / elapsed:,.0f}")
    print(f"  mean                  {statistics.fmean(timings) / 1000:.1f} µs")
    print(f"  p50                   {p50 / 1000:.1f} µs")
    print(f"  p99                   {p99 / 1000:.1f} µs  (target < 1000 µs)")
    print(f"  max                   {timings[-1] / 1000:.1f} µs")
    print(f"  referrals per case    {referrals / len(cases):.2f}")


if __name__ == "__main__":
    main()
