"""When to try a failed delivery again: exponential backoff with full jitter, capped."""

import random


def next_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based)."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
