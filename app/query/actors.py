"""Tasks someone acted on (`actor=`): which of each table's tasks the actor's events name.

An actor's tasks are few in most tables (a person who cancelled a dozen runs) or most of
one table (a module's own tasks, every one of which it created). Tested row by row (an
EXISTS on task_event for each task a page walks), a rare actor costs a walk of the whole
table, and a table the actor never touched is walked to its end to find nothing: at a
million tasks, 1.2 s on SQLite and 4 s on PostgreSQL for one first page. So before the
tasks are read, each table's share of the actor's tasks is looked up:

- the database keeps how many tasks of each type and status each actor's events name
  (`actor_task_count`) and a row of each of those tasks in created order (`actor_task`),
  both kept by triggers (see migrations/versions/0017_actor_tasks.py); one read of the
  actor's few counts tells each table's share;
- none: the table's member matches nothing, and the engine reads none of its rows;
- up to `LISTED_UP_TO` tasks: their ids, read from task_event's (actor, task_type,
  task_id) index, are bound as a list, and the member reads those rows by primary key, as
  one member (app/query/pages.py) and, in a chart, one grouped read
  (app/query/histogram.py), so that a statement binds each list a few times at most;
- up to `GATHERED_UP_TO`: too many to bind, and too few for a walk (a person who cancelled
  2,000 runs of a table of two million: a page walks 50,000 rows to find 50 of them, and a
  count walks the whole table). A page walks the actor's rows of actor_task in its order
  and reads each task by primary key (`actor_walk`, app/query/pages.py); a count or a
  chart gathers them from the same index, in the statement, and reads those rows by key;
- more: the member tests each row it walks, which then finds matches densely.

Whether a table has none or a few is told by the index itself, as the list is read: the
kept counts only spare a module's table of tens of thousands the read of 10,001 of them
(14 ms of a first page at a million tasks, on SQLite). The counts of an actor with types
and statuses alone are the kept counts' sums (`counted_by_actor`, app/query/counts.py).

A list is padded to a power of two (repeating its last id), so that PostgreSQL's driver
keeps a few prepared forms of a statement rather than one per length.

The lookup happens once per request: the filter carries it (`TaskFilter.actor_tasks`)
through every statement built from it (app/query/lookups.py).
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from dataclasses import dataclass, replace

import sqlalchemy as sa

from app.filters import TaskFilter
from app.models import TASK_TYPES, ActorType, TaskEvent, UTCDateTime, UUIDType, sql_constant
from app.query.engines import Executor

# An IN list of this many ids is read by primary key in a few milliseconds on every engine,
# and bound a few times in a statement it stays far below SQLite's 32,766 parameters.
LISTED_UP_TO = 500
# Up to this many, an actor's tasks of a table are gathered from task_event's index and
# read by primary key (a few milliseconds per thousand); past it, walked for.
GATHERED_UP_TO = 10_000

# The counts as revision 0017 makes them; only its triggers write them, so the models leave
# them out.
ACTOR_COUNTS = sa.Table(
    "actor_task_count",
    sa.MetaData(),
    sa.Column("actor", ActorType, primary_key=True),
    sa.Column("task_type", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("tasks", sa.BigInteger, nullable=False),
)
# One row per task and actor of its events, in the order a page walks them (revision 0017).
ACTOR_TASKS = sa.Table(
    "actor_task",
    sa.MetaData(),
    sa.Column("actor", ActorType, primary_key=True),
    sa.Column("task_type", sa.String(32), primary_key=True),
    sa.Column("created_at", UTCDateTime, primary_key=True),
    sa.Column("task_id", UUIDType, primary_key=True),
)


@dataclass(frozen=True)
class ActorTasks:
    """The tasks `actor` acted on, for each table where they are few (possibly none)."""

    actor: str
    listed: tuple[tuple[str, tuple[uuid.UUID, ...]], ...]
    gathered: tuple[str, ...] = ()
    # (task_type, status, tasks): the kept counts of the actor's tasks, where not zero.
    counted: tuple[tuple[str, str, int], ...] = ()
    # Walked tables whose running tasks are all the actor's (see `with_running_covered` in
    # app/query/counts.py).
    running_covered: tuple[str, ...] = ()


def looked_up(task_filter: TaskFilter) -> ActorTasks | None:
    """The tasks the filter carries for its own actor; None before the lookup (or for a
    lookup of another actor, which a changed filter may still carry)."""
    known = task_filter.actor_tasks
    return known if known is not None and known.actor == task_filter.actor else None


def listed_ids(task_filter: TaskFilter) -> dict[str, list[uuid.UUID]]:
    """The tables whose tasks the filter's actor acted on are listed, and their padded ids
    (empty where it acted on none); none before the lookup."""
    known = looked_up(task_filter)
    if known is None:
        return {}
    return {task_type: padded(list(ids)) for task_type, ids in known.listed}


def padded(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """`ids`, the last repeated up to the next power of two (at least 8)."""
    if not ids:
        return ids
    length = max(8, 1 << (len(ids) - 1).bit_length())
    return ids + [ids[-1]] * (length - len(ids))


@functools.lru_cache(maxsize=len(TASK_TYPES))
def actor_tasks_template(task_type: str) -> sa.Select[tuple[uuid.UUID]]:
    """Up to one more than `LISTED_UP_TO` distinct tasks of a type, one index range."""
    return (
        sa.select(TaskEvent.task_id)
        .where(
            TaskEvent.actor == sa.bindparam("actor", type_=TaskEvent.actor.type),
            TaskEvent.task_type == sql_constant(task_type),
        )
        .distinct()
        .limit(LISTED_UP_TO + 1)
    )


def walked_tables(task_filter: TaskFilter) -> tuple[str, ...]:
    """The tables where the filter's actor is tested row by row: neither listed nor gathered
    (none before the lookup)."""
    known = looked_up(task_filter)
    if known is None:
        return ()
    bounded = {task_type for task_type, _ in known.listed} | set(known.gathered)
    return tuple(t for t in TASK_TYPES if t not in bounded)


def running_covered(task_filter: TaskFilter) -> tuple[str, ...]:
    """The walked tables whose running tasks the filter carries as all its actor's."""
    known = looked_up(task_filter)
    return known.running_covered if known is not None else ()


