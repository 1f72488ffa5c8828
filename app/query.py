"""The only module that writes SQL: branches, UNION ALL, pages, cursors and counts.

Every listing is one `UNION ALL` with one member per table asked for. Each member carries
every filter and the cursor, so each engine walks one index in (created_at, id) order. When
a table is read for several statuses or several tags, the member is split into one per
status (or tag): `status IN (a, b)` cannot walk the (status, created_at, id) index in
created_at order, but each `status = a` can. How the members are ordered and limited is the
first of the two things that differ between engines; `engine_shape` chooses both.

A time window keeps tasks still queued or running and tasks finished since its start, so
a page's last matches can be tasks created long before that start. A page's members that
read finished statuses only get a floor on created_at below which no match can lie (from
the longest time to finish of their statuses, see `window_floor`), so a walk that runs out
of matches stops there instead of at the end of the table; counts beside a created_at bound
get it too (see `has_floor`). Queued and running tasks match at any age, so a page reads
them apart, each status on its own index, and the finished ones as one walk with a floor
(see `page_shape_of`).

Counts read indexes alone: the time window is split into its active half (queued, running:
no time condition) and its finished half (a range of the (status, finished_at) index), and
a capped total stops reading once past the threshold (the second engine difference).

Statements are built once per `Shape` (what a filter's SQL looks like, without its values)
and kept: building SQLAlchemy expressions costs more than running a first page. The values
travel as bound parameters.

Nothing here reads `request`: callers pass a `TaskFilter`, a connection and the time.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session

from app.filters import Cursor, Order, TaskFilter
from app.models import (
    ACTIVE_STATUSES,
    MODEL_FOR_TYPE,
    TASK_TYPES,
    TERMINAL_STATUSES,
    Status,
    TaskModel,
    UTCDateTime,
    sql_constant,
)

# Totals are exact up to here, then reported as "at least this many" unless asked for exact.
TOTAL_EXACT_UP_TO = 10_000

ACTIVE = tuple(status.value for status in ACTIVE_STATUSES)
TERMINAL = tuple(status.value for status in TERMINAL_STATUSES)
STATUSES = tuple(status.value for status in Status)

Executor = Session | sa.Connection
PageShape = Literal["merge", "limited", "keys"]
Values = dict[str, Any]


class TaskRow(NamedTuple):
    """One task in a list: the fields every type shares, plus a short summary.

    A named tuple, not a dataclass: a page builds one per row, and a tuple is built at a
    fraction of the cost.
    """

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


LIST_COLUMNS = TaskRow._fields


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


# -- the one engine-specific choice ----------------------------------------------------------


@dataclass(frozen=True)
class EngineShape:
    """How the statements are written for one engine (see `engine_shape`)."""

    page: PageShape
    count_in_one_statement: bool


def engine_shape(dialect_name: str | None) -> EngineShape:
    """The one place where engines get different SQL, keyed on the dialect's name.

    Pages. "merge" (SQLite): members are plain filtered selects; ORDER BY, LIMIT and OFFSET
    sit outside. SQLite flattens the union and merges its members in index order, so a page
    reads only the rows it shows (plus the offset), from whichever tables they come from.
    "limited" (PostgreSQL, and any engine not named): each member has its own ORDER BY and
    LIMIT (offset + limit + 1) and the outer query sorts those few rows. PostgreSQL does
    not pull a UNION ALL member that has a WHERE clause into its append plan, so with plain
    members it plans each alone, without the outer order, and sorts every match.
    "keys" (MariaDB): the limited shape over (task_type, created_at, id) alone, which the
    indexes hold, then the page's rows by id. MariaDB materialises a UNION ALL derived
    table, so members need their own limits; and its rows live in the primary key, so
    reading offset + limit whole rows per table costs a random read each. Its limited
    members also name the index they walk (FORCE INDEX, see `pin_index`), which only the
    engines that take such a hint are given.

    Capped counts. SQLite and PostgreSQL stop a UNION ALL at its LIMIT and OFFSET, so one
    statement tells whether a match lies past the threshold, and counts them if not.
    MariaDB materialises the union first, so each member is counted on its own, told how
    many rows are still wanted, until the threshold is passed.

    tests/test_query_plans.py shows each of these reasons in the engines' own plans.
    """
    if dialect_name == "sqlite":
        return EngineShape(page="merge", count_in_one_statement=True)
    if dialect_name in {"mysql", "mariadb"}:
        return EngineShape(page="keys", count_in_one_statement=False)
    return EngineShape(page="limited", count_in_one_statement=True)


def dialect_name(executor: Executor) -> str:
    """The engine an executor talks to: sqlite, postgresql, mariadb or mysql."""
    bind = executor if isinstance(executor, sa.Connection) else executor.get_bind()
    return bind.dialect.name


# -- what a filter's SQL looks like, apart from its values -----------------------------------


@dataclass(frozen=True)
class Shape:
    """The parts of a filter that change the SQL; values are bound parameters.

    `tags` holds the names of the tag parameters. `after`, `before` and `cursor` say which
    created_at bounds are written (see `created_bounds`). `page` says that the members walk
    the created_at order to fill a page, rather than count: members with a time window then
    get their created_at floor (see `has_floor`), and one that reads every finished status
    leaves out its status test (see `reads_every_finished_status`).
    """

    task_types: tuple[str, ...]
    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    window: bool = False
    after: bool = False
    before: bool = False
    cursor: bool = False
    order: Order = "desc"
    page: bool = False


def created_bounds(
    task_filter: TaskFilter,
) -> tuple[datetime | None, datetime | None, Cursor | None]:
    """The created_at range and the cursor, with a bound left out where another implies it.

    An engine takes one bound per side of an index range; given both `created_at < :before`
    and the cursor's `created_at <= :ts`, SQLite may pick the looser one and step over every
    row in between. So only the tighter bound on each side is written.
    """
    after, before, cursor = task_filter.created_after, task_filter.created_before, None
    if task_filter.cursor is not None:
        cursor = task_filter.cursor
        if cursor.order == "desc":
            if before is not None and before <= cursor.created_at:
                cursor = None  # every row before `before` is past the cursor
            else:
                before = None  # created_at <= :ts < before
        elif after is not None and after > cursor.created_at:
            cursor = None  # every row from `after` on is past the cursor
        else:
            after = None  # created_at >= :ts >= after
    return after, before, cursor


def shape_of(task_filter: TaskFilter, now: datetime) -> tuple[Shape, Values]:
    """The filter's shape, and the values of its parameters."""
    after, before, cursor = created_bounds(task_filter)
    tags = tuple(f"tag_{index}" for index in range(len(task_filter.tags)))
    values: Values = dict(zip(tags, task_filter.tags, strict=True))
    if task_filter.within_hours is not None:
        values["since"] = now - timedelta(hours=task_filter.within_hours)
    if after is not None:
        values["after"] = after
    if before is not None:
        values["before"] = before
    if cursor is not None:
        values["cursor_at"], values["cursor_id"] = cursor.created_at, cursor.id
    shape = Shape(
        task_types=task_filter.task_types or TASK_TYPES,
        statuses=task_filter.statuses,
        tags=tags,
        window=task_filter.within_hours is not None,
        after=after is not None,
        before=before is not None,
        cursor=cursor is not None,
        order=task_filter.order,
    )
    return shape, values


