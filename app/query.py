"""The only module that writes SQL: branches, UNION ALL, pages, cursors and counts.

Every listing is one `UNION ALL` with one member per table asked for. Each member carries
every filter, the cursor, its own ORDER BY (created_at, id) and its own LIMIT, so each engine
walks one index in order and stops after a page's worth of rows; the outer query merges those
few rows. When a table is read for several statuses or several tags, the member is split into
one per status (or tag): `status IN (a, b)` cannot walk the (status, created_at, id) index in
created_at order, but each `status = a` can.

Nothing here reads `request`: callers pass a `TaskFilter`, a connection and the time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.filters import Cursor, TaskFilter
from app.models import (
    ACTIVE_STATUSES,
    MODEL_FOR_TYPE,
    TASK_TYPES,
    Status,
    TaskModel,
)

# Totals are exact up to here, then reported as "at least this many" unless asked for exact.
TOTAL_EXACT_UP_TO = 10_000

Executor = Session | sa.Connection


@dataclass(frozen=True)
class TaskRow:
    """One task in a list: the fields every type shares, plus a short summary."""

    task_type: str
    id: uuid.UUID
    status: str
    tag: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: float | None
    error_msg: str | None
    summary: str


LIST_COLUMNS = tuple(TaskRow.__dataclass_fields__)


@dataclass(frozen=True)
class Total:
    """How many tasks match: exact ("eq") or a lower bound ("gte")."""

    value: int
    relation: Literal["eq", "gte"]


@dataclass(frozen=True)
class TaskPage:
    """A page of tasks, the total, and where the next page starts (None on the last)."""

    items: list[TaskRow]
    total: Total
    next_position: tuple[datetime, uuid.UUID] | None


@dataclass(frozen=True)
class Facets:
    """Counts by status and by type, each with every filter but its own dimension applied."""

    status: dict[str, int]
    task_type: dict[str, int]
    total: int


@dataclass(frozen=True)
class TaskDetail:
    """One task with the fields only its type has."""

    row: TaskRow
    details: dict[str, Any]


# -- building blocks -------------------------------------------------------------------------


def chosen_models(task_filter: TaskFilter) -> list[TaskModel]:
    """The tables the filter asks for; the others are not queried at all."""
    return [MODEL_FOR_TYPE[t] for t in task_filter.task_types or TASK_TYPES]


def keyset_condition(model: TaskModel, cursor: Cursor) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in the listing's order.

    Written as `created_at <= :ts AND (created_at < :ts OR id < :id)`: the leading range on
    created_at is what lets every engine use the index as a range, which neither the bare OR
    form nor (on MariaDB) the row-value form `(created_at, id) < (:ts, :id)` does.
    """
    if cursor.order == "desc":
        return sa.and_(
            model.created_at <= cursor.created_at,
            sa.or_(model.created_at < cursor.created_at, model.id < cursor.id),
        )
    return sa.and_(
        model.created_at >= cursor.created_at,
        sa.or_(model.created_at > cursor.created_at, model.id > cursor.id),
    )


def window_condition(model: TaskModel, hours: int, now: datetime) -> sa.ColumnElement[bool]:
    """Active within the last `hours`: still queued or running, or finished since then."""
    return sa.or_(
        model.status.in_([s.value for s in ACTIVE_STATUSES]),
        model.finished_at >= now - timedelta(hours=hours),
    )


