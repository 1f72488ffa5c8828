"""The lifecycle API the platform's modules call to record their tasks.

queued → running → completed | failed | cancelled, with progress while running. Every move is
one compare-and-set UPDATE (`... WHERE id = :id AND status IN (:allowed)`), never a read then
a write: when a cancel races a completion on two connections, the database lets exactly one
of them match and the other is told the task had already moved on.

An operator cannot stop a running task; they ask it to (app/actions.py). The module learns
it when it next reports: `report_progress` raises `CancelRequested`, and `cancel_requested`
answers the question for a module that reports no progress. The module then stops its work
and confirms with `cancel()`. (It may also finish: `complete()` still records the result.)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.models import MODEL_FOR_TYPE, Status, TaskModel, tag_problem

# Which statuses each status may be entered from.
ALLOWED_FROM: dict[Status, tuple[Status, ...]] = {
    Status.RUNNING: (Status.QUEUED,),
    Status.COMPLETED: (Status.RUNNING,),
    Status.FAILED: (Status.QUEUED, Status.RUNNING),
    Status.CANCELLED: (Status.QUEUED, Status.RUNNING),
}


class TaskNotFound(LookupError):
    """No task of that type has that id."""


class IllegalTransition(RuntimeError):
    """The task is not in a status the requested move may start from."""

    def __init__(self, task_id: uuid.UUID, current: str, target: Status, action: str | None = None):
        action = action or f"become {target.value}"
        super().__init__(f"task {task_id} is {current}; it cannot {action}")
        self.task_id, self.current, self.target = task_id, current, target


class CancelRequested(IllegalTransition):
    """An operator asked this running task to stop: stop the work, then call `cancel()`.

    Raised by `report_progress`, whose progress is then not recorded.
    """

    def __init__(self, task_id: uuid.UUID):
        RuntimeError.__init__(self, f"task {task_id} was asked to stop; confirm with cancel()")
        self.task_id, self.current, self.target = task_id, Status.RUNNING.value, Status.CANCELLED


class Recorder:
    """Creates tasks and moves them through their life, each call its own transaction."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = utcnow):
        self.engine = engine
        self.clock = clock

    def create(self, task_type: str, *, tag: str | None = None, **fields: Any) -> uuid.UUID:
        """Record a new queued task with its type-specific `fields`; return its id."""
        model = self._model(task_type)
        if tag is not None and (problem := tag_problem(tag)):
            raise ValueError(f"{problem}: {tag!r}")
        now = self.clock()
        task_id = uuid.uuid4()
        values = {"id": task_id, "status": Status.QUEUED.value, "tag": tag, **fields}
        values |= {"created_at": now, "updated_at": now}
        with self.engine.begin() as connection:
            connection.execute(sa.insert(model).values(values))
        return task_id

    def start(self, task_type: str, task_id: uuid.UUID) -> None:
        """Move a queued task to running."""
        now = self.clock()
        self._move(task_type, task_id, Status.RUNNING, started_at=now, progress=0.0)

    def report_progress(self, task_type: str, task_id: uuid.UUID, progress: float) -> None:
        """Record how far a running task has got, from 0.0 to 1.0.

        Raises CancelRequested, recording nothing, once an operator asked the task to stop.
        """
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be from 0.0 to 1.0, not {progress}")
        model = self._model(task_type)
        self._move(
            task_type,
            task_id,
            Status.RUNNING,
            allowed=(Status.RUNNING,),
            action="report progress (only a running task can)",
            condition=model.cancel_requested_at.is_(None),
            progress=progress,
        )

    def cancel_requested(self, task_type: str, task_id: uuid.UUID) -> bool:
        """Whether an operator asked this task to stop (and it has not stopped yet)."""
        model = self._model(task_type)
        statement = sa.select(model.status, model.cancel_requested_at).where(model.id == task_id)
        with self.engine.connect() as connection:
            row = connection.execute(statement).first()
        if row is None:
            raise TaskNotFound(f"no {task_type} task has id {task_id}")
        return row.status == Status.RUNNING.value and row.cancel_requested_at is not None

    def complete(self, task_type: str, task_id: uuid.UUID, **results: Any) -> None:
        """Move a running task to completed, with the results its type records."""
        now = self.clock()
        self._move(task_type, task_id, Status.COMPLETED, finished_at=now, progress=1.0, **results)

    def fail(self, task_type: str, task_id: uuid.UUID, error_msg: str) -> None:
        """Move a queued or running task to failed, saying why."""
        now = self.clock()
        self._move(task_type, task_id, Status.FAILED, finished_at=now, error_msg=error_msg)

    def cancel(self, task_type: str, task_id: uuid.UUID) -> None:
        """Move a queued or running task to cancelled."""
        self._move(task_type, task_id, Status.CANCELLED, finished_at=self.clock())

    def _model(self, task_type: str) -> TaskModel:
        try:
            return MODEL_FOR_TYPE[task_type]
        except KeyError:
            raise ValueError(f"unknown task type {task_type!r}") from None

    def _move(
        self,
        task_type: str,
        task_id: uuid.UUID,
        target: Status,
        *,
        allowed: tuple[Status, ...] | None = None,
        action: str | None = None,
        condition: sa.ColumnElement[bool] | None = None,
        **values: Any,
    ) -> None:
        """Compare-and-set: update only if the task is in an allowed status right now (and
        meets `condition`, which only a cancel request can fail)."""
        model = self._model(task_type)
        allowed = allowed or ALLOWED_FROM[target]
        statement = (
            sa.update(model)
            .where(model.id == task_id, model.status.in_([s.value for s in allowed]))
            .values(status=target.value, updated_at=self.clock(), **values)
        )
        if condition is not None:
            statement = statement.where(condition)
        with self.engine.begin() as connection:
            if connection.execute(statement).rowcount == 1:
                return
            current = connection.execute(
                sa.select(model.status, model.cancel_requested_at).where(model.id == task_id)
            ).first()
        if current is None:
            raise TaskNotFound(f"no {task_type} task has id {task_id}")
        if condition is not None and current.status == Status.RUNNING.value:
            raise CancelRequested(task_id)
        raise IllegalTransition(task_id, current.status, target, action)
