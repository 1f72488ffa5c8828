"""What an operator may do to a task: cancel it, or retry it. Nothing here reads `request`.

Every change is one compare-and-set statement, as in the recorder: the UPDATE (or the
INSERT … SELECT of a retry) names the statuses it may start from, so when an operator's
cancel races a module's completion the database lets one of them match, and the other
learns the task had moved on. Each change is made by one function (`cancel_queued`,
`request_cancel`, `insert_retry`) inside the action's transaction, and recorded there as an
event (app/events.py) naming who acted, only when its compare-and-set matched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice
from typing import Any

import sqlalchemy as sa

from app.events import record_event
from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, EventKind, Status, TaskModel, UTCDateTime, UUIDType
from app.query import iter_tasks

# The statuses a retry may start from.
RETRYABLE = (Status.FAILED, Status.CANCELLED)


class TaskMissing(LookupError):
    """No task has that id."""


class ActionConflict(RuntimeError):
    """The task's status does not allow the action: 409, with the status it has."""

    def __init__(self, message: str, status: str, retried_as: uuid.UUID | None = None):
        super().__init__(message)
        self.status = status
        self.retried_as = retried_as


@dataclass(frozen=True)
class ActionResult:
    """What an action did: `cancelled`, `cancel_requested` or `retried` (with the new task)."""

    task_type: str
    task_id: uuid.UUID
    outcome: str
    status: str
    new_task_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, Any]:
        """The API's answer."""
        body: dict[str, Any] = {
            "id": str(self.task_id),
            "task_type": self.task_type,
            "outcome": self.outcome,
            "status": self.status,
        }
        if self.new_task_id is not None:
            body["new_task_id"] = str(self.new_task_id)
        return body


def find_task_type(connection: sa.Connection, task_id: uuid.UUID) -> str:
    """Which table holds the task; TaskMissing when none does."""
    for task_type, model in MODEL_FOR_TYPE.items():
        found = connection.execute(sa.select(model.id).where(model.id == task_id)).first()
        if found is not None:
            return task_type
    raise TaskMissing(f"no task has id {task_id}")


def task_type_of(engine: sa.Engine, task_id: uuid.UUID) -> str:
    """Which table holds the task, read in a transaction of its own."""
    with engine.connect() as connection:
        return find_task_type(connection, task_id)


def current_state(connection: sa.Connection, model: TaskModel, task_id: uuid.UUID) -> Any:
    """The task's status and cancel request as the database holds them now."""
    statement = sa.select(model.status, model.cancel_requested_at).where(model.id == task_id)
    row = connection.execute(statement).first()
    if row is None:
        raise TaskMissing(f"no task has id {task_id}")
    return row


# -- cancel ------------------------------------------------------------------------------------


def cancel_queued(
    connection: sa.Connection, model: TaskModel, task_id: uuid.UUID, now: datetime, actor: str
) -> bool:
    """queued → cancelled, at once: no module has the task yet."""
    statement = (
        sa.update(model)
        .where(model.id == task_id, model.status == Status.QUEUED.value)
        .values(status=Status.CANCELLED.value, finished_at=now, updated_at=now)
    )
    if connection.execute(statement).rowcount != 1:
        return False
    record_event(connection, model.task_type, task_id, EventKind.CANCELLED, actor, at=now)
    return True


def request_cancel(
    connection: sa.Connection, model: TaskModel, task_id: uuid.UUID, now: datetime, actor: str
) -> bool:
    """Mark a running task cancel-requested; its module stops and confirms (Recorder.cancel).

    `updated_at` stays when the module was last heard from: a person asking to cancel a
    stalled task must not make it look alive. Open pages see the request by its event
    (app/query/versions.py).
    """
    statement = (
        sa.update(model)
        .where(
            model.id == task_id,
            model.status == Status.RUNNING.value,
            model.cancel_requested_at.is_(None),
        )
        .values(cancel_requested_at=now)
    )
    if connection.execute(statement).rowcount != 1:
        return False
    kind = EventKind.CANCEL_REQUESTED
    record_event(connection, model.task_type, task_id, kind, actor, at=now)
    return True


