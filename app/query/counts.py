"""Counts: the capped and exact totals of a filter, and the facets by status and type."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, TASK_TYPES, Status, TaskModel, sql_constant
from app.query.actors import kept_counts, looked_up, walked_tables
from app.query.engines import EngineShape, Executor, SearchIndex, dialect_name, engine_shape
from app.query.lookups import looked_up_first
from app.query.rollup import (
    HoursRead,
    Pair,
    every_hour,
    newest_hours,
    summary_counts_every_hour,
)
from app.query.rows import list_columns
from app.query.search import counted_from_index, index_count_members
from app.query.shapes import (
    ACTIVE,
    STATUSES,
    Shape,
    _integer,
    branch_conditions,
    chosen_models,
    shape_of,
    split_by_window,
    tables_with_matches,
)

# Totals are exact up to here, then reported as "at least this many" unless asked for exact.
TOTAL_EXACT_UP_TO = 10_000
# A count from the hourly summary reads this many of each pair's newest hours first, and
# sixteen times more each round until it is past the threshold or has read every hour.
SUMMARY_FIRST_HOURS = 64


@dataclass(frozen=True)
class Total:
    """How many tasks match: exact ("eq") or a lower bound ("gte")."""

    value: int
    relation: Literal["eq", "gte"]

    @classmethod
    def capped(cls, found: int) -> Total:
        """`found` by the product's one rule: exact up to the threshold, "at least" beyond."""
        if found > TOTAL_EXACT_UP_TO:
            return cls(TOTAL_EXACT_UP_TO, "gte")
        return cls(found, "eq")

    def as_json(self) -> dict[str, Any]:
        """The shape scripts read, in `/tasks` and `/tasks/counts` alike."""
        return {"value": self.value, "relation": self.relation}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Total:
        """Back from `as_json`."""
        return cls(int(data["value"]), data["relation"])