def gathered_tables(task_filter: TaskFilter) -> tuple[str, ...]:
    """The tables whose tasks the filter's actor acted on are gathered in the statement
    (none before the lookup)."""
    known = looked_up(task_filter)
    return known.gathered if known is not None else ()


@functools.cache
def kept_counts_template() -> sa.Select[tuple[str, str, int]]:
    """The actor's kept counts: one range of the counts' primary key."""
    return sa.select(ACTOR_COUNTS.c.task_type, ACTOR_COUNTS.c.status, ACTOR_COUNTS.c.tasks).where(
        ACTOR_COUNTS.c.actor == sa.bindparam("actor", type_=ACTOR_COUNTS.c.actor.type),
        ACTOR_COUNTS.c.tasks > sql_constant(0),
    )


def look_up_actor_tasks(executor: Executor, actor: str) -> ActorTasks:
    """Each table's share of the actor's tasks: walked where the kept counts say it is more
    than `GATHERED_UP_TO`, else listed where its ids are at most `LISTED_UP_TO`, else
    gathered."""
    rows = executor.execute(kept_counts_template(), {"actor": actor})
    counted = tuple((task_type, status, tasks) for task_type, status, tasks in rows)
    per_type = Counter[str]()
    for task_type, _, tasks in counted:
        per_type[task_type] += tasks
    listed, gathered = [], []
    for task_type in TASK_TYPES:
        if per_type[task_type] > GATHERED_UP_TO:
            continue
        ids = tuple(executor.execute(actor_tasks_template(task_type), {"actor": actor}).scalars())
        if len(ids) <= LISTED_UP_TO:
            listed.append((task_type, ids))
        else:
            gathered.append(task_type)
    return ActorTasks(actor, tuple(listed), tuple(gathered), counted)


def kept_counts(task_filter: TaskFilter) -> dict[tuple[str, str], int]:
    """The tasks of the filter's actor per (type, status), from the kept counts; zero where
    none is kept (and everywhere before the lookup)."""
    known = looked_up(task_filter)
    found = Counter[tuple[str, str]]()
    for task_type, status, tasks in known.counted if known is not None else ():
        found[task_type, status] += tasks
    return found


def with_actor_tasks(executor: Executor, task_filter: TaskFilter) -> TaskFilter:
    """The filter, carrying its actor's tasks (looked up once, see the module's docstring)."""
    actor = task_filter.actor
    if actor is None or looked_up(task_filter) is not None:
        return task_filter
    return replace(task_filter, actor_tasks=look_up_actor_tasks(executor, actor))
