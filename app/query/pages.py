"""Pages of tasks: the UNION ALL of one member per table, walked in (created_at, id) order,
and what is read one task or one batch at a time."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.filters import Cursor, Order, TaskFilter
from app.models import MODEL_FOR_TYPE, TASK_TYPES, TaskModel, UTCDateTime, sql_constant
from app.query.actors import ACTOR_TASKS
from app.query.counts import Total, count_tasks
from app.query.engines import Executor, dialect_name, engine_shape, pin_index
from app.query.horizons import (
    HORIZON_ROWS,
    horizon_values,
    horizons_apply,
    look_up_horizons,
    page_is_whole,
)
from app.query.lookups import looked_up_first
from app.query.rows import (
    LIST_COLUMNS,
    TaskDetail,
    TaskRow,
    key_columns,
    list_columns,
    outer_columns,
)
from app.query.shapes import (
    Shape,
    Values,
    _integer,
    branch_conditions,
    chosen_models,
    created_bounds_on,
    order_columns,
    page_shape_of,
    reads_every_finished_status,
    split_by_index,
    tag_walk_bounded,
)


@dataclass(frozen=True)
class TaskPage:
    """A page of tasks, the total, and where the next page starts (None on the last)."""

    items: list[TaskRow]
    total: Total
    next_position: tuple[datetime, uuid.UUID] | None


def task_branches(shape: Shape, limited: bool, columns: Any = list_columns) -> list[sa.Select[Any]]:
    """One member per table (and per status or tag) asked for, selecting `columns(model)`.

    `limited` members are ordered and cut to :member_rows rows, each wrapped in a subquery
    (SQLite refuses ORDER BY/LIMIT on a bare member) that is read as `SELECT *`: naming its
    columns again would only lengthen the statement, which costs on every run (see
    `sql_constant`).
    """
    branches = []
    for model in chosen_models(shape):
        if shape.page and model.task_type in shape.actor_gathered:
            branches.append(actor_walk(model, shape, limited, columns))
            continue
        # Listed ids are read by primary key: split, each part would bind them again.
        listed = model.task_type in shape.actor_listed + shape.actor_gathered
        for part in [shape] if listed else split_by_index(shape):
            conditions = [*branch_conditions(model, part), *walk_bounds(model, part)]
            member = sa.select(*columns(model)).where(*conditions)
            if limited:
                order = order_columns(model.created_at, model.id, shape.order)
                # A search reads its own index, and listed ids the primary key; the walk is
                # the engine's choice then.
                by_id = part.search_phrases or part.search_ids or listed
                cut = member if by_id else pin_index(member, model, walked_index(model, part))
                cut = cut.order_by(*order).limit(_integer("member_rows"))
                member = sa.select(sa.literal_column("*")).select_from(cut.subquery())
            branches.append(member)
    return branches


def actor_walk(model: TaskModel, shape: Shape, limited: bool, columns: Any) -> sa.Select[Any]:
    """A page's member of a table where the actor acted on a few thousand tasks: the
    actor's rows of actor_task walked in the listing's order from the cursor, each task read
    by key and tested against the rest of the filter (up to :member_rows of them if
    `limited`).

    The member's created_at and id are the walked rows' own copies, equal to the task's (the
    triggers keep them so): in their order already, they let SQLite merge the members
    without a sort. Gathered whole (as counts and charts still are), the member read every
    one of the actor's tasks by key and sorted them: 7 to 10 ms a page for a person's 2,000
    training runs, at any table size, on SQLite.
    """
    walked = ACTOR_TASKS
    own = {"id": walked.c.task_id, "created_at": walked.c.created_at}
    selected = [own[c.name].label(c.name) if c.name in own else c for c in columns(model)]
    named = sa.bindparam("actor_named", type_=walked.c.actor.type, literal_execute=True)
    rest = replace(shape, actor=False)
    member = (
        sa.select(*selected)
        .select_from(walked.join(model, model.id == walked.c.task_id))
        .where(
            walked.c.actor == named,
            walked.c.task_type == sql_constant(model.task_type),
            *created_bounds_on(walked.c.created_at, walked.c.task_id, shape),
            *branch_conditions(model, rest),
            *walk_bounds(model, rest),
        )
    )
    if not limited:
        return member
    order = order_columns(walked.c.created_at, walked.c.task_id, shape.order)
    cut = member.order_by(*order).limit(_integer("member_rows"))
    return sa.select(sa.literal_column("*")).select_from(cut.subquery())


def walk_bounds(model: TaskModel, part: Shape) -> list[sa.ColumnElement[bool]]:
    """Where a page's member may start its created_at walk, beyond what its filter says.

    A stalled task was last heard before :heard_before_<type> (its type's limit ago), and
    it was created no later than it was last heard: every write of a task sets updated_at to
    the writer's now, the first one created_at with it. So a page of stalled tasks walks
    the running range of the (status, created_at) index from that moment down, past every
    running task created since (none of which can be stalled yet) rather than from the
    newest; its cost follows the running tasks older than the limit, not all of them. (A
    module whose clock is s seconds behind the one that created its task can make a task
    look heard before it was created: such a task joins the page at most s seconds late.)

    Left out where the member has an upper bound on created_at already, `created_before`
    or the cursor of a newest-first page (which lies below it, past stalled tasks): an
    engine takes one bound a side (see `created_bounds`).
    """
    if not (part.page and part.stalled) or part.before or (part.cursor and part.order == "desc"):
        return []
    if tag_walk_bounded(part):
        return []  # written with the stalled test already
    heard_before = sa.bindparam(f"heard_before_{model.task_type}", type_=UTCDateTime())
    return [model.created_at < heard_before]


def walked_index(model: TaskModel, part: Shape) -> str:
    """The index a page's member is written to walk in created_at order (see split_by_index).

    A member of one tag walks the tag's index, one of one status its status's index, and
    any other (no status test, or every finished status at once) the created_at index.
    """
    if part.tags:
        leading = ["tag", "created_at"]
    elif part.error_group:
        leading = ["status", "error_group", "created_at"]
    elif part.statuses and not reads_every_finished_status(part):
        leading = ["status", "created_at"]
    else:
        leading = ["created_at"]
    return next(
        index.name
        for index in model.__table__.indexes
        if [column.name for column in index.columns][: len(leading)] == leading
    )


def ordered_page(union: sa.Subquery, columns: dict[str, Any], order: Order) -> sa.Select[Any]:
    """The union's :page_rows rows after :page_offset, in the listing's order."""
    return (
        sa.select(*columns.values())
        .select_from(union)
        .order_by(*order_columns(columns["created_at"], columns["id"], order))
        .limit(_integer("page_rows"))
        .offset(_integer("page_offset"))
    )


@functools.lru_cache(maxsize=512)
def page_template(shape: Shape, merged: bool) -> sa.Select[Any]:
    """One page of a shape, whole rows, members merged or each limited (see engine_shape)."""
    union = sa.union_all(*task_branches(shape, not merged)).subquery("tasks")
    columns = outer_columns(list_columns(next(iter(MODEL_FOR_TYPE.values()))))
    return ordered_page(union, columns, shape.order)


@functools.lru_cache(maxsize=512)
def keys_template(shape: Shape) -> sa.Select[Any]:
    """One page of a shape as (task_type, created_at, id), each member limited."""
    union = sa.union_all(*task_branches(shape, True, key_columns)).subquery("tasks")
    columns = outer_columns(key_columns(next(iter(MODEL_FOR_TYPE.values()))))
    return ordered_page(union, columns, shape.order)


@functools.lru_cache(maxsize=64)
def rows_template(task_types: tuple[str, ...]) -> sa.CompoundSelect:
    """Whole rows by id from the given tables: :ids_<task_type> for each."""
    return sa.union_all(
        *(
            sa.select(*list_columns(model)).where(
                model.id.in_(sa.bindparam(f"ids_{model.task_type}", expanding=True))
            )
            for model in (MODEL_FOR_TYPE[task_type] for task_type in task_types)
        )
    )


def page_query(
    task_filter: TaskFilter, now: datetime, dialect: str | None
) -> tuple[sa.Select[Any], Values]:
    """The page's statement for an engine, and the values of its parameters.

    One statement of whole rows; the "keys" engines get the limited shape here, and read
    a page in two steps in `fetch_page`.
    """
    shape, values = page_shape_of(task_filter, now)
    merged = engine_shape(dialect).page == "merge"
    return page_template(shape, merged), values | page_values(task_filter)


def page_values(task_filter: TaskFilter) -> Values:
    """The limits of one page, with one extra row to tell whether another page follows."""
    return {
        "member_rows": task_filter.offset + task_filter.limit + 1,
        "page_rows": task_filter.limit + 1,
        "page_offset": task_filter.offset,
    }


def page_statement(
    task_filter: TaskFilter, now: datetime, *, dialect: str | None = None
) -> sa.Select[Any]:
    """The statement for one page, with one extra row to tell whether another page follows.

    `dialect` picks the shape (see `engine_shape`); the default shape runs on every engine.
    """
    statement, values = page_query(task_filter, now, dialect)
    return statement.params(values)


@looked_up_first
def fetch_page(executor: Executor, task_filter: TaskFilter, now: datetime) -> list[TaskRow]:
    """The page's rows, plus one when another page follows, read as the engine does best."""
    engine = engine_shape(dialect_name(executor))
    shape, values = page_shape_of(task_filter, now)
    among_newest = engine.search_index == "fts5"
    if among_newest and (rows := page_among_newest(executor, task_filter, shape, values)):
        return rows
    if engine.page != "keys":
        statement = page_template(shape, engine.page == "merge")
        bounds = values | page_values(task_filter)
        return [TaskRow(*row) for row in executor.execute(statement, bounds)]
    keys = executor.execute(keys_template(shape), values | page_values(task_filter)).all()
    return rows_by_key(executor, [(key.task_type, key.id) for key in keys])


def page_among_newest(
    executor: Executor, task_filter: TaskFilter, shape: Shape, values: Values
) -> list[TaskRow] | None:
    """A search's page on SQLite, of the filter's page `shape`, read among each table's
    newest tasks if that is the page (see app/query/horizons.py); None where it must be
    read whole."""
    if not horizons_apply(shape):
        return None
    merged = engine_shape(dialect_name(executor)).page == "merge"
    for newest in HORIZON_ROWS:
        horizons = look_up_horizons(executor, shape, values, newest)
        if not horizons:
            return None  # no table is read
        statement = page_template(replace(shape, search_horizon=tuple(horizons)), merged)
        bounds = values | page_values(task_filter) | horizon_values(horizons)
        rows = [TaskRow(*row) for row in executor.execute(statement, bounds)]
        if page_is_whole(horizons, rows, task_filter.limit + 1):
            return rows
    return None


def rows_by_key(executor: Executor, keys: list[tuple[str, uuid.UUID]]) -> list[TaskRow]:
    """Whole rows for (task_type, id) keys, in the keys' order; a task deleted since is left out."""
    if not keys:
        return []
    ids: dict[str, list[uuid.UUID]] = {}
    for task_type, task_id in keys:
        ids.setdefault(task_type, []).append(task_id)
    types = tuple(t for t in TASK_TYPES if t in ids)
    values = {f"ids_{task_type}": ids[task_type] for task_type in types}
    rows = {
        (row.task_type, row.id): TaskRow(*row)
        for row in executor.execute(rows_template(types), values)
    }
    return [rows[key] for key in keys if key in rows]


# -- what the blueprints call ----------------------------------------------------------------


@looked_up_first
def list_tasks(executor: Executor, task_filter: TaskFilter, now: datetime) -> TaskPage:
    """A page of tasks, its total and the position the next page starts after."""
    rows = fetch_page(executor, task_filter, now)
    items = rows[: task_filter.limit]
    has_more = len(rows) > task_filter.limit
    last = items[-1] if items else None
    return TaskPage(
        items=items,
        total=page_total(executor, task_filter, now, len(items), has_more),
        next_position=(last.created_at, last.id) if has_more and last else None,
    )


def page_total(
    executor: Executor, task_filter: TaskFilter, now: datetime, shown: int, has_more: bool
) -> Total:
    """The page's total; a first page that holds every match is its own exact count."""
    if task_filter.offset == 0 and task_filter.cursor is None and not has_more:
        return Total(shown, "eq")
    return count_tasks(executor, task_filter, now)


def get_task(executor: Executor, task_id: uuid.UUID) -> TaskDetail | None:
    """One task by id, whichever table holds it."""
    listed = len(LIST_COLUMNS)
    for model in MODEL_FOR_TYPE.values():
        statement = sa.select(*list_columns(model), model.retry_of, *model.detail_columns())
        found = executor.execute(statement.where(model.id == task_id)).first()
        if found is not None:
            own = listed + 1
            details = dict(zip(found._fields[own:], found[own:], strict=True))
            retried_as = executor.execute(
                sa.select(model.id).where(model.retry_of == task_id)
            ).scalar_one_or_none()
            row = TaskRow(*found[:listed])
            return TaskDetail(row, details, found[listed], retried_as)
    return None


@looked_up_first
def iter_tasks(
    executor: Executor, task_filter: TaskFilter, now: datetime, batch: int = 1000
) -> Iterator[TaskRow]:
    """Every matching task, in order, fetched a batch at a time by keyset."""
    part = replace(task_filter.first_page, limit=batch)
    while True:
        rows = fetch_page(executor, part, now)
        yield from rows[:batch]
        if len(rows) <= batch:
            return
        last = rows[batch - 1]
        part = replace(part, cursor=Cursor(last.created_at, last.id, task_filter.order))


def known_tags(executor: Executor, limit: int = 50, recent: int = 2000) -> list[str]:
    """The tags most used by recent tasks, most used first, for the page's tag suggestions.

    Only the newest `recent` tagged tasks of each table are read: a short walk of the
    created_at index at any table size, where a DISTINCT over every row would not be.
    """
    members = [
        sa.select(
            sa.select(model.tag.label("tag"))
            .where(model.tag.is_not(None))
            .order_by(model.created_at.desc())
            .limit(recent)
            .subquery()
        )
        for model in MODEL_FOR_TYPE.values()
    ]
    tagged = sa.union_all(*members).subquery("tagged")
    statement = (
        sa.select(tagged.c.tag)
        .group_by(tagged.c.tag)
        .order_by(sa.func.count().desc(), tagged.c.tag)
        .limit(limit)
    )
    return list(executor.execute(statement).scalars())
