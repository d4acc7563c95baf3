"""A circuit breaker per endpoint: after ``threshold`` consecutive failures the endpoint is
left alone for ``cooldown`` seconds, then one trial delivery decides (half-open): success
closes it, failure opens it again. While it is open nothing is sent there, so a dead partner
costs no timeouts and no attempts."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    threshold: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    _trial_out: bool = field(default=False, repr=False)

    def blocked_for(self) -> float:
        """Seconds until a delivery may be tried (0 when one may go now)."""
        if self.state == BreakerState.CLOSED:
            return 0.0
        if self.state == BreakerState.HALF_OPEN:
            return self.cooldown if self._trial_out else 0.0
        return max(0.0, self.opened_at + self.cooldown - self.clock())

    def allow(self) -> bool:
        """May one delivery go now? In half-open, only one (the trial) until it is settled."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            if self.clock() < self.opened_at + self.cooldown:
                return False
            self.state = BreakerState.HALF_OPEN
            # equivalent: None too, only whether _trial_out is true is ever read
            self._trial_out = False  # pragma: no mutate
        if self._trial_out:
            return False
        self._trial_out = True
        return True

    def release(self) -> None:
        """The delivery allowed was not made after all (nothing was due)."""
        # equivalent: None too, only whether _trial_out is true is ever read
        self._trial_out = False  # pragma: no mutate

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        # equivalent: None or True too, a closed breaker never reads it and allow() resets it
        # on the way to half-open
        self._trial_out = False  # pragma: no mutate

    def failed(self) -> None:
        self.failures += 1
        # equivalent: None or True too, neither closed nor open reads it and allow() resets it
        # on the way to half-open
        self._trial_out = False  # pragma: no mutate
        if self.state == BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()


@dataclass
class Breakers:
    threshold: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    by_endpoint: dict[str, CircuitBreaker] = field(default_factory=dict)

    def __getitem__(self, endpoint: str) -> CircuitBreaker:
        breaker = self.by_endpoint.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(self.threshold, self.cooldown, self.clock)
            self.by_endpoint[endpoint] = breaker
        return breaker
