"""What a filter's SQL looks like apart from its values, and the WHERE clause of each member.

A filter becomes a `Shape` (which tables, statuses, tags and bounds are written) and the
values of its parameters; members are split so that each walks or counts one index range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.filters import Cursor, Order, TaskFilter
from app.models import (
    ACTIVE_STATUSES,
    MODEL_FOR_TYPE,
    TASK_TYPES,
    TERMINAL_STATUSES,
    Status,
    TaskEvent,
    TaskModel,
    UTCDateTime,
    sql_constant,
)
from app.query.actors import gathered_tables, listed_ids, running_covered
from app.query.engines import ExistsPerRow, Greatest, RunningHeardBefore, SecondsBefore
from app.query.search import (
    search_conditions,
    search_reach,
    search_terms,
    search_values,
    unpaired_phrases,
)
from app.stalled import last_heard

ACTIVE = tuple(status.value for status in ACTIVE_STATUSES)
TERMINAL = tuple(status.value for status in TERMINAL_STATUSES)
STATUSES = tuple(status.value for status in Status)

Values = dict[str, Any]


@dataclass(frozen=True)
class Shape:
    """The parts of a filter that change the SQL; values are bound parameters.

    `tags` holds the names of the tag parameters. `after`, `before` and `cursor` say which
    created_at bounds are written (see `created_bounds`). `page` says that the members walk
    the created_at order to fill a page, rather than count: members with a time window then
    get their created_at floor (see `has_floor`), and one that reads every finished status
    leaves out its status test (see `reads_every_finished_status`). `actor` and `stalled`
    say that the members carry those tests (see `actor_condition`, `stalled_condition`);
    `actor_listed` names the tables whose tasks the actor acted on are bound as a list,
    `actor_gathered` those where the statement gathers them, `actor_absent` those where it
    acted on none; beside `stalled`, `actor_running_covered` names those whose running tasks
    are all the actor's, where the actor is not tested. `search_absent` names the tables
    where no task has the search's words (see app/query/search.py). `search_words` counts
    the terms the words tables are asked for (words, and pairs of neighbouring words, see
    `search_terms`), and `search_unpaired` names the phrases of three words or more, whose
    text is tested besides. On MariaDB, once its terms are looked up, `search_probed` says
    that each row is tested in the words tables, and `search_gathered` names the tables
    whose few matches are handed over instead of walked for (see `probe_conditions`). On
    SQLite, `search_horizon` names the tables whose page reads only their newest rows and
    their matches among them (see app/query/horizons.py). `search_running` says that a
    stalled count reads the running tasks holding the words from the words tables (see
    `running_matches`).
    """

    task_types: tuple[str, ...]
    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    error_group: bool = False
    window: bool = False
    after: bool = False
    before: bool = False
    cursor: bool = False
    order: Order = "desc"
    page: bool = False
    actor: bool = False
    actor_listed: tuple[str, ...] = ()
    actor_gathered: tuple[str, ...] = ()
    actor_absent: tuple[str, ...] = ()
    actor_running_covered: tuple[str, ...] = ()
    stalled: bool = False
    search_phrases: int = 0
    search_ids: int = 0
    search_absent: tuple[str, ...] = ()
    search_words: int = 0
    search_unpaired: tuple[int, ...] = ()
    search_probed: bool = False
    search_gathered: tuple[str, ...] = ()
    search_horizon: tuple[str, ...] = ()
    search_running: bool = False


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
    if task_filter.error_group is not None:
        values["error_group"] = task_filter.error_group
    if task_filter.within_hours is not None:
        values["since"] = now - timedelta(hours=task_filter.within_hours)
    if after is not None:
        values["after"] = after
    if before is not None:
        values["before"] = before
    if cursor is not None:
        values["cursor_at"], values["cursor_id"] = cursor.created_at, cursor.id
    if task_filter.actor is not None:
        values["actor"] = values["actor_named"] = task_filter.actor
    actor_listed = listed_ids(task_filter)
    values |= {f"actor_ids_{t}": ids for t, ids in actor_listed.items() if ids}
    if task_filter.stalled:
        heard_before = task_filter.stall_limits.heard_before(now)
        values |= {f"heard_before_{t}": moment for t, moment in heard_before.items()}
    search = task_filter.search
    if search is not None:
        values.update(search_values(search))
    reach = search_reach(task_filter)
    shape = Shape(
        task_types=task_filter.task_types or TASK_TYPES,
        statuses=read_statuses(task_filter),
        tags=tags,
        error_group=task_filter.error_group is not None,
        window=task_filter.within_hours is not None,
        after=after is not None,
        before=before is not None,
        cursor=cursor is not None,
        order=task_filter.order,
        actor=task_filter.actor is not None,
        actor_listed=tuple(t for t, ids in actor_listed.items() if ids),
        actor_gathered=gathered_tables(task_filter),
        actor_absent=tuple(t for t, ids in actor_listed.items() if not ids),
        actor_running_covered=running_covered(task_filter) if task_filter.stalled else (),
        stalled=task_filter.stalled,
        search_phrases=len(search.phrases) if search else 0,
        search_ids=len(search.ids) if search else 0,
        search_absent=reach.absent if reach else (),
        search_words=len(search_terms(search)) if search else 0,
        search_unpaired=unpaired_phrases(search) if search else (),
        search_probed=bool(reach and reach.probed and not reach.pages_only),
        search_gathered=reach.gathered if reach else (),
    )
    return shape, values


def read_statuses(task_filter: TaskFilter) -> tuple[str, ...]:
    """The statuses a filter's members read: its own, unless stalled tasks (running) or an
    error group (failed) narrow them to the one status that can match."""
    if task_filter.stalled:
        return stalled_statuses(task_filter)
    return error_group_statuses(task_filter)


def stalled_statuses(task_filter: TaskFilter) -> tuple[str, ...]:
    """The statuses a stalled filter reads: running, unless the status filter leaves it out.

    Naming running puts each member on the running range of the status's index, a cost that
    follows the running tasks; a status filter without running keeps its statuses, and the
    stalled test (which asks for running) then matches none of them.
    """
    running = Status.RUNNING.value
    if not task_filter.statuses or running in task_filter.statuses:
        return (running,)
    return task_filter.statuses


def error_group_statuses(task_filter: TaskFilter) -> tuple[str, ...]:
    """The statuses a filter reads: only failed tasks have an error group, so a filter by
    one reads the failed ones alone, on the (status, error_group, created_at) index."""
    if task_filter.error_group is not None and not task_filter.statuses:
        return (Status.FAILED.value,)
    return task_filter.statuses


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
    reach = search_reach(task_filter)
    probed = shape.search_probed or bool(reach and reach.probed)
    return replace(shape, page=True, search_probed=probed), values


def chosen_models(shape: Shape) -> list[TaskModel]:
    """The tables the filter asks for; the others are not queried at all."""
    return [MODEL_FOR_TYPE[task_type] for task_type in shape.task_types]


def reads_each_task(shape: Shape) -> bool:
    """Whether the filter tests what only a task's own row or events tell (a tag, an error
    group, an actor, stalled, a cursor), which no summary or search index counts."""
    return bool(shape.tags or shape.error_group or shape.actor or shape.stalled or shape.cursor)


def tables_with_matches(shape: Shape) -> tuple[str, ...]:
    """The tables asked for where the search's words are at all and the actor acted on
    some task, as far as the lookups tell: a member of any other matches nothing."""
    skipped = set(shape.search_absent) | set(shape.actor_absent)
    return tuple(t for t in shape.task_types if t not in skipped)


def keyset_on(created_at: Any, task_id: Any, order: Order) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor (:cursor_at, :cursor_id) in the listing's order, on
    two columns that hold a task's created_at and id (its table's, or actor_task's).

    Written as `created_at <= :ts AND (created_at < :ts OR id < :id)`: the leading range on
    created_at is what lets every engine use the index as a range, which neither the bare OR
    form nor (on MariaDB) the row-value form `(created_at, id) < (:ts, :id)` does.
    """
    at, cursor_id = sa.bindparam("cursor_at"), sa.bindparam("cursor_id")
    if order == "desc":
        return sa.and_(created_at <= at, sa.or_(created_at < at, task_id < cursor_id))
    return sa.and_(created_at >= at, sa.or_(created_at > at, task_id > cursor_id))


