"""The matching tasks per bucket of created_at and per status: the chart above the list.

The window is the filter's created_at range. Where the filter leaves a side open, the
window ends now (the bucket holding now is the last) and starts `span` earlier: the time
window's hours (`within_hours`) or seven days. Buckets are whole minutes, hours or days
counted from 1970-01-01 UTC: hourly for windows of 24 to 60 hours, daily for 24 to 60 days,
else the smallest of `STEPS` that draws the window in at most 60 bars; so 24 to 60 bars
whenever the window is over 24 minutes (a week: 56 bars of 3 hours).

A filter of types, statuses and time alone is counted from the hourly summary the database
keeps (app/query/rollup.py): a week is at most 168 rows per type and status, however many
tasks it holds. Buckets of an hour or more begin on whole hours, so the summary serves every
whole hour of the window; what it cannot serve is read from the tables: an edge of a
"Created between…" range inside an hour, the hours before a time window's start (there a
task matches only if still active or finished since), and every other filter. The tables
are read as one range of an index per table, and how they are counted is one of the engine
differences (see `engine_shape`). A search of words with types, statuses and time alone is
counted from its index, from a time window's start on: on SQLite FTS5's matches between
rowids (app/query/created_order.py), on PostgreSQL and MariaDB a range of the words tables'
(word, status, created_at, id) key per status.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.filters import TaskFilter, format_timestamp
from app.models import UTCDateTime, sql_constant
from app.query.created_order import (
    first_rowids,
    out_of_order_template,
    rowid_bars_template,
)
from app.query.engines import (
    Executor,
    NotIndexed,
    bucket_counts,
    dialect_name,
    engine_shape,
)
from app.query.lookups import looked_up_first
from app.query.rollup import hourly_buckets, summary_serves
from app.query.search import words_matches
from app.query.shapes import (
    STATUSES,
    Shape,
    branch_conditions,
    chosen_models,
    reads_each_task,
    shape_of,
    tables_with_matches,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE, HOUR, DAY = 60, 3600, 86400
# Bucket sizes in seconds: each at most 2.5 times the one before, so the first that gives
# at most MAX_BARS gives more than MAX_BARS / 2.5 = 24. Past the last, whole years.
STEPS = (
    *(minutes * MINUTE for minutes in (1, 2, 5, 10, 15, 30)),
    *(hours * HOUR for hours in (1, 2, 3, 6, 12)),
    *(days * DAY for days in (1, 2, 5, 10, 15, 30, 60, 90, 180, 365)),
)
MIN_BARS, MAX_BARS = 24, 60
# Hours and days read best: chosen whenever they give MIN_BARS to MAX_BARS bars.
PREFERRED_STEPS = (HOUR, DAY)
DEFAULT_SPAN = timedelta(days=7)


def floor_to(moment: datetime, step: int) -> datetime:
    """The start of the bucket of `step` seconds that holds `moment`."""
    size = timedelta(seconds=step)
    return EPOCH + size * ((moment - EPOCH) // size)


@dataclass(frozen=True)
class ChartWindow:
    """Which tasks the chart counts (created in [lower, upper)) and in which buckets."""

    lower: datetime
    upper: datetime
    step: int
    bars: int

    @property
    def grid_start(self) -> datetime:
        return floor_to(self.lower, self.step)

    def bucket(self, index: int) -> tuple[datetime, datetime]:
        """The created_at range of one bar: its bucket, within the window."""
        start = self.grid_start + timedelta(seconds=self.step * index)
        return max(start, self.lower), min(start + timedelta(seconds=self.step), self.upper)

    def edges(self) -> list[datetime]:
        """Where the bars meet, from the window's lower bound to its upper one."""
        return [self.bucket(index)[0] for index in range(self.bars)] + [self.upper]


def bars_between(lower: datetime, end: datetime, step: int) -> int:
    """How many buckets of `step` seconds [lower, end) touches."""
    last = floor_to(end - timedelta(microseconds=1), step)
    return (last - floor_to(lower, step)) // timedelta(seconds=step) + 1