def page_shape_of(task_filter: TaskFilter, now: datetime) -> tuple[Shape, Values]:
    """The shape and values of a page: `shape_of`, with a window read as three walks.

    A window over every status matches queued and running tasks of any age and the tasks
    finished since its start. Walked as one, a page past the last finished match steps
    through every older task of the table looking for active ones, and a window with few
    matches does so on its first page. Naming every status (all a task can have) splits
    the member: queued and running tasks each walk their status's index, and the finished
    ones walk the created_at index down to their floor (see `split_by_index`).
    """
    shape, values = shape_of(task_filter, now)
    if shape.window and not shape.statuses and not shape.tags:
        shape = replace(shape, statuses=STATUSES)
    return replace(shape, page=True), values


# -- building blocks -------------------------------------------------------------------------


def chosen_models(shape: Shape) -> list[TaskModel]:
    """The tables the filter asks for; the others are not queried at all."""
    return [MODEL_FOR_TYPE[task_type] for task_type in shape.task_types]


def keyset_condition(model: TaskModel, order: Order) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor (:cursor_at, :cursor_id) in the listing's order.

    Written as `created_at <= :ts AND (created_at < :ts OR id < :id)`: the leading range on
    created_at is what lets every engine use the index as a range, which neither the bare OR
    form nor (on MariaDB) the row-value form `(created_at, id) < (:ts, :id)` does.
    """
    at, task_id = sa.bindparam("cursor_at"), sa.bindparam("cursor_id")
    if order == "desc":
        return sa.and_(model.created_at <= at, sa.or_(model.created_at < at, model.id < task_id))
    return sa.and_(model.created_at >= at, sa.or_(model.created_at > at, model.id > task_id))


def window_condition(model: TaskModel, statuses: Sequence[str]) -> sa.ColumnElement[bool] | None:
    """Active since :since: still queued or running, or finished since then.

    Knowing the statuses a member reads (empty: any) drops the half that cannot apply, so a
    member of finished statuses has a plain range on finished_at and one of active statuses
    no time condition at all (None).
    """
    finished = model.finished_at >= sa.bindparam("since")
    if statuses and set(statuses) <= set(ACTIVE):
        return None
    if statuses and set(statuses) <= set(TERMINAL):
        return finished
    return sa.or_(statuses_condition(model, ACTIVE), finished)


def has_floor(shape: Shape) -> bool:
    """Whether a member gets a created_at floor: a window over finished statuses only.

    A member that also reads queued or running tasks has no floor: those match at any age.
    An ascending page after a cursor already starts among the oldest matches, so it keeps
    the cursor as its one lower bound. A count gets one only beside a created_at bound:
    it otherwise reads a range of the (status, finished_at) index, but given `created_at <
    :before` an engine may read that longer range of the (status, created_at) index
    instead, and the floor bounds it from below.
    """
    finished_only = bool(shape.statuses) and set(shape.statuses) <= set(TERMINAL)
    walks_created_at = shape.page or shape.after or shape.before
    return (
        walks_created_at
        and shape.window
        and finished_only
        and not (shape.order == "asc" and shape.cursor)
    )


# A stored time to finish may fall short of the true one by under a second, and a moment
# computed by an engine may be off by a little more (see `SecondsBefore`): floors are lowered
# by this much so that none is ever too high.
FLOOR_MARGIN_SECONDS = 2


class Greatest(sa.sql.functions.FunctionElement[float]):
    """The largest of its arguments, none of them NULL: GREATEST, or SQLite's max()."""

    type = sa.Double()
    name = "greatest"
    inherit_cache = True


