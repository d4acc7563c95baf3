"""The months a period reads from its roll-ups and the ranges it reads from its rows
(routing.stats.whole_months and uncovered): together they are the period, exactly, in any
of Indonesia's zones and one of a quarter-hour offset."""

import itertools
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from routing.stats import period_bounds, uncovered, whole_months

ZONES = ("Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura", "Asia/Kathmandu", "UTC")


def test_a_year_is_its_twelve_months_and_a_period_inside_one_month_has_none() -> None:
    start, end = period_bounds(date(2025, 1, 1), date(2025, 12, 31), "Asia/Jakarta")
    months = whole_months(start, end, "Asia/Jakarta")
    assert [since.strftime("%Y-%m") for since, _ in months] == [
        f"2025-{month:02d}" for month in range(1, 13)
    ]
    assert uncovered(start, end, months) == []
    start, end = period_bounds(date(2025, 2, 1), date(2025, 2, 27), "Asia/Jakarta")
    assert whole_months(start, end, "Asia/Jakarta") == []
    assert uncovered(start, end, []) == [(start, end)]


def test_a_period_from_mid_month_reads_its_edges_from_the_rows() -> None:
    start, end = period_bounds(date(2025, 1, 15), date(2025, 3, 10), "Asia/Jakarta")
    months = whole_months(start, end, "Asia/Jakarta")
    zone = ZoneInfo("Asia/Jakarta")
    february = (datetime(2025, 2, 1, tzinfo=zone), datetime(2025, 3, 1, tzinfo=zone))
    assert months == [february]
    assert uncovered(start, end, months) == [(start, february[0]), (february[1], end)]


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    st.integers(min_value=0, max_value=800),
    st.sampled_from(ZONES),
    st.sets(st.integers(min_value=0, max_value=30)),
)
def test_the_months_and_the_ranges_around_them_are_the_period_exactly(
    first: date, days: int, zone: str, dropped: set[int]
) -> None:
    start, end = period_bounds(first, first + timedelta(days=days), zone)
    months = whole_months(start, end, zone)
    local = ZoneInfo(zone)
    for since, until in months:
        assert start <= since < until <= end
        opening = since.astimezone(local)
        assert (opening.day, opening.hour, opening.minute) == (1, 0, 0)
        closing = until.astimezone(local)
        assert (closing.day, closing.hour, closing.minute) == (1, 0, 0)
        assert (closing.year * 12 + closing.month) - (opening.year * 12 + opening.month) == 1
    for (_, until), (since, _) in itertools.pairwise(months):
        assert until == since  # consecutive
    # No whole month left out: the month before the first and the one after the last (or,
    # with none, the first that starts in the period) do not lie wholly in it.
    if months:
        assert month_of(months[0][0], local, -1)[0] < start
        assert month_of(months[-1][0], local, +1)[1] > end
    else:
        candidate = month_of(start, local, 0)
        if candidate[0] < start:
            candidate = month_of(candidate[0], local, +1)
        assert candidate[1] > end
    # Any of them rolled up (some not, e.g. a write in flight): the rest is read from the rows,
    # and the two together are the period, in order, without a gap or an overlap.
    rolled = [month for index, month in enumerate(months) if index not in dropped]
    pieces = sorted(rolled + uncovered(start, end, rolled))
    if start == end:
        assert pieces == []
        return
    assert (pieces[0][0], pieces[-1][1]) == (start, end)
    for (_, until), (since, _) in itertools.pairwise(pieces):
        assert until == since


def month_of(at: datetime, zone: ZoneInfo, step: int) -> tuple[datetime, datetime]:
    """The calendar month of ``zone`` ``step`` months from the one holding ``at``."""
    local = at.astimezone(zone)
    index = local.year * 12 + local.month - 1 + step
    opening = datetime(index // 12, index % 12 + 1, 1, tzinfo=zone)
    index += 1
    return opening, datetime(index // 12, index % 12 + 1, 1, tzinfo=zone)
