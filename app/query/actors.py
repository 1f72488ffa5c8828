"""Tasks someone acted on (`actor=`): which of each table's tasks the actor's events name.

An actor's tasks are few in most tables (a person who cancelled a dozen runs) or most of
one table (a module's own tasks, every one of which it created). Tested row by row (an
EXISTS on task_event for each task a page walks), a rare actor costs a walk of the whole
table, and a table the actor never touched is walked to its end to find nothing: at a
million tasks, 1.2 s on SQLite and 4 s on PostgreSQL for one first page. So before the
tasks are read, each table's share of the actor's tasks is looked up on task_event's
(actor, task_type, task_id) index, up to one more distinct task than a threshold per table
(the index holds each task's events in a row, so the read stops there):

- none: the table's member matches nothing, and the engine reads none of its rows;
- up to `LISTED_UP_TO` tasks: their ids are bound as a list, and the member reads those
  rows by primary key, as one member (app/query/pages.py) and, in a chart, one grouped
  read (app/query/histogram.py), so that a statement binds each list a few times at most;
- up to `GATHERED_UP_TO`: too many to bind, and too few for a walk (a person who cancelled
  2,000 runs of a table of two million: a page walks 50,000 rows to find 50 of them, and a
  count walks the whole table). The member gathers them from the same index, in the
  statement, and reads those rows by primary key;
- more: the member tests each row it walks, which then finds matches densely.

A list is padded to a power of two (repeating its last id), so that PostgreSQL's driver
keeps a few prepared forms of a statement rather than one per length.

The lookup happens once per request: the filter carries it (`TaskFilter.actor_tasks`)
through every statement built from it (app/query/lookups.py).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, replace

import sqlalchemy as sa

from app.filters import TaskFilter
from app.models import TASK_TYPES, TaskEvent, sql_constant
from app.query.engines import Executor

# An IN list of this many ids is read by primary key in a few milliseconds on every engine,
# and bound a few times in a statement it stays far below SQLite's 32,766 parameters.
LISTED_UP_TO = 500
# Up to this many, an actor's tasks of a table are gathered from task_event's index and
# read by primary key (a few milliseconds per thousand); past it, walked for. Counting them
# up to it is one read of the index, which an actor with more tasks (a module, which
# created every task of its table) stops at.
GATHERED_UP_TO = 10_000


@dataclass(frozen=True)
class ActorTasks:
    """The tasks `actor` acted on, for each table where they are few (possibly none)."""

    actor: str
    listed: tuple[tuple[str, tuple[uuid.UUID, ...]], ...]
    gathered: tuple[str, ...] = ()


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


def gathered_tables(task_filter: TaskFilter) -> tuple[str, ...]:
    """The tables whose tasks the filter's actor acted on are gathered in the statement
    (none before the lookup)."""
    known = looked_up(task_filter)
    return known.gathered if known is not None else ()


@functools.lru_cache(maxsize=len(TASK_TYPES))
def actor_task_count_template(task_type: str) -> sa.Select[tuple[int]]:
    """How many distinct tasks of a type the actor acted on, up to one more than
    `GATHERED_UP_TO`: one index range, cut there."""
    found = actor_tasks_template(task_type).limit(GATHERED_UP_TO + 1).subquery("found")
    return sa.select(sa.func.count()).select_from(found)


def look_up_actor_tasks(executor: Executor, actor: str) -> ActorTasks:
    """Each table's share of the actor's tasks: listed where it is at most `LISTED_UP_TO`,
    gathered where it is at most `GATHERED_UP_TO` (a second read, for the tables past the
    list alone)."""
    listed, gathered = [], []
    for task_type in TASK_TYPES:
        rows = executor.execute(actor_tasks_template(task_type), {"actor": actor})
        ids = tuple(rows.scalars())
        if len(ids) <= LISTED_UP_TO:
            listed.append((task_type, ids))
            continue
        count = executor.execute(actor_task_count_template(task_type), {"actor": actor})
        if count.scalar_one() <= GATHERED_UP_TO:
            gathered.append(task_type)
    return ActorTasks(actor, tuple(listed), tuple(gathered))


def with_actor_tasks(executor: Executor, task_filter: TaskFilter) -> TaskFilter:
    """The filter, carrying its actor's tasks (looked up once, see the module's docstring)."""
    actor = task_filter.actor
    if actor is None or looked_up(task_filter) is not None:
        return task_filter
    return replace(task_filter, actor_tasks=look_up_actor_tasks(executor, actor))