def cancel_task(
    engine: sa.Engine,
    task_id: uuid.UUID,
    now: datetime,
    actor: str,
    task_type: str | None = None,
) -> ActionResult:
    """Cancel a queued task, or ask a running one to stop; ActionConflict once it finished.

    The two moves are tried in the order a task lives, each a compare-and-set: a task that
    started between them is asked to stop, one that finished is reported as it ended.
    Asking again while a request stands answers as the first time did.
    """
    task_type = task_type or task_type_of(engine, task_id)
    model = MODEL_FOR_TYPE[task_type]
    # The moves come first in their transaction: on MariaDB a read before them would fix
    # the snapshot the final read sees, and report a status the task has already left.
    with engine.begin() as connection:
        if cancel_queued(connection, model, task_id, now, actor):
            return ActionResult(task_type, task_id, "cancelled", Status.CANCELLED.value)
        if request_cancel(connection, model, task_id, now, actor):
            return ActionResult(task_type, task_id, "cancel_requested", Status.RUNNING.value)
        state = current_state(connection, model, task_id)
    if state.status == Status.RUNNING.value and state.cancel_requested_at is not None:
        return ActionResult(task_type, task_id, "cancel_requested", state.status)
    raise ActionConflict(
        f"task {task_id} is {state.status}; only an active task can be cancelled", state.status
    )


# -- retry -------------------------------------------------------------------------------------


def insert_retry(
    connection: sa.Connection, model: TaskModel, task_id: uuid.UUID, now: datetime, actor: str
) -> uuid.UUID | None:
    """A new queued task with the old one's type, inputs and tag, made only while the old
    one is failed or cancelled (INSERT … SELECT: the status is read by the same statement)."""
    new_id = uuid.uuid4()
    copied = ["tag", *model.input_columns()]
    constants = {
        "id": sa.literal(new_id, UUIDType),
        "status": sa.literal(Status.QUEUED.value, sa.String),
        "created_at": sa.literal(now, UTCDateTime),
        "updated_at": sa.literal(now, UTCDateTime),
    }
    source = sa.select(
        *constants.values(),
        *(getattr(model, name) for name in copied),
        model.id,
    ).where(model.id == task_id, model.status.in_([s.value for s in RETRYABLE]))
    statement = sa.insert(model).from_select([*constants, *copied, "retry_of"], source)
    connection.execute(statement)
    # Whether the SELECT matched, read back in the same transaction: drivers do not agree on
    # the row count of an INSERT … SELECT (psycopg's is lost with its cursor).
    made = connection.execute(sa.select(model.id).where(model.id == new_id)).first()
    if made is None:
        return None
    task_type = model.task_type
    note = f"retried as {new_id}"
    record_event(connection, task_type, task_id, EventKind.RETRIED, actor, note, at=now)
    note = f"a retry of {task_id}"
    record_event(connection, task_type, new_id, EventKind.CREATED, actor, note, at=now)
    return new_id


def retried_as(connection: sa.Connection, model: TaskModel, task_id: uuid.UUID) -> uuid.UUID | None:
    """The task that retries this one, if any."""
    statement = sa.select(model.id).where(model.retry_of == task_id)
    return connection.execute(statement).scalar_one_or_none()


def retry_task(
    engine: sa.Engine,
    task_id: uuid.UUID,
    now: datetime,
    actor: str,
    task_type: str | None = None,
) -> ActionResult:
    """A new queued task that retries a failed or cancelled one; ActionConflict otherwise.

    A task is retried once (a unique index on `retry_of`): of two operators pressing
    Retry together, one makes the new task and the other is told where it is.
    """
    task_type = task_type or task_type_of(engine, task_id)
    model = MODEL_FOR_TYPE[task_type]
    try:
        with engine.begin() as connection:
            new_id = insert_retry(connection, model, task_id, now, actor)
    except sa.exc.IntegrityError:
        new_id = None
    if new_id is not None:
        return ActionResult(task_type, task_id, "retried", Status.QUEUED.value, new_id)
    with engine.connect() as connection:
        state = current_state(connection, model, task_id)
        existing = retried_as(connection, model, task_id)
    if existing is not None:
        message = f"task {task_id} was already retried as {existing}"
        raise ActionConflict(message, state.status, existing)
    message = f"task {task_id} is {state.status}; only a failed or cancelled task can be retried"
    raise ActionConflict(message, state.status)