@compiles(Greatest)
def _greatest(element: Greatest, compiler: Any, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(Greatest, "sqlite")
def _greatest_sqlite(element: Greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


class SecondsBefore(sa.sql.functions.FunctionElement[datetime]):
    """A moment less a number of seconds, as each engine writes it (see the compilers below)."""

    type = UTCDateTime()
    name = "seconds_before"
    inherit_cache = True


@compiles(SecondsBefore)
def _seconds_before_postgresql(element: SecondsBefore, compiler: Any, **kw: Any) -> str:
    moment, seconds = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(CAST({moment} AS TIMESTAMP WITH TIME ZONE) - make_interval(secs => {seconds}))"


@compiles(SecondsBefore, "sqlite")
def _seconds_before_sqlite(element: SecondsBefore, compiler: Any, **kw: Any) -> str:
    # Written in the stored text form, rounded to the millisecond (well within the margin).
    moment, seconds = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"strftime('%Y-%m-%d %H:%M:%f', julianday({moment}) - ({seconds}) / 86400.0)"


@compiles(SecondsBefore, "mysql")
@compiles(SecondsBefore, "mariadb")
def _seconds_before_mariadb(element: SecondsBefore, compiler: Any, **kw: Any) -> str:
    moment, seconds = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({moment} - INTERVAL ({seconds}) SECOND)"


def longest_to_finish(model: TaskModel, statuses: Sequence[str]) -> sa.ColumnElement[float]:
    """The longest seconds_to_finish among the statuses, 0 if none finished: index steps.

    One `max` per status, each a single step of the (status, seconds_to_finish) index, and
    the largest of them: a plain GREATEST, which PostgreSQL plans faster than a union.
    """
    per_status = [
        sa.func.coalesce(
            sa.select(sa.func.max(model.seconds_to_finish))
            .where(model.status == sql_constant(status))
            .scalar_subquery(),
            sql_constant(0),
        )
        for status in statuses
    ]
    return per_status[0] if len(per_status) == 1 else Greatest(*per_status)


def window_floor(model: TaskModel, shape: Shape) -> sa.ColumnElement[datetime]:
    """No task of the member created before this can match, nor before `after` if given.

    A task finished at or after :since, created at c and done in d seconds, has
    c = finished - d >= since - d: `since` less the longest d of its statuses (and a margin)
    is never above it. The engine reads that longest d in the same statement, so the floor
    and the rows it bounds are one snapshot.
    """
    seconds = longest_to_finish(model, shape.statuses) + sql_constant(FLOOR_MARGIN_SECONDS)
    floor = SecondsBefore(sa.bindparam("since", type_=UTCDateTime()), seconds)
    if not shape.after:
        return floor
    after = sa.bindparam("after", type_=UTCDateTime())
    return sa.case((after > floor, after), else_=floor)


def branch_conditions(model: TaskModel, shape: Shape) -> list[sa.ColumnElement[bool]]:
    """The WHERE clause of one table's member."""
    conditions: list[sa.ColumnElement[bool]] = []
    if shape.statuses and not reads_every_finished_status(shape):
        conditions.append(statuses_condition(model, shape.statuses))
    if shape.tags:
        tags = [sa.bindparam(name, type_=model.tag.type) for name in shape.tags]
        conditions.append(_one_or_in(model.tag, tags))
    if shape.window and (window := window_condition(model, shape.statuses)) is not None:
        conditions.append(window)
    if has_floor(shape):
        # The floor holds `after` when that is higher: one bound a side.
        conditions.append(model.created_at >= window_floor(model, shape))
    elif shape.after:
        conditions.append(model.created_at >= sa.bindparam("after"))
    if shape.before:
        conditions.append(model.created_at < sa.bindparam("before"))
    if shape.cursor:
        conditions.append(keyset_condition(model, shape.order))
    return conditions


def reads_every_finished_status(shape: Shape) -> bool:
    """Whether a page's member reads exactly the tasks finished since the window's start.

    Such a member writes no status test: `finished_at >= :since` holds only for finished
    tasks (a CHECK constraint sees to it), and a `status IN (...)` beside it could lead an
    engine to read that range of the (status, finished_at) index and sort every match
    instead of walking created_at. Counts keep the test, which is what puts them on that
    index.
    """
    return shape.page and shape.window and set(shape.statuses) == set(TERMINAL)


def statuses_condition(model: TaskModel, statuses: Sequence[str]) -> sa.ColumnElement[bool]:
    """The task has one of these statuses, written as constants (see `sql_constant`)."""
    return _one_or_in(model.status, [sql_constant(status) for status in statuses])


def _one_or_in(column: Any, values: Sequence[Any]) -> sa.ColumnElement[bool]:
    return column == values[0] if len(values) == 1 else column.in_(values)


def split_by_index(shape: Shape) -> list[Shape]:
    """One shape per index walk: one per tag if tags are given, else one per status.

    Tags come first because a tag is usually the more selective of the two. A page of a
    time window reads every finished status it names as one walk when it names them all.
    """
    if len(shape.tags) > 1:
        return [replace(shape, tags=(tag,)) for tag in shape.tags]
    if len(shape.statuses) > 1 and not shape.tags:
        if shape.page and shape.window and set(TERMINAL) <= set(shape.statuses):
            # Every finished status at once: one walk of the created_at index, which holds
            # finished_at, rather than three that each read a page's worth of rows.
            active = [replace(shape, statuses=(s,)) for s in shape.statuses if s in ACTIVE]
            return [*active, replace(shape, statuses=TERMINAL)]
        return [replace(shape, statuses=(status,)) for status in shape.statuses]
    return [shape]


def split_by_window(shape: Shape) -> list[Shape]:
    """For counting: the active and the finished statuses apart when a time window is set.

    Each half then counts a range of one index: the active half by status alone, the
    finished half by status and finished_at; together they are the window's OR.
    """
    if not shape.window:
        return [shape]
    wanted = shape.statuses or STATUSES
    halves = [tuple(s for s in wanted if s in half) for half in (ACTIVE, TERMINAL)]
    return [replace(shape, statuses=half) for half in halves if half]


def order_columns(created_at: Any, task_id: Any, order: str) -> list[sa.UnaryExpression[Any]]:
    """The listing's order, newest first unless ascending was asked for."""
    if order == "asc":
        return [created_at.asc(), task_id.asc()]
    return [created_at.desc(), task_id.desc()]


@functools.cache
def list_columns(model: TaskModel) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns every member selects, in the same order, named as in `TaskRow`.

    Only the two computed ones need a label: a column's own name is the one the union uses.
    """
    return (
        sql_constant(model.task_type).label("task_type"),
        model.id,
        model.status,
        model.tag,
        model.created_at,
        model.updated_at,
        model.started_at,
        model.finished_at,
        model.progress,
        model.error_msg,
        model.summary().label("summary"),
    )


@functools.cache
def key_columns(model: TaskModel) -> tuple[sa.ColumnElement[Any], ...]:
    """What places a task in the listing, all held by the indexes a page walks."""
    task_type = list_columns(model)[0]
    return (task_type, model.created_at, model.id)


def outer_columns(members: tuple[sa.ColumnElement[Any], ...]) -> dict[str, sa.ColumnClause[Any]]:
    """A union's columns by name, typed so results convert as the members' would."""
    return {column.name: sa.column(column.name, column.type) for column in members}


def _integer(name: str) -> sa.BindParameter[int]:
    # A limit is written into the SQL, not sent apart: PostgreSQL keeps one plan for a
    # prepared statement, and for a limit it cannot see it plans to read a tenth of the rows.
    return sa.bindparam(name, type_=sa.Integer, literal_execute=True)


# -- statements, built once per shape --------------------------------------------------------


def task_branches(shape: Shape, limited: bool, columns: Any = list_columns) -> list[sa.Select[Any]]:
    """One member per table (and per status or tag) asked for, selecting `columns(model)`.

    `limited` members are ordered and cut to :member_rows rows, each wrapped in a subquery
    (SQLite refuses ORDER BY/LIMIT on a bare member) that is read as `SELECT *`: naming its
    columns again would only lengthen the statement, which costs on every run (see
    `sql_constant`).
    """
    branches = []
    for model in chosen_models(shape):
        for part in split_by_index(shape):
            member = sa.select(*columns(model)).where(*branch_conditions(model, part))
            if limited:
                order = order_columns(model.created_at, model.id, shape.order)
                cut = pin_index(member, model, walked_index(model, part))
                cut = cut.order_by(*order).limit(_integer("member_rows"))
                member = sa.select(sa.literal_column("*")).select_from(cut.subquery())
            branches.append(member)
    return branches


def walked_index(model: TaskModel, part: Shape) -> str:
    """The index a page's member is written to walk in created_at order (see split_by_index).

    A member of one tag walks the tag's index, one of one status its status's index, and
    any other (no status test, or every finished status at once) the created_at index.
    """
    if part.tags:
        leading = ["tag", "created_at"]
    elif part.statuses and not reads_every_finished_status(part):
        leading = ["status", "created_at"]
    else:
        leading = ["created_at"]
    return next(
        index.name
        for index in model.__table__.indexes
        if [column.name for column in index.columns][: len(leading)] == leading
    )


# Engines that take an index hint after a table's name.
INDEX_HINT_DIALECTS = ("mariadb", "mysql")


def pin_index(member: sa.Select[Any], model: TaskModel, index: str) -> sa.Select[Any]:
    """Hold a limited member on the index it walks, where the engine takes a hint.

    Past a cursor, MariaDB may read a status's index by `ref` (status equal, from the
    newest entry) rather than as the range below the cursor on the same index: its costs
    for `ref` on a covering index ignore the range. A page 100,000 rows deep then reads
    tens of thousands of entries instead of its twenty-one. FORCE INDEX costs the range
    as the one way in. Other engines are not given the hint.
    """
    for dialect in INDEX_HINT_DIALECTS:
        member = member.with_hint(model.__table__, f"FORCE INDEX ({index})", dialect)
    return member


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
    the status. The tag index holds the status, so with tags one pass per half of the time
    window reads it alone, grouped by status.
    """
    everything = replace(shape, statuses=())
    if shape.tags:
        return split_by_window(everything)
    return [replace(everything, statuses=(status,)) for status in STATUSES]


def facet_member(model: TaskModel, part: Shape) -> sa.Select[Any]:
    """(task_type, status, count) rows of one table for one part of the facets.

    A part of one status names it as a literal: grouping by a column known to be constant
    still reads it from every row, which doubles the cost of a plain COUNT.
    """
    task_type = list_columns(model)[0]
    conditions = branch_conditions(model, part)
    if len(part.statuses) == 1:
        status = sql_constant(part.statuses[0]).label("status")
        return sa.select(task_type, status, sa.func.count()).select_from(model).where(*conditions)
    return (
        sa.select(task_type, model.status.label("status"), sa.func.count())
        .where(*conditions)
        .group_by(model.status)
    )


@functools.lru_cache(maxsize=512)
def facet_template(shape: Shape) -> sa.CompoundSelect:
    """Counts by (type, status) over every table, with neither of those two filters applied."""
    return sa.union_all(
        *(
            facet_member(model, part)
            for model in MODEL_FOR_TYPE.values()
            for part in facet_parts(shape)
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


def fetch_page(executor: Executor, task_filter: TaskFilter, now: datetime) -> list[TaskRow]:
    """The page's rows, plus one when another page follows, read as the engine does best."""
    dialect = dialect_name(executor)
    if engine_shape(dialect).page != "keys":
        statement, values = page_query(task_filter, now, dialect)
        return [TaskRow(*row) for row in executor.execute(statement, values)]
    shape, values = page_shape_of(task_filter, now)
    keys = executor.execute(keys_template(shape), values | page_values(task_filter)).all()
    return rows_by_key(executor, [(key.task_type, key.id) for key in keys])


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
            return Total(TOTAL_EXACT_UP_TO, "gte")
    return Total(found, "eq")


def count_facets(executor: Executor, task_filter: TaskFilter, now: datetime) -> Facets:
    """Zero-filled counts per status and per type that predict what selecting each gives."""
    shape, values = shape_of(task_filter.first_page, now)
    matrix = {(t, s): 0 for t in TASK_TYPES for s in STATUSES}
    for task_type, status, tasks in executor.execute(facet_template(shape), values):
        matrix[(task_type, status)] += tasks
    types = task_filter.task_types or TASK_TYPES
    statuses = task_filter.statuses or STATUSES
    return Facets(
        status={s: sum(matrix[(t, s)] for t in types) for s in STATUSES},
        task_type={t: sum(matrix[(t, s)] for s in statuses) for t in TASK_TYPES},
        total=sum(matrix[(t, s)] for t in types for s in statuses),
    )


def get_task(executor: Executor, task_id: uuid.UUID) -> TaskDetail | None:
    """One task by id, whichever table holds it."""
    for model in MODEL_FOR_TYPE.values():
        listed = len(LIST_COLUMNS)
        statement = sa.select(*list_columns(model), *model.detail_columns())
        found = executor.execute(statement.where(model.id == task_id)).first()
        if found is not None:
            details = dict(zip(found._fields[listed:], found[listed:], strict=True))
            return TaskDetail(TaskRow(*found[:listed]), details)
    return None


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