def created_bounds_on(
    created_at: Any, task_id: Any, shape: Shape, floor: sa.ColumnElement[Any] | None = None
) -> list[sa.ColumnElement[bool]]:
    """The shape's created_at bounds and cursor, on any two columns that hold a task's
    created_at and id; `floor`, if given, is the lower bound in place of `after`."""
    bounds = []
    if floor is not None:
        bounds.append(created_at >= floor)
    elif shape.after:
        bounds.append(created_at >= sa.bindparam("after"))
    if shape.before:
        bounds.append(created_at < sa.bindparam("before"))
    if shape.cursor:
        bounds.append(keyset_on(created_at, task_id, shape.order))
    return bounds


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
    the cursor as its one lower bound. A count without a tag gets one only beside a
    created_at bound: it otherwise reads a range of the (status, finished_at) index, but
    given `created_at < :before` an engine may read that longer range of the (status,
    created_at) index instead, and the floor bounds it from below. A count with a tag reads
    the (tag, status, created_at) index, where the floor is what bounds the range.
    """
    finished_only = bool(shape.statuses) and set(shape.statuses) <= set(TERMINAL)
    walks_created_at = shape.page or shape.after or shape.before or bool(shape.tags)
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
    if shape.error_group:
        conditions.append(model.error_group == sa.bindparam("error_group"))
    if shape.window and (window := window_condition(model, shape.statuses)) is not None:
        conditions.append(window)
    # The floor holds `after` when that is higher: one bound a side.
    floor = window_floor(model, shape) if has_floor(shape) else None
    conditions += created_bounds_on(model.created_at, model.id, shape, floor)
    if shape.stalled:
        conditions.append(stalled_condition(model, shape))
    if shape.actor:
        conditions.append(actor_condition(model, shape))
    conditions += search_conditions(model, shape)
    return conditions


def stalled_condition(model: TaskModel, shape: Shape) -> sa.ColumnElement[bool]:
    """Running, and last heard before :heard_before_<type> (the type's limit ago).

    With running as the member's one status the status test is already written. A member
    of other statuses alone matches nothing, said as a constant so that the engine reads
    none of its rows (a status filter without running, or a facet of another status: the
    finished ones are most of a table). Otherwise the status test is written here.
    """
    moment = sa.bindparam(f"heard_before_{model.task_type}", type_=UTCDateTime())
    heard = heard_before(model, moment)
    running = Status.RUNNING.value
    if shape.statuses and running not in shape.statuses:
        return sa.false()
    if tag_walk_bounded(shape):
        heard = sa.and_(heard, model.created_at < moment)
    if shape.statuses == (running,):
        return heard
    return sa.and_(statuses_condition(model, (running,)), heard)


def tag_walk_bounded(shape: Shape) -> bool:
    """Whether stalled tasks of a tag are read up to their limit on created_at too.

    A stalled task was created before it was last heard from (see `walk_bounds` in
    app/query/pages.py), so `created_at < :heard_before_<type>` holds for each. Beside a tag
    it bounds the tag's running range of the (tag, status, created_at) index: without it,
    a count reads every stalled task of every tag from (status, updated_at) and each row to
    learn its tag, 20 ms for one tag at ten million tasks. Left out beside another upper
    bound on created_at (an engine takes one bound a side, see `created_bounds`).
    """
    return bool(shape.stalled and shape.tags and not shape.before and not shape.cursor)


def heard_before(model: TaskModel, moment: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    """Last heard before `moment`, beside a test that the task is running (see
    `RunningHeardBefore`: it keeps every engine on the running range of a status index)."""
    running = sql_constant(Status.RUNNING.value)
    return RunningHeardBefore(model.status, last_heard(model), running, moment)


def actor_condition(model: TaskModel, shape: Shape) -> sa.ColumnElement[bool]:
    """The actor acted on the task: one of the table's listed ids, none if the list is
    empty (an engine then reads no row), one of the ids the statement gathers from
    task_event's (actor, type, id) index, else an EXISTS on that index for each row (see
    app/query/actors.py).

    The gathering names its actor in the statement's text, not as a parameter. PostgreSQL
    plans the app's statements once for any values (`plan_once`), and for an actor it
    cannot see it expects a share of the whole table and walks it beside the ids (all
    200,000 keys of a table at a million tasks, to find 2,000): it reads the ids first once
    its statistics say how many the actor has.
    """
    if model.task_type in shape.actor_absent:
        return sa.false()
    if model.task_type in shape.actor_running_covered:
        return sa.true()  # a stalled task is running, and every running task is the actor's
    if model.task_type in shape.actor_listed:
        return model.id.in_(sa.bindparam(f"actor_ids_{model.task_type}", expanding=True))
    actor = TaskEvent.actor == sa.bindparam("actor", type_=TaskEvent.actor.type)
    of_type = TaskEvent.task_type == sql_constant(model.task_type)
    if model.task_type in shape.actor_gathered:
        named = sa.bindparam("actor_named", type_=TaskEvent.actor.type, literal_execute=True)
        return model.id.in_(sa.select(TaskEvent.task_id).where(TaskEvent.actor == named, of_type))
    event = sa.select(sql_constant(1)).where(actor, of_type, TaskEvent.task_id == model.id)
    return ExistsPerRow(event)


def reads_every_finished_status(shape: Shape) -> bool:
    """Whether a page's member reads exactly the tasks finished since the window's start.

    Such a member writes no status test: `finished_at >= :since` holds only for finished
    tasks (a CHECK constraint sees to it), and a `status IN (...)` beside it could lead an
    engine to read that range of the (status, finished_at) index and sort every match
    instead of walking created_at. Counts keep the test, which is what puts them on that
    index.
    """
    every = shape.page and shape.window and set(shape.statuses) == set(TERMINAL)
    return every and not shape.error_group


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
        walk_all = shape.page and shape.window and not shape.error_group
        if walk_all and set(TERMINAL) <= set(shape.statuses):
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


def _integer(name: str) -> sa.BindParameter[int]:
    # A limit is written into the SQL, not sent apart: PostgreSQL keeps one plan for a
    # prepared statement, and for a limit it cannot see it plans to read a tenth of the rows.
    return sa.bindparam(name, type_=sa.Integer, literal_execute=True)