# -- many at once ------------------------------------------------------------------------------

BULK_LIMIT = 1000
# The statuses each action applies to; a bulk action reads only tasks in them.
APPLIES_TO = {
    "cancel": (Status.QUEUED.value, Status.RUNNING.value),
    "retry": (Status.FAILED.value, Status.CANCELLED.value),
}
ONE_TASK = {"cancel": cancel_task, "retry": retry_task}


class TooMany(ValueError):
    """More tasks match than one call may change."""


@dataclass(frozen=True)
class Unchanged:
    """A matched task the action left as it was, and why."""

    task_type: str
    task_id: uuid.UUID
    status: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.task_id),
            "task_type": self.task_type,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class BulkPlan:
    """The tasks a bulk action would change (at most BULK_LIMIT), and those it would not."""

    action: str
    targets: list[tuple[str, uuid.UUID]]
    skipped: list[Unchanged]


def applicable_filter(task_filter: TaskFilter, action: str) -> TaskFilter | None:
    """The filter narrowed to the statuses the action applies to; None when none is left."""
    statuses = tuple(
        s for s in (task_filter.statuses or APPLIES_TO[action]) if s in APPLIES_TO[action]
    )
    if not statuses:
        return None
    return replace(task_filter.first_page, statuses=statuses, exact_count=False)


def plan_bulk(
    connection: sa.Connection, task_filter: TaskFilter, action: str, now: datetime
) -> BulkPlan:
    """Which matching tasks the action would change: what the dry run answers and the action
    then does. A running task already asked to stop, or a task already retried, is left out.

    Raises TooMany past BULK_LIMIT matches, before anything changes.
    """
    narrowed = applicable_filter(task_filter, action)
    if narrowed is None:
        return BulkPlan(action, [], [])
    rows = list(islice(iter_tasks(connection, narrowed, now), BULK_LIMIT + 1))
    if len(rows) > BULK_LIMIT:
        raise TooMany(
            f"at most {BULK_LIMIT:,} tasks a call, and more match; narrow the filter "
            "(say by type, tag or time)"
        )
    done = already_done(connection, rows, action)
    targets = [(row.task_type, row.id) for row in rows if row.id not in done]
    skipped = [
        Unchanged(row.task_type, row.id, row.status, done[row.id]) for row in rows if row.id in done
    ]
    return BulkPlan(action, targets, skipped)


def already_done(connection: sa.Connection, rows: list[Any], action: str) -> dict[uuid.UUID, str]:
    """Matched tasks the action would not change, with why: asked to stop, or retried."""
    done: dict[uuid.UUID, str] = {}
    for task_type, model in MODEL_FOR_TYPE.items():
        ids = [row.id for row in rows if row.task_type == task_type]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            if action == "cancel":
                statement = sa.select(model.id, model.cancel_requested_at).where(
                    model.id.in_(chunk), model.cancel_requested_at.is_not(None)
                )
                done |= {
                    found: "already asked to stop" for found, _ in connection.execute(statement)
                }
            else:
                statement = sa.select(model.retry_of, model.id).where(model.retry_of.in_(chunk))
                done |= {
                    old: f"already retried as {new}" for old, new in connection.execute(statement)
                }
    return done


def run_bulk(
    engine: sa.Engine, plan: BulkPlan, now: datetime, actor: str
) -> tuple[list[ActionResult], list[Unchanged]]:
    """Apply the plan task by task, each its own compare-and-set; say what changed and not."""
    changed: list[ActionResult] = []
    unchanged = list(plan.skipped)
    for task_type, task_id in plan.targets:
        try:
            changed.append(ONE_TASK[plan.action](engine, task_id, now, actor, task_type))
        except ActionConflict as conflict:
            unchanged.append(Unchanged(task_type, task_id, conflict.status, lost_race(conflict)))
        except TaskMissing:
            unchanged.append(Unchanged(task_type, task_id, "deleted", "deleted meanwhile"))
    return changed, unchanged


def lost_race(conflict: ActionConflict) -> str:
    """Why a task listed a moment ago was not changed: it moved on meanwhile."""
    if conflict.retried_as is not None:
        return f"lost a race: already retried as {conflict.retried_as}"
    return f"lost a race: it became {conflict.status}"
