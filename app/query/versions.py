"""Data versions: the newest `updated_at` of each task table and the newest event (one
index step each), and the minute.

Every write a module makes sets `updated_at` (the Recorder does; a module writing the
tables in SQL must too), so the newest `updated_at` of a table moves whenever one of its
tasks is created or changes. A person's cancel request on a running task leaves
`updated_at` alone (it is when the module was last heard from, which stalled tasks are
told by) and records an event, like every action: the newest event id moves then. Read
before anything else, the version tells a view that has not changed from one that has,
without listing or counting: the page answers an unchanged live refresh from it alone, and
viewers of one view share its counts under it (app/cache.py).

A deleted task does not move it, nor does a change committed after a later one (its
`updated_at` is older than the newest), nor a time window's start moving past a task: the
version holds the minute too, so these show within a minute. The minute is also the one the
page writes its relative times for ("5 min ago"), which change with it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app.clock import display_now
from app.filters import format_timestamp
from app.models import MODEL_FOR_TYPE, TaskEvent
from app.query.engines import Executor


@dataclass(frozen=True)
class DataVersion:
    """The newest `updated_at` of each table, in `TASK_TYPES` order (None when empty), the
    newest event's id, and the minute they were read in."""

    newest: tuple[datetime | None, ...]
    minute: datetime
    newest_event: int | None = None

    @property
    def token(self) -> str:
        """A short text that changes whenever any of the instants, or the event, does."""
        moments = (*self.newest, self.minute)
        text = "|".join(format_timestamp(moment) if moment else "-" for moment in moments)
        text += f"|{self.newest_event}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@functools.cache
def version_statement() -> sa.Select[tuple[datetime | None, ...]]:
    """One row: each table's newest `updated_at`, then the newest event's id, each a scalar
    subquery.

    `max()` of an indexed column alone is read from the end of its index on every engine
    (tests/test_query_plans.py shows each plan), however many tasks the table holds.
    """
    newest = [
        sa.select(sa.func.max(model.updated_at)).scalar_subquery().label(task_type)
        for task_type, model in MODEL_FOR_TYPE.items()
    ]
    event = sa.select(sa.func.max(TaskEvent.id)).scalar_subquery().label("newest_event")
    return sa.select(*newest, event)


def data_version(executor: Executor, now: datetime) -> DataVersion:
    """Where every task table stands at `now`.

    All five tables, whatever the filter: the page's type chips count every type (each
    with every other filter applied), so a change in any table can change what it shows.
    """
    *newest, newest_event = executor.execute(version_statement()).one()
    return DataVersion(tuple(newest), display_now(now), newest_event)