def branch_conditions(
    model: TaskModel,
    task_filter: TaskFilter,
    now: datetime,
    *,
    with_status: bool = True,
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clause of one table's member (status left out for the status facet)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if with_status and task_filter.statuses:
        conditions.append(_one_or_in(model.status, task_filter.statuses))
    if task_filter.tags:
        conditions.append(_one_or_in(model.tag, task_filter.tags))
    if task_filter.within_hours is not None:
        conditions.append(window_condition(model, task_filter.within_hours, now))
    if task_filter.created_after is not None:
        conditions.append(model.created_at >= task_filter.created_after)
    if task_filter.created_before is not None:
        conditions.append(model.created_at < task_filter.created_before)
    if task_filter.cursor is not None:
        conditions.append(keyset_condition(model, task_filter.cursor))
    return conditions


def _one_or_in(column: Any, values: Sequence[str]) -> sa.ColumnElement[bool]:
    return column == values[0] if len(values) == 1 else column.in_(values)


def split_by_index(task_filter: TaskFilter) -> list[TaskFilter]:
    """One filter per index walk: one per tag if tags are given, else one per status.

    Tags come first because a tag is usually the more selective of the two.
    """
    if len(task_filter.tags) > 1:
        return [replace(task_filter, tags=(tag,)) for tag in task_filter.tags]
    if len(task_filter.statuses) > 1 and not task_filter.tags:
        return [replace(task_filter, statuses=(status,)) for status in task_filter.statuses]
    return [task_filter]


def order_columns(columns: Any, order: str) -> list[sa.UnaryExpression[Any]]:
    """The listing's order, newest first unless ascending was asked for."""
    if order == "asc":
        return [columns.created_at.asc(), columns.id.asc()]
    return [columns.created_at.desc(), columns.id.desc()]


def list_columns(model: TaskModel) -> list[sa.ColumnElement[Any]]:
    """The labelled columns every member selects, in the same order."""
    return [
        sa.literal_column(f"'{model.task_type}'", sa.String).label("task_type"),
        model.id.label("id"),
        model.status.label("status"),
        model.tag.label("tag"),
        model.created_at.label("created_at"),
        model.updated_at.label("updated_at"),
        model.started_at.label("started_at"),
        model.finished_at.label("finished_at"),
        model.progress.label("progress"),
        model.error_msg.label("error_msg"),
        model.summary().label("summary"),
    ]


def task_branches(task_filter: TaskFilter, now: datetime, rows: int) -> list[sa.Select[Any]]:
    """One ordered, limited member per table (and per status or tag) asked for.

    Each member is wrapped in a subquery: SQLite refuses ORDER BY/LIMIT on a bare member.
    """
    branches = []
    for model in chosen_models(task_filter):
        for part in split_by_index(task_filter):
            member = (
                sa.select(*list_columns(model))
                .where(*branch_conditions(model, part, now))
                .order_by(*order_columns(model, task_filter.order))
                .limit(rows)
                .subquery()
            )
            branches.append(sa.select(member))
    return branches


def page_statement(task_filter: TaskFilter, now: datetime) -> sa.Select[Any]:
    """The statement for one page, with one extra row to tell whether another page follows."""
    rows = task_filter.offset + task_filter.limit + 1
    union = sa.union_all(*task_branches(task_filter, now, rows)).subquery("tasks")
    return (
        sa.select(*(union.c[name] for name in LIST_COLUMNS))
        .order_by(*order_columns(union.c, task_filter.order))
        .limit(task_filter.limit + 1)
        .offset(task_filter.offset)
    )


def capped_count_statement(task_filter: TaskFilter, now: datetime) -> sa.Select[Any]:
    """Count matches, but stop each table after one more than the exact threshold."""
    members = [
        sa.select(
            sa.select(sa.literal_column("1").label("hit"))
            .select_from(model)
            .where(*branch_conditions(model, task_filter.first_page, now))
            .limit(TOTAL_EXACT_UP_TO + 1)
            .subquery()
        )
        for model in chosen_models(task_filter)
    ]
    return sa.select(sa.func.count()).select_from(sa.union_all(*members).subquery())


def exact_count_statement(task_filter: TaskFilter, now: datetime) -> sa.Select[Any]:
    """Count every match: a sum of one COUNT(*) per table, the cheapest exact shape."""
    counts = [
        sa.select(sa.func.count())
        .select_from(model)
        .where(*branch_conditions(model, task_filter.first_page, now))
        .scalar_subquery()
        for model in chosen_models(task_filter)
    ]
    total = counts[0]
    for count in counts[1:]:
        total = total + count
    return sa.select(total)


def facet_statement(task_filter: TaskFilter, now: datetime) -> sa.Select[Any]:
    """Counts by (type, status) over every table, with neither of those two filters applied."""
    everything = replace(task_filter.first_page, task_types=(), statuses=())
    members = [
        sa.select(
            sa.literal_column(f"'{model.task_type}'", sa.String).label("task_type"),
            model.status.label("status"),
            sa.func.count().label("tasks"),
        )
        .where(*branch_conditions(model, everything, now))
        .group_by(model.status)
        for model in MODEL_FOR_TYPE.values()
    ]
    return sa.union_all(*members)  # type: ignore[return-value]


# -- what the blueprints call ----------------------------------------------------------------


def list_tasks(executor: Executor, task_filter: TaskFilter, now: datetime) -> TaskPage:
    """A page of tasks, its total and the position the next page starts after."""
    rows = [TaskRow(**row._mapping) for row in executor.execute(page_statement(task_filter, now))]
    items = rows[: task_filter.limit]
    has_more = len(rows) > task_filter.limit
    last = items[-1] if items else None
    return TaskPage(
        items=items,
        total=count_tasks(executor, task_filter, now),
        next_position=(last.created_at, last.id) if has_more and last else None,
    )


def count_tasks(executor: Executor, task_filter: TaskFilter, now: datetime) -> Total:
    """How many tasks match, exact up to TOTAL_EXACT_UP_TO unless exact was asked for."""
    if task_filter.exact_count:
        return Total(executor.execute(exact_count_statement(task_filter, now)).scalar_one(), "eq")
    value = executor.execute(capped_count_statement(task_filter, now)).scalar_one()
    if value > TOTAL_EXACT_UP_TO:
        return Total(TOTAL_EXACT_UP_TO, "gte")
    return Total(value, "eq")


def count_facets(executor: Executor, task_filter: TaskFilter, now: datetime) -> Facets:
    """Zero-filled counts per status and per type that predict what selecting each gives."""
    matrix = {(t, s.value): 0 for t in TASK_TYPES for s in Status}
    for task_type, status, tasks in executor.execute(facet_statement(task_filter, now)):
        matrix[(task_type, status)] = tasks
    types = task_filter.task_types or TASK_TYPES
    statuses = task_filter.statuses or tuple(s.value for s in Status)
    return Facets(
        status={s.value: sum(matrix[(t, s.value)] for t in types) for s in Status},
        task_type={t: sum(matrix[(t, s)] for s in statuses) for t in TASK_TYPES},
        total=sum(matrix[(t, s)] for t in types for s in statuses),
    )


def get_task(executor: Executor, task_id: uuid.UUID) -> TaskDetail | None:
    """One task by id, whichever table holds it."""
    for model in MODEL_FOR_TYPE.values():
        statement = sa.select(model, *list_columns(model)).where(model.id == task_id)
        found = executor.execute(statement).first()
        if found is not None:
            task, *listed = found
            return TaskDetail(TaskRow(*listed), task.detail_fields())
    return None


def iter_tasks(
    executor: Executor, task_filter: TaskFilter, now: datetime, batch: int = 1000
) -> Iterator[TaskRow]:
    """Every matching task, in order, fetched a batch at a time by keyset."""
    part = replace(task_filter.first_page, limit=batch)
    while True:
        statement = page_statement(part, now)
        rows = [TaskRow(**row._mapping) for row in executor.execute(statement)]
        yield from rows[:batch]
        if len(rows) <= batch:
            return
        last = rows[batch - 1]
        part = replace(part, cursor=Cursor(last.created_at, last.id, task_filter.order))
