"""Bar charts as server-drawn SVG geometry (no script), from the monitoring figures. The
template draws the bars; each chart also has a table with the same numbers."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

BAR_HEIGHT = 22
GAP = 8
LABEL_WIDTH = 130
PLOT_WIDTH = 200
VALUE_WIDTH = 64


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    y: int
    width: float


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: tuple[Bar, ...]
    label_width: int = LABEL_WIDTH
    plot_width: int = PLOT_WIDTH

    @property
    def width(self) -> int:
        return self.label_width + self.plot_width + VALUE_WIDTH

    @property
    def height(self) -> int:
        return max(1, len(self.bars)) * (BAR_HEIGHT + GAP) + GAP

    @property
    def bar_height(self) -> int:
        return BAR_HEIGHT


def bar_chart(
    title: str, rows: Sequence[tuple[str, float]], written: Callable[[float], str] = str
) -> BarChart:
    """Bars scaled to the largest value; a zero value draws no bar but keeps its row.
    ``written``: how a value is shown beside its bar (in the page's language)."""
    top = max((value for _, value in rows), default=0) or 1
    bars = tuple(
        Bar(
            label=label,
            value=value,
            text=written(value),
            y=GAP + index * (BAR_HEIGHT + GAP),
            width=round(PLOT_WIDTH * value / top, 1),
        )
        for index, (label, value) in enumerate(rows)
    )
    return BarChart(title, bars)
