"""A bar graph of byte rates over time, newest on the right, anchored at zero.

Textual's Sparkline scales between the minimum and the maximum of its data, so a steady
1 Gbit/s looks like no traffic; this one starts at zero, can be several lines high (eight
steps per line), and puts one column per ``step`` seconds aligned to the wall clock, so the
bars do not shimmer as time moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

BARS = "▁▂▃▄▅▆▇█"


def columns(
    values: Sequence[float], end_second: int | None, width: int, step: int
) -> list[float | None]:
    """Mean of each ``step``-second bucket, oldest first, exactly ``width`` long; ``None``
    where there is no data yet. ``values[-1]`` is the rate at ``end_second``."""
    if width <= 0:
        return []
    out: list[float | None] = [None] * width
    if not values or end_second is None:
        return out
    sums = [0.0] * width
    counts = [0] * width
    last_bucket = end_second // step
    count = len(values)
    # Walk from the newest value back, stopping once past the leftmost column.
    for back in range(count):
        second = end_second - back
        column = width - 1 - (last_bucket - second // step)
        if column < 0:
            break
        sums[column] += values[count - 1 - back]
        counts[column] += 1
    for column in range(width):
        if counts[column]:
            out[column] = sums[column] / counts[column]
    return out


def render_bars(
    data: Sequence[float | None], height: int, bar: Style, empty: Style, scale: float | None = None
) -> Text:
    """``height`` lines of block characters; zero shows as a faint baseline, no data as
    blank, any traffic as at least one eighth of a line."""
    height = max(1, height)
    levels = 8 * height
    top = scale if scale is not None else max((v for v in data if v), default=0.0)
    top = top or 1.0
    filled = [
        None if v is None else (0 if v <= 0 else max(1, min(levels, math.ceil(v / top * levels))))
        for v in data
    ]
    text = Text(no_wrap=True, overflow="crop")
    for row in reversed(range(height)):
        for level in filled:
            if level is None:
                text.append(" ")
            elif level == 0:
                text.append("▁" if row == 0 else " ", empty)
            else:
                fill = level - 8 * row
                if fill >= 8:
                    text.append("█", bar)
                elif fill > 0:
                    text.append(BARS[fill - 1], bar)
                else:
                    text.append(" ")
        if row:
            text.append("\n")
    return text


class RateGraph(Widget):
    """Rates over the last ``window`` seconds or more; one column per ``step`` seconds."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"rate-graph--bar", "rate-graph--empty"}

    DEFAULT_CSS = """
    RateGraph {
        height: 1;
        width: 1fr;
    }
    RateGraph > .rate-graph--bar {
        color: $primary;
    }
    RateGraph > .rate-graph--empty {
        color: $foreground 25%;
    }
    """

    def __init__(
        self, *, window: int = 120, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.window = window
        self._values: Sequence[float] = ()
        self._end: int | None = None
        self._drawn: tuple[object, ...] | None = None

    def step(self, width: int | None = None) -> int:
        width = self.size.width if width is None else width
        return max(1, math.ceil(self.window / max(1, width)))

    def span(self) -> int:
        """Seconds covered by the whole width."""
        return self.size.width * self.step()

    def plot(self, values: Sequence[float], end_second: int | None) -> None:
        self._values = values
        self._end = end_second
        # Repaint only when a column changed: an idle graph, all zeros, stays as it is.
        width = self.size.width
        drawn = (width, self.size.height, *columns(values, end_second, width, self.step(width)))
        if drawn != self._drawn:
            self._drawn = drawn
            self.refresh()

    def render(self) -> Text:
        width, height = self.size
        data = columns(self._values, self._end, width, self.step(width))
        return render_bars(
            data,
            height,
            self.get_component_rich_style("rate-graph--bar", partial=True),
            self.get_component_rich_style("rate-graph--empty", partial=True),
        )