@dataclass(frozen=True)
class Facets:
    """Counts by status and by type, each with every filter but its own dimension applied,
    and how many of the matches are stalled (the filter with `stalled=true`)."""

    status: dict[str, Total]
    task_type: dict[str, Total]
    total: Total
    stalled: Total

    def as_json(self) -> dict[str, Any]:
        """What `/tasks/counts` answers."""
        return {
            "status": {name: total.as_json() for name, total in self.status.items()},
            "task_type": {name: total.as_json() for name, total in self.task_type.items()},
            "total": self.total.as_json(),
            "stalled": self.stalled.as_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Facets:
        """Back from `as_json` (counts kept in a shared cache travel as JSON)."""
        return cls(
            status={name: Total.from_json(total) for name, total in data["status"].items()},
            task_type={name: Total.from_json(total) for name, total in data["task_type"].items()},
            total=Total.from_json(data["total"]),
            stalled=Total.from_json(data["stalled"]),
        )


def count_members(
    shape: Shape, column: sa.ColumnElement[Any], index: SearchIndex = None
) -> list[sa.Select[Any]]:
    """`column` over each table's matches, the time window split so each reads one range.

    With a search `index` (SQLite's FTS5, PostgreSQL's words tables), a search by words,
    types and statuses alone is counted in it without the tables (see `counted_from_index`),
    and in the words tables a stalled count reads the running tasks holding the words (see
    `running_matches`) where `stalled_matches_first`.
    The tables where the lookups found no match are left out while any other is read: on
    MariaDB each member is a statement of its own.
    """
    if found := tables_with_matches(shape):
        shape = replace(shape, task_types=found)
    if index == "words" and stalled_matches_first(shape):
        shape = replace(shape, search_running=True)
    if counted_from_index(shape, index):
        return [
            member
            for model in chosen_models(shape)
            for member in index_count_members(
                model,
                shape.statuses,
                column,
                index,
                shape.search_words,
                shape.search_unpaired,
            )
        ]
    return [
        sa.select(column).select_from(model).where(*branch_conditions(model, half))
        for model in chosen_models(shape)
        for half in split_by_window(shape)
    ]


def stalled_matches_first(shape: Shape) -> bool:
    """Whether a stalled count of a search starts from the running tasks holding its words.

    Not beside a tag or an actor, whose own ranges of running tasks are read instead: at a
    million tasks, `q=support tickets&tag=exp-7` has 30 running tasks in the tag's range
    and 1,946 holding the words.
    """
    return bool(shape.stalled and shape.search_words and not shape.tags and not shape.actor)


@functools.lru_cache(maxsize=512)
def capped_count_templates(
    shape: Shape, one_statement: bool, index: SearchIndex = None
) -> tuple[sa.Select[Any], ...]:
    """Counts that stop past the threshold: of the whole union, or one per member.

    In one statement: one more than the threshold if a match lies past it, else the exact
    count. Skipping rows to an offset costs an engine about a third of counting them (on
    SQLite and PostgreSQL, at 10,000 rows), and COALESCE runs the exact count, cheap for a
    small result, only when the probe finds nothing. A search is counted up to one past
    the threshold instead: its members first gather the matches of its words (a list on
    SQLite, a bitmap on PostgreSQL), which the probe and the exact count would each gather
    again. One member at a time: each counts up to :cap rows, the number still wanted.
    """
    members = count_members(shape, sql_constant(1).label("hit"), index)
    if not one_statement:
        return tuple(count_up_to(member, _integer("cap")) for member in members)
    threshold = TOTAL_EXACT_UP_TO
    if shape.search_phrases:
        limited = sa.union_all(*members).limit(sql_constant(threshold + 1))
        return (sa.select(sa.func.count()).select_from(limited.subquery("hits")),)
    past = sa.union_all(*members).limit(sql_constant(1)).offset(sql_constant(threshold))
    probe = sa.select(sql_constant(threshold + 1)).select_from(past.subquery("past"))
    return (sa.select(sa.func.coalesce(probe.scalar_subquery(), exact_total(shape, index))),)


def count_up_to(member: sa.Select[Any], limit: sa.ColumnElement[int]) -> sa.Select[Any]:
    """COUNT(*) of a member's first `limit` rows: a count that stops once it has what it
    needs, each member on its own (MariaDB reads a whole union before its LIMIT)."""
    return sa.select(sa.func.count()).select_from(member.limit(limit).subquery("hits"))


def exact_total(shape: Shape, index: SearchIndex) -> sa.ColumnElement[int]:
    """Every match: a sum of one COUNT(*) per member, the cheapest exact shape."""
    members = count_members(shape, sa.func.count(), index)
    counts = [member.scalar_subquery() for member in members]
    total = counts[0]
    for count in counts[1:]:
        total = total + count
    return total


@functools.lru_cache(maxsize=512)
def exact_count_template(shape: Shape, index: SearchIndex = None) -> sa.Select[Any]:
    """Count every match, whatever it costs."""
    return sa.select(exact_total(shape, index))


def facet_parts(shape: Shape) -> list[Shape]:
    """The exact counts the facets are made of, for one table: one per status."""
    everything = replace(shape, statuses=())
    return [replace(everything, statuses=(status,)) for status in STATUSES]


def facet_member(model: TaskModel, part: Shape) -> sa.Select[Any]:
    """(task_type, status, count): one table's tasks of the part's one status.

    The status is named as a literal: grouping by a column known to be constant still reads
    it from every row, which doubles the cost of a plain COUNT.
    """
    task_type = list_columns(model)[0]
    status = sql_constant(part.statuses[0]).label("status")
    conditions = branch_conditions(model, part)
    return sa.select(task_type, status, sa.func.count()).select_from(model).where(*conditions)


@functools.lru_cache(maxsize=512)
def facet_template(shape: Shape) -> sa.CompoundSelect:
    """Exact counts by (type, status) over every table, with neither of those filters applied."""
    return sa.union_all(
        *(
            facet_member(model, part)
            for model in MODEL_FOR_TYPE.values()
            for part in facet_parts(shape)
        )
    )


@looked_up_first
def count_tasks(executor: Executor, task_filter: TaskFilter, now: datetime) -> Total:
    """How many tasks match, exact up to TOTAL_EXACT_UP_TO unless exact was asked for.

    The capped count reads at most one more row than the threshold (and a small result
    twice), in one statement or one member at a time (see `engine_shape`); a filter of
    types and statuses alone adds up the hourly summary instead (see `summary_totals`),
    unless it asks for queued or running tasks alone, which one capped count reads best,
    and an actor with types and statuses adds up its kept counts (`counted_by_actor`).
    """
    shape, values = shape_of(task_filter.first_page, now)
    engine = engine_shape(dialect_name(executor))
    if task_filter.exact_count:
        exact = exact_count_template(shape, engine.search_index)
        return Total(executor.execute(exact, values).scalar_one(), "eq")
    statuses = shape.statuses or STATUSES
    if counted_by_actor(shape):
        matrix = kept_counts(task_filter)
        return Total.capped(sum(matrix[t, s] for t in shape.task_types for s in statuses))
    if summary_counts_every_hour(shape) and not set(statuses) <= set(ACTIVE):
        pairs = pairs_of(shape.task_types, statuses)
        return summary_totals(executor, {"total": pairs})["total"]
    found = 0
    templates = capped_count_templates(shape, engine.count_in_one_statement, engine.search_index)
    for statement in templates:
        cap = TOTAL_EXACT_UP_TO + 1 - found
        found += executor.execute(statement, {**values, "cap": cap}).scalar_one()
        if found > TOTAL_EXACT_UP_TO:
            break
    return Total.capped(found)


@functools.lru_cache(maxsize=512)
def gathered_facet_template(shape: Shape) -> sa.CompoundSelect:
    """Exact counts by (type, status) of tasks an index hands over (a search's matches, an
    actor's few tasks): one member per table, grouped by status, so that each table's are
    gathered once rather than once a status."""
    everything = replace(shape, statuses=())
    return sa.union_all(
        *(
            sa.select(list_columns(model)[0], model.status, sa.func.count())
            .select_from(model)
            .where(*branch_conditions(model, everything))
            .group_by(model.status)
            for model in MODEL_FOR_TYPE.values()
        )
    )


def count_by_type_and_status(
    executor: Executor, shape: Shape, values: dict[str, Any]
) -> dict[tuple[str, str], int]:
    """Zero-filled exact counts per (type, status), with neither of those filters applied.

    A search on PostgreSQL is grouped by status, its matches gathered once a table (see
    `gathered_facet_template`), and so are an actor's tasks where they are few in every
    table (`actor_bounded`). SQLite reads each status's range of a time window from the
    (status, created_at) index instead (and MariaDB too, testing each row in its words
    tables), which at a million tasks took 11 ms for a day's `"support tickets"` where the
    grouped statement, reading the day whole, took 82.
    """
    matrix = {(t, s): 0 for t in TASK_TYPES for s in STATUSES}
    engine = engine_shape(dialect_name(executor))
    gathered = shape.search_phrases and engine.search_gathers_matches
    template = (
        gathered_facet_template(shape)
        if gathered or actor_bounded(shape)
        else facet_template(shape)
    )
    for task_type, status, tasks in executor.execute(template, values):
        matrix[(task_type, status)] += tasks
    return matrix


@looked_up_first
def count_facets(executor: Executor, task_filter: TaskFilter, now: datetime) -> Facets:
    """Zero-filled counts per status and per type that predict what selecting each gives.

    Each is exact up to TOTAL_EXACT_UP_TO and "at least" that beyond (see `Total.capped`),
    so that a view of ten million tasks costs what one of a hundred thousand does, unless
    the filter asks for exact counts. A filter of types and statuses alone is counted from
    the hourly summary (see `summary_facets`), and an actor's tasks that are few in every
    table are grouped in one read (see `actor_bounded`), unless the kept counts of an actor
    hold them (see `counted_by_actor`). The stalled count reads a range of each table's
    (status, updated_at) index (see `stalled_condition`).
    """
    shape, values = shape_of(task_filter.first_page, now)
    if task_filter.exact_count:
        matrix = count_by_type_and_status(executor, shape, values)
        return facets_from_matrix(executor, task_filter, now, matrix, exact=True)
    if counted_by_actor(shape):
        matrix = dict(kept_counts(task_filter))
        return facets_from_matrix(executor, task_filter, now, matrix, exact=False)
    grouped = grouped_by_status(engine_shape(dialect_name(executor)), shape)
    if grouped or actor_bounded(shape):
        matrix = count_by_type_and_status(executor, shape, values)
        return facets_from_matrix(executor, task_filter, now, matrix, exact=False)
    if summary_counts_every_hour(shape):
        return summary_facets(executor, task_filter, now)
    return capped_facets(executor, task_filter, now)


def grouped_by_status(engine: EngineShape, shape: Shape) -> bool:
    """Whether a search's chips are one statement grouped by status: where its index hands
    over every match before a row is read (`search_gathers_matches`), unless the words are
    counted in an index alone (`counted_from_index`), one capped count per chip. Elsewhere
    a capped count stops at 10,001 where a grouped one reads all."""
    if not shape.search_phrases or not engine.search_gathers_matches:
        return False
    return not counted_from_index(shape, engine.search_index)


def counted_by_actor(shape: Shape) -> bool:
    """Whether the filter is an actor with types and statuses alone, whose counts are sums
    of the actor's kept counts (see app/query/actors.py): exact, and a few rows read, where
    a module's own tasks would be tested one by one for its events (99 ms at a million
    tasks on SQLite)."""
    return shape.actor and summary_counts_every_hour(replace(shape, actor=False))


def actor_bounded(shape: Shape) -> bool:
    """Whether the filter's actor acted on few tasks of every table (listed or gathered by
    id, see app/query/actors.py): at most a few tens of thousands of rows to group at once,
    where ten capped counts would each read the actor's tasks again."""
    bounded = shape.actor_listed + shape.actor_gathered + shape.actor_absent
    return shape.actor and set(bounded) >= set(TASK_TYPES)


def capped_facets(executor: Executor, task_filter: TaskFilter, now: datetime) -> Facets:
    """One capped count per status and one per type, and the total from those.

    A chip needs its own sum to be exact or past the threshold, not every (type, status)
    cell of it: counted whole, each status and each type reads at most 10,001 entries,
    ten counts in all where the 25 cells would read up to 25 times that. Statuses (and
    types) split the matches, so the total is their sum, and past the threshold as soon
    as one of them is.
    """
    first = task_filter.first_page
    status = {s: count_tasks(executor, replace(first, statuses=(s,)), now) for s in STATUSES}
    task_type = {t: count_tasks(executor, replace(first, task_types=(t,)), now) for t in TASK_TYPES}
    return Facets(
        status=status,
        task_type=task_type,
        total=sum_of([status[s] for s in task_filter.statuses or STATUSES]),
        stalled=count_stalled(executor, first, status[Status.RUNNING.value], now),
    )


def pairs_of(task_types: tuple[str, ...], statuses: tuple[str, ...]) -> frozenset[Pair]:
    """The summary's (type, status) pairs a count of these types and statuses adds up."""
    return frozenset((task_type, status) for task_type in task_types for status in statuses)


def summary_totals(executor: Executor, counts: dict[Any, frozenset[Pair]]) -> dict[Any, Total]:
    """Capped counts of (type, status) pairs from the hourly summary, newest hours first.

    Each round reads the newest hours of every pair still wanted, in one statement: a count
    whose hours read hold more than the threshold is past it, one whose pairs were read
    whole is exact, and the others are read again with sixteen times more hours. At a
    million tasks a day's hours hold more than 10,000, so an unfiltered count reads a few
    hundred rows where the tables would give up 10,001 index entries.

    Queued and running tasks are counted in the tables instead (`live_counts`), and only for
    the counts the other statuses' hours leave under the threshold: as those tasks move on,
    their hours' rows fall to zero and stay, one a type for every hour that ever had one,
    while the tables' index ranges of those statuses hold only the tasks in them.
    """
    found: dict[Any, Total] = {}
    wanted = dict(counts)
    live: dict[Pair, HoursRead] = {}
    hours = SUMMARY_FIRST_HOURS
    while wanted:
        summed = frozenset(p for p in frozenset().union(*wanted.values()) if p[1] not in ACTIVE)
        read = newest_hours(executor, tuple(sorted(summed)), hours) if summed else {}
        for key, pairs_wanted in list(wanted.items()):
            if sum(read[pair].tasks for pair in pairs_wanted if pair in read) > TOTAL_EXACT_UP_TO:
                found[key] = Total.capped(TOTAL_EXACT_UP_TO + 1)
                del wanted[key]
        unread = frozenset().union(*wanted.values()) - summed - live.keys()
        live |= live_counts(executor, tuple(sorted(unread)))
        read |= live
        for key, pairs_wanted in list(wanted.items()):
            tasks = sum(read[pair].tasks for pair in pairs_wanted)
            if tasks > TOTAL_EXACT_UP_TO or all(read[pair].whole for pair in pairs_wanted):
                found[key] = Total.capped(tasks)
                del wanted[key]
        hours *= 16
    return found


def live_counts(executor: Executor, pairs: tuple[Pair, ...]) -> dict[Pair, HoursRead]:
    """Each pair's tasks counted in its table up to one past the threshold, in one statement
    (a count past it is not the pair's whole count, but it puts every sum past it too)."""
    if not pairs:
        return {}
    found = executor.execute(live_counts_template(pairs, TOTAL_EXACT_UP_TO + 1)).one()
    return {pair: HoursRead(tasks, whole=True) for pair, tasks in zip(pairs, found, strict=True)}


@functools.lru_cache(maxsize=64)
def live_counts_template(pairs: tuple[Pair, ...], up_to: int) -> sa.Select[Any]:
    """One row: each pair's tasks up to `up_to`, a range of its table's status index."""
    counts = []
    for task_type, status in pairs:
        shape = Shape(task_types=(task_type,), statuses=(status,))
        (member,) = count_members(shape, sql_constant(1).label("hit"))
        counts.append(count_up_to(member, sql_constant(up_to)).scalar_subquery())
    return sa.select(*counts)


def summary_facets(executor: Executor, task_filter: TaskFilter, now: datetime) -> Facets:
    """The chips of a filter of types and statuses alone, from the hourly summary (see
    `summary_totals`): each status over the filter's types and each type over its statuses.
    The chips of queued and running tasks are one capped count each, as `count_tasks` reads
    those statuses; the stalled count needs the tasks' rows."""
    first = task_filter.first_page
    types = task_filter.task_types or TASK_TYPES
    statuses = task_filter.statuses or STATUSES
    chips = {("status", s): pairs_of(types, (s,)) for s in STATUSES if s not in ACTIVE}
    chips |= {("task_type", t): pairs_of((t,), statuses) for t in TASK_TYPES}
    found = summary_totals(executor, chips)
    for status in ACTIVE:
        found["status", status] = count_tasks(executor, replace(first, statuses=(status,)), now)
    return Facets(
        status={s: found["status", s] for s in STATUSES},
        task_type={t: found["task_type", t] for t in TASK_TYPES},
        total=sum_of([found["status", s] for s in statuses]),
        stalled=count_stalled(executor, first, found["status", Status.RUNNING.value], now),
    )


def count_stalled(
    executor: Executor, task_filter: TaskFilter, running: Total, now: datetime
) -> Total:
    """The stalled chip; none without a statement when the running chip is none.

    A stalled task is a running one the rest of the filter matches, which the running chip
    counts. Its count reads every stalled task's entry of the (status, updated_at,
    created_at) index to test the filter's created bounds, so a view that ends long ago (no
    task it holds is still running) would read all of them to find none: at ten million
    tasks, most of its counts' time.
    """
    if running == Total(0, "eq"):
        return running
    stalled = with_running_covered(executor, replace(task_filter, stalled=True))
    return count_tasks(executor, stalled, now)


def with_running_covered(executor: Executor, task_filter: TaskFilter) -> TaskFilter:
    """The filter, carrying the tables where its actor is tested row by row and every
    running task is the actor's (its kept count of them is the hourly summary's), where a
    stalled count then needs no test of the actor.

    A module's own running tasks are all of its table's: tested one by one, a capped count
    of its stalled tasks probed task_event 10,001 times (52 ms at ten million tasks, on
    SQLite). A task that becomes running after the lookup, someone else's, is not stalled:
    whoever moved it was heard from then.
    """
    known, running = looked_up(task_filter), Status.RUNNING.value
    kept = kept_counts(task_filter)
    walked = tuple(t for t in walked_tables(task_filter) if kept[t, running])
    if known is None or not walked:
        return task_filter
    table = every_hour(executor, walked, running)
    covered = tuple(t for t in walked if kept[t, running] == table.get(t))
    return replace(task_filter, actor_tasks=replace(known, running_covered=covered))


def sum_of(parts: list[Total]) -> Total:
    """The total of disjoint parts: exact if each is, else past the threshold."""
    if all(part.relation == "eq" for part in parts):
        return Total.capped(sum(part.value for part in parts))
    return Total.capped(TOTAL_EXACT_UP_TO + 1)


def facets_from_matrix(
    executor: Executor,
    task_filter: TaskFilter,
    now: datetime,
    matrix: dict[tuple[str, str], int],
    exact: bool,
) -> Facets:
    """Every count from exact counts per (type, status) with neither of those filters
    applied (a missing cell is zero); capped after the fact unless `exact`, so that the
    chips follow the one rule whichever way they were read.
    """
    matrix = {(t, s): matrix.get((t, s), 0) for t in TASK_TYPES for s in STATUSES}
    types = task_filter.task_types or TASK_TYPES
    statuses = task_filter.statuses or STATUSES

    def total(found: int) -> Total:
        return Total(found, "eq") if exact else Total.capped(found)

    status = {s: total(sum(matrix[(t, s)] for t in types)) for s in STATUSES}
    return Facets(
        status=status,
        task_type={t: total(sum(matrix[(t, s)] for s in statuses)) for t in TASK_TYPES},
        total=total(sum(matrix[(t, s)] for t in types for s in statuses)),
        stalled=count_stalled(executor, task_filter, status[Status.RUNNING.value], now),
    )
