"""What the page draws of a histogram and of the top errors: geometry, words and links.

The chart is an SVG the server writes (templates/_chart.html), so it works without
JavaScript and in the embed, under a Content-Security-Policy that allows no inline style:
sizes are SVG attributes, colours are classes of the stylesheet. Each bar is a link that
narrows the list to its bucket, with its numbers in words as its tooltip and label; the
same numbers are a table for screen readers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.filters import STATUSES, TaskFilter
from app.query import Bucket, ErrorGroup, Histogram
from app.query.histogram import DAY, HOUR, MINUTE

# The SVG's own units: each bar has a slot this wide, the plot is PLOT_HEIGHT tall; the
# drawing stretches to the width of the page.
SLOT_WIDTH = 10
BAR_WIDTH = 8
PLOT_HEIGHT = 100
# A status with tasks in a bar is at least this tall, so that one task still shows.
MIN_SEGMENT = 1.5
# Bottom to top.
STACK_ORDER = ("completed", "failed", "cancelled", "running", "queued")
UrlFor = Callable[..., str]


@dataclass(frozen=True)
class Segment:
    """One status's part of a bar."""

    status: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One bucket as drawn: where, how tall per status, its words and its link."""

    index: int
    x: float
    segments: list[Segment]
    text: str
    label: str
    counts: dict[str, int]
    total: int
    url: str | None


@dataclass(frozen=True)
class Chart:
    """The chart of the matching tasks: bars, a caption, the axis' labels and the legend."""

    bars: list[Bar]
    width: int
    caption: str
    axis: list[str]
    statuses: tuple[str, ...]


def step_text(seconds: int) -> str:
    """ "hour", "3 hours", "day", "15 minutes": one bucket's length in words."""
    for unit, name in ((DAY, "day"), (HOUR, "hour"), (MINUTE, "minute")):
        if seconds % unit == 0:
            count = seconds // unit
            return name if count == 1 else f"{count} {name}s"
    return f"{seconds} seconds"


def bucket_label(start: datetime, end: datetime, step: int) -> str:
    """ "Tue 24 Nov 14:00 to 15:00", "Tue 24 Nov 2026", "05 Nov 2026 to 10 Nov 2026", each
    "to" an en dash."""
    if step < DAY:
        return f"{start:%a %d %b %H:%M}\N{EN DASH}{end:%H:%M}"
    if step == DAY and end - start == timedelta(days=1):
        return f"{start:%a %d %b %Y}"
    return f"{start:%d %b %Y} \N{EN DASH} {end:%d %b %Y}"


def axis_label(moment: datetime, step: int) -> str:
    """A short label under the axis."""
    return f"{moment:%a %d %b %H:%M}" if step < DAY else f"{moment:%d %b %Y}"


def counts_text(counts: dict[str, int], labels: dict[str, str]) -> str:
    """ "12 completed, 3 failed", or "no tasks"."""
    parts = [f"{counts[s]:,} {labels[s].lower()}" for s in STATUSES if counts[s]]
    return ", ".join(parts) or "no tasks"


def stacked(bucket: Bucket, tallest: int) -> list[Segment]:
    """The bar's segments, bottom to top, scaled so the tallest bar fills the plot."""
    segments, top = [], float(PLOT_HEIGHT)
    for status in STACK_ORDER:
        count = bucket.counts[status]
        if not count:
            continue
        height = max(MIN_SEGMENT, PLOT_HEIGHT * count / tallest)
        top -= height
        segments.append(Segment(status, count, round(top, 2), round(height, 2)))
    return segments


def build_chart(
    histogram: Histogram,
    task_filter: TaskFilter,
    url: UrlFor,
    labels: dict[str, str],
) -> Chart | None:
    """The chart of a histogram; `url(filter, **changes)` makes each bar's link."""
    window = histogram.window
    if window is None or not histogram.buckets:
        return None
    tallest = max(histogram.tallest, 1)
    bars = []
    for index, bucket in enumerate(histogram.buckets):
        label = bucket_label(bucket.start, bucket.end, window.step)
        narrowed = url(
            task_filter.first_page, created_after=bucket.start, created_before=bucket.end
        )
        bars.append(
            Bar(
                index=index,
                x=index * SLOT_WIDTH + (SLOT_WIDTH - BAR_WIDTH) / 2,
                segments=stacked(bucket, tallest),
                text=f"{label}: {counts_text(bucket.counts, labels)}",
                label=label,
                counts=bucket.counts,
                total=bucket.total,
                url=narrowed if bucket.total else None,
            )
        )
    first, last = histogram.buckets[0], histogram.buckets[-1]
    caption = (
        f"Tasks created per {step_text(window.step)}, "
        f"{bucket_label(first.start, last.end, DAY * 2)} (UTC): {histogram.total:,} in all"
    )
    middle = histogram.buckets[len(histogram.buckets) // 2].start
    axis = [axis_label(moment, window.step) for moment in (first.start, middle, last.end)]
    return Chart(bars, len(bars) * SLOT_WIDTH, caption, axis, STATUSES)


@dataclass(frozen=True)
class ErrorLink:
    """One group of the top errors panel, with the link that lists its tasks."""

    group: ErrorGroup
    url: str
    types: str


def error_links(
    groups: list[ErrorGroup], task_filter: TaskFilter, url: UrlFor, type_labels: dict[str, str]
) -> list[ErrorLink]:
    """The panel's rows: each group's words and the list of exactly its tasks."""
    return [
        ErrorLink(
            group,
            url(task_filter.first_page, error_group=group.key),
            ", ".join(type_labels[t] for t in group.task_types),
        )
        for group in groups
    ]
