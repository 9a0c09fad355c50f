"""Small time-series charts as inline SVG: pure functions from per-minute points to shapes.

The page draws them with no script and no library; the live page updates the same attributes
from the overview it is pushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The drawing box every chart uses (the SVG scales it to its container).
WIDTH = 300
HEIGHT = 60


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: a title, its polyline, the filled area under it, and its latest/peak values."""

    key: str
    title: str
    line: str
    area: str
    latest: int
    peak: int

    def to_json(self) -> dict[str, Any]:
        """What the live page needs to redraw it."""
        return {"key": self.key, "line": self.line, "area": self.area, "latest": self.latest,
                "peak": self.peak}  # fmt: skip


def chart(key: str, title: str, values: Sequence[int]) -> Chart:
    """Scale ``values`` (oldest first) into the drawing box; the peak touches the top."""
    peak = max(values, default=0)
    n = max(1, len(values) - 1)
    points = []
    for i, v in enumerate(values):
        x = round(i * WIDTH / n, 1)
        y = round(HEIGHT - 2 - (v / peak) * (HEIGHT - 6), 1) if peak else HEIGHT - 2
        points.append(f"{x},{y}")
    line = " ".join(points)
    area = f"0,{HEIGHT} {line} {WIDTH},{HEIGHT}" if points else ""
    return Chart(key, title, line, area, values[-1] if values else 0, peak)


def overview_charts(points: Sequence[dict[str, int]]) -> list[Chart]:
    """Throughput, failures and waiting jobs per minute over the series given."""
    return [
        chart("done", "Processed / min", [p.get("done", 0) for p in points]),
        chart("failed", "Failed / min", [p.get("failed", 0) for p in points]),
        chart("depth", "Waiting (sampled / min)", [p.get("depth", 0) for p in points]),
    ]


__all__ = ["HEIGHT", "WIDTH", "Chart", "chart", "overview_charts"]
