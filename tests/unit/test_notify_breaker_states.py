"""The circuit breaker in each state, and the retry delays' jitter (issue 26: what the
reliability tests left unasserted)."""

import random

import pytest

from notify.breaker import Breakers, BreakerState, CircuitBreaker
from notify.retry import next_delay


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def half_open(cooldown: float = 10) -> tuple[CircuitBreaker, Clock]:
    """A breaker whose trial delivery has just been let through."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=cooldown, clock=clock)
    breaker.failed()
    clock.now += cooldown
    assert breaker.allow()
    assert breaker.state == BreakerState.HALF_OPEN
    return breaker, clock


def test_a_closed_breaker_admits_every_delivery_and_blocks_none() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=Clock())
    for _ in range(5):
        assert breaker.allow()
        assert breaker.blocked_for() == 0.0
    breaker.failed()
    breaker.failed()  # below the threshold: still closed
    assert breaker.state == BreakerState.CLOSED
    assert breaker.blocked_for() == 0.0
    assert breaker.allow()
    assert breaker.allow()


def test_a_half_open_breaker_blocks_for_a_cooldown_while_its_trial_is_out() -> None:
    breaker, _ = half_open(cooldown=10)
    assert breaker.blocked_for() == 10


def test_a_half_open_breaker_blocks_nothing_once_its_trial_is_given_back() -> None:
    breaker, _ = half_open(cooldown=10)
    breaker.release()
    assert breaker.blocked_for() == 0.0
    assert breaker.allow()
    assert breaker.blocked_for() == 10


def test_an_open_breaker_blocks_for_what_is_left_of_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.failed()
    clock.now += 4
    assert breaker.blocked_for() == pytest.approx(6)
    clock.now += 20
    assert breaker.blocked_for() == 0.0


def test_a_failed_trial_opens_the_breaker_for_a_full_cooldown_from_then() -> None:
    breaker, clock = half_open(cooldown=10)
    clock.now += 3
    breaker.failed()
    assert breaker.state == BreakerState.OPEN
    assert breaker.blocked_for() == 10
    clock.now += 9.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()


def test_after_a_successful_trial_the_breaker_needs_the_full_threshold_again() -> None:
    breaker, _ = half_open()
    breaker.succeeded()
    breaker.threshold = 2
    breaker.failed()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == BreakerState.OPEN


def test_breakers_give_each_endpoint_their_threshold_cooldown_and_clock() -> None:
    clock = Clock()
    breakers = Breakers(threshold=2, cooldown=60, clock=clock)
    breaker = breakers["https://contoh.example/hook"]
    assert breakers["https://contoh.example/hook"] is breaker
    breaker.failed()
    assert breaker.state == BreakerState.CLOSED
    breaker.failed()
    assert breaker.blocked_for() == 60
    clock.now += 60
    assert breaker.allow()


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [next_delay(n, base=1, cap=60, rng=random.Random(26)) for n in range(1, 8)]
    again = [next_delay(n, base=1, cap=60, rng=random.Random(26)) for n in range(1, 8)]
    assert first == again


def test_delays_are_jittered_between_half_the_ceiling_and_the_ceiling() -> None:
    rng = random.Random(26)
    delays = [next_delay(4, base=1, cap=60, rng=rng) for _ in range(200)]
    assert all(4 <= delay <= 8 for delay in delays)
    assert len(set(delays)) == len(delays)  # jitter: no two alike
    assert min(delays) < 4.5
    assert max(delays) > 7.5


def test_without_an_rng_the_delays_are_jittered_too() -> None:
    delays = {next_delay(3, base=2, cap=5, rng=None) for _ in range(50)}
    assert all(2.5 <= delay <= 5 for delay in delays)
    assert len(delays) > 1
