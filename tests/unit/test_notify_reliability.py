"""The circuit breaker and the backoff, without servers."""

import random

from notify.breaker import Breakers, BreakerState, CircuitBreaker
from notify.retry import next_delay


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_k_failures_and_one_trial_decides_after_the_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.blocked_for() == 10

    clock.now += 10
    assert breaker.blocked_for() == 0
    assert breaker.allow()  # the trial
    assert breaker.state == BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one trial at a time
    breaker.failed()  # the trial failed: open again, for a full cool-down
    assert breaker.state == BreakerState.OPEN
    assert not breaker.allow()

    clock.now += 10
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.failures == 0


def test_a_trial_not_used_is_given_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=1, clock=clock)
    breaker.failed()
    clock.now += 1
    assert breaker.allow()
    breaker.release()  # nothing was due
    assert breaker.allow()


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=1)
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state == BreakerState.CLOSED


def test_breakers_are_per_endpoint() -> None:
    breakers = Breakers(threshold=1, cooldown=60)
    breakers["http://a.example/hook"].failed()
    assert breakers["http://a.example/hook"].state == BreakerState.OPEN
    assert breakers["http://b.example/hook"].state == BreakerState.CLOSED


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    delays = [next_delay(n, base=1, cap=60, rng=rng) for n in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(60, 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 60
