"""Counts: the capped and exact totals of a filter, and the facets by status and type."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, TASK_TYPES, TaskModel, sql_constant
from app.query.engines import Executor, dialect_name, engine_shape
from app.query.rows import list_columns
from app.query.shapes import (
    STATUSES,
    Shape,
    _integer,
    branch_conditions,
    chosen_models,
    shape_of,
    split_by_window,
)

# Totals are exact up to here, then reported as "at least this many" unless asked for exact.
TOTAL_EXACT_UP_TO = 10_000


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


def count_members(shape: Shape, column: sa.ColumnElement[Any]) -> list[sa.Select[Any]]:
    """`column` over each table's matches, the time window split so each reads one range."""
    return [
        sa.select(column).select_from(model).where(*branch_conditions(model, half))
        for model in chosen_models(shape)
        for half in split_by_window(shape)
    ]


@functools.lru_cache(maxsize=512)
def capped_count_templates(shape: Shape, one_statement: bool) -> tuple[sa.Select[Any], ...]:
    """Counts that stop past the threshold: of the whole union, or one per member.

    In one statement: one more than the threshold if a match lies past it, else the exact
    count. Skipping rows to an offset costs an engine about a third of counting them (on
    SQLite and PostgreSQL, at 10,000 rows), and COALESCE runs the exact count, cheap for a
    small result, only when the probe finds nothing. One member at a time: each counts up
    to :cap rows, the number still wanted.
    """
    members = count_members(shape, sql_constant(1).label("hit"))
    if not one_statement:
        hits = [member.limit(_integer("cap")).subquery("hits") for member in members]
        return tuple(sa.select(sa.func.count()).select_from(part) for part in hits)
    threshold = TOTAL_EXACT_UP_TO
    past = sa.union_all(*members).limit(sql_constant(1)).offset(sql_constant(threshold))
    probe = sa.select(sql_constant(threshold + 1)).select_from(past.subquery("past"))
    return (sa.select(sa.func.coalesce(probe.scalar_subquery(), exact_total(shape))),)


def exact_total(shape: Shape) -> sa.ColumnElement[int]:
    """Every match: a sum of one COUNT(*) per member, the cheapest exact shape."""
    counts = [member.scalar_subquery() for member in count_members(shape, sa.func.count())]
    total = counts[0]
    for count in counts[1:]:
        total = total + count
    return total


@functools.lru_cache(maxsize=512)
def exact_count_template(shape: Shape) -> sa.Select[Any]:
    """Count every match, whatever it costs."""
    return sa.select(exact_total(shape))


def facet_parts(shape: Shape) -> list[Shape]:
    """The counts the facets are made of, for one table.

    Without tags, one count per status: each reads one range of an index that leads with
    the status, and a capped one stops past the threshold. The tag index holds the status,
    so with tags one pass per half of the time window reads the tag's entries alone,
    grouped by status: its cost follows the tag's tasks (a capped count of one rare status
    would read them all anyway, once per status).
    """
    everything = replace(shape, statuses=())
    if shape.tags:
        return split_by_window(everything)
    return [replace(everything, statuses=(status,)) for status in STATUSES]


def facet_member(model: TaskModel, part: Shape, capped: bool) -> sa.Select[Any]:
    """(task_type, status, count) rows of one table for one part of the facets.

    A part of one status names it as a literal: grouping by a column known to be constant
    still reads it from every row, which doubles the cost of a plain COUNT. A capped part
    counts at most one row past the threshold.
    """
    task_type = list_columns(model)[0]
    conditions = branch_conditions(model, part)
    if len(part.statuses) != 1:
        return (
            sa.select(task_type, model.status.label("status"), sa.func.count())
            .where(*conditions)
            .group_by(model.status)
        )
    status = sql_constant(part.statuses[0]).label("status")
    if not capped:
        return sa.select(task_type, status, sa.func.count()).select_from(model).where(*conditions)
    hits = sa.select(sql_constant(1).label("hit")).select_from(model).where(*conditions)
    cut = hits.limit(sql_constant(TOTAL_EXACT_UP_TO + 1)).subquery("hits")
    return sa.select(task_type, status, sa.func.count()).select_from(cut)


@functools.lru_cache(maxsize=512)
def facet_template(shape: Shape, capped: bool) -> sa.CompoundSelect:
    """Counts by (type, status) over every table, with neither of those two filters applied."""
    return sa.union_all(
        *(
            facet_member(model, part, capped)
            for model in MODEL_FOR_TYPE.values()
            for part in facet_parts(shape)
        )
    )


def count_tasks(executor: Executor, task_filter: TaskFilter, now: datetime) -> Total:
    """How many tasks match, exact up to TOTAL_EXACT_UP_TO unless exact was asked for.

    The capped count reads at most one more row than the threshold (and a small result
    twice), in one statement or one member at a time (see `engine_shape`).
    """
    shape, values = shape_of(task_filter.first_page, now)
    if task_filter.exact_count:
        return Total(executor.execute(exact_count_template(shape), values).scalar_one(), "eq")
    one_statement = engine_shape(dialect_name(executor)).count_in_one_statement
    found = 0
    for statement in capped_count_templates(shape, one_statement):
        cap = TOTAL_EXACT_UP_TO + 1 - found
        found += executor.execute(statement, {**values, "cap": cap}).scalar_one()
        if found > TOTAL_EXACT_UP_TO:
            break
    return Total.capped(found)


def count_by_type_and_status(
    executor: Executor, shape: Shape, values: dict[str, Any], capped: bool
) -> dict[tuple[str, str], int]:
    """Zero-filled counts per (type, status), with neither of those two filters applied."""
    matrix = {(t, s): 0 for t in TASK_TYPES for s in STATUSES}
    for task_type, status, tasks in executor.execute(facet_template(shape, capped), values):
        matrix[(task_type, status)] += tasks
    return matrix


def count_facets(executor: Executor, task_filter: TaskFilter, now: datetime) -> Facets:
    """Zero-filled counts per status and per type that predict what selecting each gives.

    Each is exact up to TOTAL_EXACT_UP_TO and "at least" that beyond (see `Total.capped`),
    so that a view of ten million tasks costs what one of a hundred thousand does, unless
    the filter asks for exact counts. Each count of one type and one status reads at most
    one row past the threshold. The stalled count reads a range of each table's (status,
    updated_at) index (see `stalled_condition`).
    """
    capped = not task_filter.exact_count
    shape, values = shape_of(task_filter.first_page, now)
    matrix = count_by_type_and_status(executor, shape, values, capped)
    types = task_filter.task_types or TASK_TYPES
    statuses = task_filter.statuses or STATUSES
    total = Total.capped if capped else functools.partial(Total, relation="eq")
    return Facets(
        status={s: total(sum(matrix[(t, s)] for t in types)) for s in STATUSES},
        task_type={t: total(sum(matrix[(t, s)] for s in statuses)) for t in TASK_TYPES},
        total=total(sum(matrix[(t, s)] for t in types for s in statuses)),
        stalled=count_tasks(executor, replace(task_filter, stalled=True), now),
    )