def bucket_seconds(lower: datetime, end: datetime) -> int:
    """The step [lower, end) is drawn in: an hour or a day where that gives MIN_BARS to
    MAX_BARS bars, else the smallest step that gives at most MAX_BARS."""
    for step in PREFERRED_STEPS:
        if MIN_BARS <= bars_between(lower, end, step) <= MAX_BARS:
            return step
    for step in STEPS:
        if bars_between(lower, end, step) <= MAX_BARS:
            return step
    years = 1
    while bars_between(lower, end, years * STEPS[-1]) > MAX_BARS:
        years += 1
    return years * STEPS[-1]


def chart_window(task_filter: TaskFilter, now: datetime) -> ChartWindow | None:
    """The window and buckets a filter is charted in; None when it lies wholly after now."""
    after, before = task_filter.created_after, task_filter.created_before
    span = DEFAULT_SPAN
    if task_filter.within_hours is not None:
        span = timedelta(hours=task_filter.within_hours)
    closed = before is not None and before <= now
    end = before if closed and before is not None else now + timedelta(microseconds=1)
    if after is not None and after >= end:
        return None
    start = after if after is not None else max(end - span, EPOCH)
    step = bucket_seconds(start, end)
    lower = start if after is not None else floor_to(start, step)
    upper = end
    if not closed:
        # The bucket holding now is drawn whole, so its link stays the same all hour.
        upper = floor_to(now, step) + timedelta(seconds=step)
        upper = min(upper, before) if before is not None else upper
    return ChartWindow(lower, upper, step, bars_between(lower, upper, step))


