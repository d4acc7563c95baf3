"""The supervisor's backoff: the first restart under a second, doubling to a cap, and a crash
loop named after five exits in a minute (older exits forgotten)."""

from rujuk.supervise import Backoff


def test_restarts_start_fast_double_and_stop_growing_at_the_cap() -> None:
    backoff = Backoff(first_seconds=0.5, cap_seconds=4)
    delays = [backoff.exited("notify", now=float(t)) for t in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.exited("intake", now=5.0) == 0.5  # each process has its own count


def test_five_exits_within_a_minute_are_a_crash_loop_and_old_ones_are_forgotten() -> None:
    backoff = Backoff(window_seconds=60, loop_after=5)
    for t in range(4):
        backoff.exited("audit", now=float(t))
    assert not backoff.looping("audit", now=4.0)
    backoff.exited("audit", now=4.0)
    assert backoff.looping("audit", now=4.0)
    assert not backoff.looping("audit", now=100.0)
    assert backoff.exited("audit", now=100.0) == backoff.first_seconds
