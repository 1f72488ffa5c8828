"""What a metrics scrape reads of the tasks: counts that follow the active tasks and the
last hours, never the size of the tables."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, TASK_TYPES, Status, UTCDateTime, sql_constant
from app.query.counts import count_by_type_and_status
from app.query.engines import Executor
from app.query.rows import list_columns
from app.query.shapes import heard_before, shape_of


@dataclass(frozen=True)
class TaskGauges:
    """What a metrics scrape reports of the tasks, each count exact and zero-filled.

    `by_status` holds every queued and running task, and the tasks finished in the recent
    hours; `silent` the running tasks not heard from in those hours (the stalled tasks'
    `last_heard`, app/stalled.py).
    """

    by_status: dict[tuple[str, str], int]
    silent: dict[str, int]


@functools.cache
def silent_template() -> sa.CompoundSelect:
    """(task_type, count) of running tasks last heard before :silent_since, per table.

    Each member reads one range of the (status, updated_at) index, the stalled filter's:
    a cost that follows the silent running tasks, not the table.
    """
    running = sql_constant(Status.RUNNING.value)
    silent_since = sa.bindparam("silent_since", type_=UTCDateTime())
    return sa.union_all(
        *(
            sa.select(list_columns(model)[0], sa.func.count())
            .select_from(model)
            .where(model.status == running, heard_before(model, silent_since))
            for model in MODEL_FOR_TYPE.values()
        )
    )


def task_gauges(executor: Executor, now: datetime, hours: int) -> TaskGauges:
    """The task gauges, in two statements.

    The counts by status are the exact facets of a window of `hours`: queued and running
    tasks counted on their status's index whatever their age (the active sets are small),
    finished ones on a range of the (status, finished_at) index.
    """
    shape, values = shape_of(TaskFilter(within_hours=hours), now)
    since = now - timedelta(hours=hours)
    silent = dict.fromkeys(TASK_TYPES, 0)
    for task_type, tasks in executor.execute(silent_template(), {"silent_since": since}):
        silent[task_type] = tasks
    return TaskGauges(by_status=count_by_type_and_status(executor, shape, values), silent=silent)