@dataclass(frozen=True)
class Bucket:
    """One bar: its created_at range and how many matching tasks of each status it holds."""

    start: datetime
    end: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        """A bar as `/tasks/histogram` writes it."""
        return {
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "counts": self.counts,
            "total": self.total,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bucket:
        """Back from `as_json`."""
        start, end = (datetime.fromisoformat(data[side]) for side in ("start", "end"))
        return cls(start, end, dict(data["counts"]))


@dataclass(frozen=True)
class Histogram:
    """The bars of a filter's chart, oldest first (none when the window is in the future)."""

    window: ChartWindow | None
    buckets: list[Bucket]

    @property
    def total(self) -> int:
        return sum(bucket.total for bucket in self.buckets)

    @property
    def tallest(self) -> int:
        return max((bucket.total for bucket in self.buckets), default=0)

    def as_json(self) -> dict[str, Any]:
        """What `/tasks/histogram` answers."""
        window = self.window
        return {
            "start": format_timestamp(window.lower) if window else None,
            "end": format_timestamp(window.upper) if window else None,
            "bucket_seconds": window.step if window else None,
            "buckets": [bucket.as_json() for bucket in self.buckets],
            "total": self.total,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        """Back from `as_json` (a chart kept in a shared cache travels as JSON)."""
        buckets = [Bucket.from_json(bucket) for bucket in data["buckets"]]
        if data["start"] is None:
            return cls(None, buckets)
        lower, upper = (datetime.fromisoformat(data[side]) for side in ("start", "end"))
        return cls(ChartWindow(lower, upper, data["bucket_seconds"], len(buckets)), buckets)


def chart_shape(task_filter: TaskFilter, now: datetime) -> tuple[Shape, dict[str, Any]]:
    """The filter's shape without its created_at bounds: the window's edges replace them."""
    shape, values = shape_of(task_filter.first_page, now)
    for name in ("after", "before", "cursor_at", "cursor_id"):
        values.pop(name, None)
    return replace(shape, after=False, before=False, cursor=False), values


def status_parts(shape: Shape) -> list[Shape]:
    """One shape per status the filter reads: each is a range of its status's index."""
    return [replace(shape, statuses=(status,)) for status in shape.statuses or STATUSES]


def created_between(
    model: Any, lower: str, upper: str, by_key: bool = False
) -> list[sa.ColumnElement[bool]]:
    """created_at in [:lower, :upper); tested on rows read by key if `by_key` (see
    `NotIndexed`)."""
    created = NotIndexed(model.created_at) if by_key else model.created_at
    return [created >= sa.bindparam(lower), created < sa.bindparam(upper)]


def bars_table(bars: int) -> sa.CTE:
    """The bars as rows (bar, lower, upper) from :edge_0 … :edge_n, written once in the
    statement however many tables, statuses and tags each bar's counts repeat over (SQLite
    takes at most 32,766 parameters in a statement)."""
    rows = [
        sa.select(
            sql_constant(index).label("bar"),
            sa.bindparam(f"edge_{index}", type_=UTCDateTime()).label("lower"),
            sa.bindparam(f"edge_{index + 1}", type_=UTCDateTime()).label("upper"),
        )
        for index in range(bars)
    ]
    return sa.union_all(*rows).cte("bars")


@functools.lru_cache(maxsize=256)
def ranges_template(shape: Shape, bars: int) -> sa.CompoundSelect:
    """(task_type, status, bar, tasks) rows: one COUNT(*) per bar, table and status, each a
    range of the status's index between the bar's edges."""
    edges = bars_table(bars)
    members = []
    for model in chosen_models(shape):
        for part in status_parts(shape):
            tasks = (
                sa.select(sa.func.count())
                .select_from(model)
                .where(
                    *branch_conditions(model, part),
                    model.created_at >= edges.c.lower,
                    model.created_at < edges.c.upper,
                )
                .scalar_subquery()
                .label("tasks")
            )
            task_type = sql_constant(model.task_type).label("task_type")
            status = sql_constant(part.statuses[0]).label("status")
            members.append(sa.select(task_type, status, edges.c.bar, tasks).select_from(edges))
    return sa.union_all(*members)


@functools.lru_cache(maxsize=256)
def grouped_template(shape: Shape, step: int) -> sa.CompoundSelect:
    """(task_type, bucket, status, count) rows: each table's window read once, grouped."""
    members = []
    for model in chosen_models(shape):
        gathered = model.task_type in shape.actor_gathered
        members.append(
            bucket_counts(model.task_type, model.created_at, model.status, step)
            .select_from(model)
            .where(
                *branch_conditions(model, shape),
                *created_between(model, "chart_lower", "chart_upper", by_key=gathered),
            )
        )
    return sa.union_all(*members)


def zero_counts(window: ChartWindow) -> list[dict[str, int]]:
    """A count of 0 for each status of each bar."""
    return [dict.fromkeys(STATUSES, 0) for _ in range(window.bars)]


def add_grouped_rows(
    executor: Executor,
    statement: sa.CompoundSelect,
    values: dict[str, Any],
    window: ChartWindow,
    counts: list[dict[str, int]],
) -> list[dict[str, int]]:
    """Add the (bucket, status, tasks) rows a grouped statement reads over the window's
    bounds (:chart_lower, :chart_upper) to `counts`, each to its bar."""
    bounds = {"chart_lower": window.lower, "chart_upper": window.upper}
    for row in executor.execute(statement, values | bounds):
        counts[bucket_index(row.bucket, window)][row.status] += row.tasks
    return counts


def bucket_index(bucket: Any, window: ChartWindow) -> int:
    """Which bar a grouped row's bucket start (a datetime or epoch seconds) is."""
    if not isinstance(bucket, datetime):
        bucket = EPOCH + timedelta(seconds=int(bucket))
    elif bucket.tzinfo is None:
        bucket = bucket.replace(tzinfo=UTC)
    return (bucket - window.grid_start) // timedelta(seconds=window.step)


def table_counts(
    executor: Executor, shape: Shape, values: dict[str, Any], window: ChartWindow
) -> list[dict[str, int]]:
    """Zero-filled counts per status for each bar, read from the tables the engine's way."""
    counts = zero_counts(window)
    # An actor's listed or gathered tasks are at most ten thousand rows a table to group,
    # where each of the ranges' hundreds of counts would bind or gather them again.
    ranges = engine_shape(dialect_name(executor)).histogram == "ranges"
    if ranges and not (shape.actor_listed or shape.actor_gathered):
        edges = {f"edge_{i}": edge for i, edge in enumerate(window.edges())}
        for row in executor.execute(ranges_template(shape, window.bars), values | edges):
            counts[row.bar][row.status] += row.tasks
        return counts
    return add_grouped_rows(executor, grouped_template(shape, window.step), values, window, counts)


def hour_number(moment: datetime) -> int:
    """Whole hours from 1970-01-01 UTC to the hour that holds `moment` (the summary's key)."""
    return (moment - EPOCH) // timedelta(hours=1)


def first_whole_hour(moment: datetime) -> int:
    """The number of the first hour that starts at or after `moment`."""
    hour = hour_number(moment)
    return hour if EPOCH + timedelta(hours=hour) == moment else hour + 1


def summary_hours(shape: Shape, values: dict[str, Any], window: ChartWindow) -> range | None:
    """The hours (by number) of the window the summary counts, or None if it serves none.

    Whole hours only, and none before a time window's start; bars of minutes are not
    drawn from hours at all. Nor are the hours up to 1970-01-01 01:00: SQLite and MariaDB
    round a moment before 1970 towards zero, into hour 0.
    """
    if window.step % HOUR or not summary_serves(shape):
        return None
    lower = max(window.lower, values.get("since", EPOCH), EPOCH + timedelta(hours=1))
    hours = range(first_whole_hour(lower), hour_number(window.upper))
    return hours or None


def add_counts(into: list[dict[str, int]], part: list[dict[str, int]], offset: int) -> None:
    """Add the counts of `part`'s bars to those of `into`, its first bar at `offset`."""
    for index, bar in enumerate(part):
        for status, tasks in bar.items():
            into[offset + index][status] += tasks


def part_of(window: ChartWindow, lower: datetime, upper: datetime) -> ChartWindow:
    """The bars of `window` between two moments, drawn as `window` draws them."""
    return ChartWindow(lower, upper, window.step, bars_between(lower, upper, window.step))


def first_bar(window: ChartWindow, part: ChartWindow) -> int:
    """Which bar of `window` the first bar of `part` is."""
    return (part.grid_start - window.grid_start) // timedelta(seconds=window.step)


def where_found(shape: Shape) -> Shape:
    """The shape without the tables where no task holds the search's words."""
    return replace(shape, task_types=tables_with_matches(shape))


def created_order_counts(
    executor: Executor, shape: Shape, values: dict[str, Any], window: ChartWindow
) -> list[dict[str, int]]:
    """Zero-filled counts per status for each bar, from the search index between rowids
    (app/query/created_order.py), and the tasks kept apart from their rows."""
    counts = zero_counts(window)
    if not (shape := where_found(shape)).task_types:
        return counts
    edges = {f"edge_{index}": edge for index, edge in enumerate(window.edges())}
    firsts = first_rowids(executor, shape, edges)
    for row in executor.execute(rowid_bars_template(shape, window.bars), values | firsts):
        counts[row.bar][row.status] += row.tasks
    kept_apart = out_of_order_template(shape, window.step)
    return add_grouped_rows(executor, kept_apart, values, window, counts)


@functools.lru_cache(maxsize=256)
def words_template(shape: Shape, step: int) -> sa.CompoundSelect:
    """(task_type, bucket, status, tasks) rows: each table's matches created in
    [:chart_lower, :chart_upper), grouped, from its words table alone: a range of the
    (word, status, created_at, id) key per status (revision 0016)."""
    members = []
    for model in chosen_models(shape):
        matches = words_matches(model, shape.search_words, shape.search_unpaired)
        first = matches.first
        statuses = [sql_constant(status) for status in shape.statuses or STATUSES]
        members.append(
            bucket_counts(model.task_type, first.c.created_at, first.c.status, step)
            .select_from(matches.source)
            .where(
                *matches.conditions,
                first.c.status.in_(statuses),
                first.c.created_at >= sa.bindparam("chart_lower", type_=UTCDateTime()),
                first.c.created_at < sa.bindparam("chart_upper", type_=UTCDateTime()),
            )
        )
    return sa.union_all(*members)


def words_counts(
    executor: Executor, shape: Shape, values: dict[str, Any], window: ChartWindow
) -> list[dict[str, int]]:
    """Zero-filled counts per status for each bar, from the words tables alone."""
    counts = zero_counts(window)
    if not (shape := where_found(shape)).task_types:
        return counts
    return add_grouped_rows(executor, words_template(shape, window.step), values, window, counts)


def index_serves(shape: Shape, dialect: str) -> bool:
    """Whether a search's index counts the chart's tasks without their rows: words with
    types, statuses and time alone, in SQLite's FTS5 between rowids or in the words tables
    of PostgreSQL and MariaDB (those a term longer than they hold cannot use)."""
    if reads_each_task(shape) or shape.search_ids or not shape.search_phrases:
        return False
    index = engine_shape(dialect).search_index
    return index == "fts5" or (index == "words" and bool(shape.search_words))


def served_apart(
    executor: Executor, shape: Shape, values: dict[str, Any], window: ChartWindow
) -> tuple[datetime, datetime, Callable[..., list[dict[str, int]]]] | None:
    """The part of the window counted without reading each task's row, if any, and how:
    whole hours from the hourly summary, or from a time window's start on a search's
    matches from its index. Only where every task created matches the time window."""
    hours = summary_hours(shape, values, window)
    if hours is not None:
        lower, upper = (EPOCH + timedelta(hours=hour) for hour in (hours.start, hours.stop))
        return lower, upper, summary_counts
    dialect = dialect_name(executor)
    if not index_serves(shape, dialect):
        return None
    lower = min(max(window.lower, values.get("since", window.lower)), window.upper)
    if lower == window.upper:
        return None
    return lower, window.upper, created_order_counts if dialect == "sqlite" else words_counts


def summary_counts(
    executor: Executor, shape: Shape, values: dict[str, Any], window: ChartWindow
) -> list[dict[str, int]]:
    """Zero-filled counts per status for each bar of whole hours, from the hourly summary."""
    counts = zero_counts(window)
    per_bucket = window.step // HOUR
    first_bucket = (window.grid_start - EPOCH) // timedelta(seconds=window.step)
    start, stop = hour_number(window.lower), hour_number(window.upper)
    for bucket, status, tasks in hourly_buckets(executor, shape, start, stop, per_bucket):
        counts[bucket - first_bucket][status] += tasks
    return counts


def count_buckets(
    executor: Executor, shape: Shape, values: dict[str, Any], window: ChartWindow
) -> list[dict[str, int]]:
    """Zero-filled counts per status for each bar: the part `served_apart` serves its way,
    the rest from the tables."""
    served = served_apart(executor, shape, values, window)
    if served is None:
        return table_counts(executor, shape, values, window)
    counts = zero_counts(window)
    lower, upper, serve = served
    parts = [(window.lower, lower, table_counts), (lower, upper, serve)]
    for start, end, count in [*parts, (upper, window.upper, table_counts)]:
        if start < end:
            part = part_of(window, start, end)
            found = count(executor, shape=shape, values=values, window=part)
            add_counts(counts, found, first_bar(window, part))
    return counts


@looked_up_first
def task_histogram(executor: Executor, task_filter: TaskFilter, now: datetime) -> Histogram:
    """How many tasks match the filter in each bucket of its window, by status."""
    window = chart_window(task_filter, now)
    if window is None:
        return Histogram(None, [])
    shape, values = chart_shape(task_filter, now)
    counts = count_buckets(executor, shape, values, window)
    buckets = [Bucket(*window.bucket(index), counts[index]) for index in range(window.bars)]
    return Histogram(window, buckets)
