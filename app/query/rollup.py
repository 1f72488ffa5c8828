"""The chart's counts read from the hourly summary the database keeps, not from the tasks.

`task_hourly_count` (migrations/versions/0009_hourly_counts.py) holds how many tasks of each
type and status were created in each hour, kept by triggers on the five tables, so tasks a
module writes in plain SQL are counted too. A week's chart then reads at most 168 rows per
type and status, whatever the tables hold.

It can answer a filter of types, statuses and time alone: a tag, a search, an actor, an
error group or stalled tasks need the tasks themselves (see `summary_serves`). It counts
whole hours: app/query/histogram.py reads the parts of a window it cannot serve (an edge
inside an hour, the hours before a time window's start) from the tables.

A filter of types and statuses alone, with no time in it, is counted from it too (see
`newest_hours`): the hours of each (type, status) pair are summed newest first, which
passes the threshold of a capped count in a few rows however many tasks the tables hold.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.models import sql_constant
from app.query.engines import Executor
from app.query.shapes import STATUSES, Shape, _integer, reads_each_task

# A (task_type, status) pair: the summary's key without its hour.
Pair = tuple[str, str]

# The summary as the revision makes it; only the triggers write it, so the models leave it out.
HOURLY_COUNTS = sa.Table(
    "task_hourly_count",
    sa.MetaData(),
    sa.Column("task_type", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    # Whole hours from 1970-01-01 UTC to the hour of the tasks' created_at.
    sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tasks", sa.BigInteger, nullable=False),
)


def summary_serves(shape: Shape) -> bool:
    """Whether the summary counts this filter's tasks: only types, statuses and time in it.

    A time window (`within_hours`) is served from its start on, where every task created
    matches it (a task finishes after it was created); the caller reads the hours before.
    """
    return not (reads_each_task(shape) or shape.search_phrases or shape.search_ids)


def summary_counts_every_hour(shape: Shape) -> bool:
    """Whether a count of this filter is the sum of the summary's hours: types and statuses
    alone, no time, so that every hour of the summary holds only matching tasks."""
    return summary_serves(shape) and not (shape.window or shape.after or shape.before)


@functools.lru_cache(maxsize=256)
def newest_hours_template(pairs: tuple[Pair, ...]) -> sa.CompoundSelect:
    """(task_type, status, tasks, hours) per pair: the tasks of its newest :hours rows, and
    how many rows those were; each a backward range of the primary key."""
    members = []
    for task_type, status in pairs:
        newest = (
            sa.select(HOURLY_COUNTS.c.tasks)
            .where(
                HOURLY_COUNTS.c.task_type == sql_constant(task_type),
                HOURLY_COUNTS.c.status == sql_constant(status),
            )
            .order_by(HOURLY_COUNTS.c.hour.desc())
            .limit(_integer("hours"))
            .subquery("newest")
        )
        members.append(
            sa.select(
                sql_constant(task_type).label("task_type"),
                sql_constant(status).label("status"),
                sa.func.coalesce(sa.func.sum(newest.c.tasks), sql_constant(0)).label("tasks"),
                sa.func.count().label("hours"),
            ).select_from(newest)
        )
    return sa.union_all(*members)


@dataclass(frozen=True)
class HoursRead:
    """What the newest hours of one pair hold: their tasks, and whether they were all its
    hours (then `tasks` is the pair's count; else a lower bound of it)."""

    tasks: int
    whole: bool


def newest_hours(executor: Executor, pairs: tuple[Pair, ...], hours: int) -> dict[Pair, HoursRead]:
    """The tasks of each pair's newest `hours` hours in the summary, in one statement."""
    rows = executor.execute(newest_hours_template(pairs), {"hours": hours})
    return {
        (row.task_type, row.status): HoursRead(int(row.tasks), row.hours < hours) for row in rows
    }


@functools.lru_cache(maxsize=64)
def every_hour_template(task_types: tuple[str, ...], status: str) -> sa.Select[Any]:
    """(task_type, tasks): each type's tasks of the status in every hour, a range of the
    summary's key per type."""
    return (
        sa.select(HOURLY_COUNTS.c.task_type, sa.func.sum(HOURLY_COUNTS.c.tasks))
        .where(_in(HOURLY_COUNTS.c.task_type, task_types))
        .where(HOURLY_COUNTS.c.status == sql_constant(status))
        .group_by(HOURLY_COUNTS.c.task_type)
    )


def every_hour(executor: Executor, task_types: tuple[str, ...], status: str) -> dict[str, int]:
    """How many tasks of each type have the status now, added up over every hour (the rows
    of queued and running tasks that moved on are zeros, which add nothing)."""
    rows = executor.execute(every_hour_template(task_types, status))
    return {task_type: int(tasks) for task_type, tasks in rows}


def _in(column: sa.ColumnElement[str], values: tuple[str, ...]) -> sa.ColumnElement[bool]:
    return column.in_([sql_constant(value) for value in values])


@functools.lru_cache(maxsize=256)
def hourly_template(
    task_types: tuple[str, ...], statuses: tuple[str, ...], hours: int
) -> sa.Select:
    """(bucket, status, tasks) rows: the summary's hours in [:first_hour, :end_hour) added up
    per bucket of `hours` hours (counted from 1970-01-01, as the chart's buckets are).

    Naming every type and status makes the read one range of the primary key per pair.
    """
    hour = HOURLY_COUNTS.c.hour
    bucket = (hour if hours == 1 else hour // sql_constant(hours)).label("bucket")
    return (
        sa.select(bucket, HOURLY_COUNTS.c.status, sa.func.sum(HOURLY_COUNTS.c.tasks).label("tasks"))
        .where(
            _in(HOURLY_COUNTS.c.task_type, task_types),
            _in(HOURLY_COUNTS.c.status, statuses),
            hour >= sa.bindparam("first_hour", type_=sa.Integer),
            hour < sa.bindparam("end_hour", type_=sa.Integer),
        )
        .group_by(bucket, HOURLY_COUNTS.c.status)
    )


def hourly_buckets(
    executor: Executor, shape: Shape, first_hour: int, end_hour: int, hours_per_bucket: int
) -> Iterator[tuple[int, str, int]]:
    """(bucket number from 1970-01-01, status, tasks) for the filter's types and statuses,
    over the hours numbered first_hour to end_hour (excluded)."""
    statement = hourly_template(shape.task_types, shape.statuses or STATUSES, hours_per_bucket)
    bounds = {"first_hour": first_hour, "end_hour": end_hour}
    for row in executor.execute(statement, bounds):
        yield int(row.bucket), row.status, int(row.tasks)
