"""The lifecycle API the platform's modules call to record their tasks.

queued → running → completed | failed | cancelled, with progress while running. Every move is
one compare-and-set UPDATE (`... WHERE id = :id AND status IN (:allowed)`), never a read then
a write: when a cancel races a completion on two connections, the database lets exactly one
of them match and the other is told the task had already moved on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.error_groups import error_group
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
        """Record how far a running task has got, from 0.0 to 1.0."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be from 0.0 to 1.0, not {progress}")
        self._move(
            task_type,
            task_id,
            Status.RUNNING,
            allowed=(Status.RUNNING,),
            action="report progress (only a running task can)",
            progress=progress,
        )

    def complete(self, task_type: str, task_id: uuid.UUID, **results: Any) -> None:
        """Move a running task to completed, with the results its type records."""
        now = self.clock()
        self._move(task_type, task_id, Status.COMPLETED, finished_at=now, progress=1.0, **results)

    def fail(self, task_type: str, task_id: uuid.UUID, error_msg: str) -> None:
        """Move a queued or running task to failed, saying why."""
        now = self.clock()
        self._move(
            task_type,
            task_id,
            Status.FAILED,
            finished_at=now,
            error_msg=error_msg,
            error_group=error_group(error_msg),
        )

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
        **values: Any,
    ) -> None:
        """Compare-and-set: update only if the task is in an allowed status right now."""
        model = self._model(task_type)
        allowed = allowed or ALLOWED_FROM[target]
        statement = (
            sa.update(model)
            .where(model.id == task_id, model.status.in_([s.value for s in allowed]))
            .values(status=target.value, updated_at=self.clock(), **values)
        )
        with self.engine.begin() as connection:
            if connection.execute(statement).rowcount == 1:
                return
            current = connection.execute(
                sa.select(model.status).where(model.id == task_id)
            ).scalar_one_or_none()
        if current is None:
            raise TaskNotFound(f"no {task_type} task has id {task_id}")
        raise IllegalTransition(task_id, current, target, action)
