"""The lifecycle API the platform's modules call to record their tasks.

queued → running → completed | failed | cancelled, with progress while running. Every move is
one compare-and-set UPDATE (`... WHERE id = :id AND status IN (:allowed)`), never a read then
a write: when a cancel races a completion on two connections, the database lets exactly one
of them match and the other is told the task had already moved on.

Each move writes its event (app/events.py) in the same transaction, with the recorder's
`actor` (the module's name) as who acted: created, started, completed, failed, cancelled,
and progress milestones. A milestone is a quarter reached (25%, 50%, 75%, 100%), not every
report: a report records one, naming the highest quarter it reached, only when its
compare-and-set also finds the task below that quarter, so two reports racing over one
quarter record it once. `heartbeat()` and
every progress report set `updated_at`, which is when the module was last heard from (see
app/stalled.py).

An operator cannot stop a running task; they ask it to (app/actions.py). The module learns
it when it next reports: `report_progress` and `heartbeat` raise `CancelRequested`, and
`cancel_requested` answers the question for a module that would rather ask. The module then
stops its work and confirms with `cancel()`. (It may also finish: `complete()` still
records the result.)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.error_groups import error_group
from app.events import actor_problem, record_event
from app.models import MODEL_FOR_TYPE, EventKind, Status, TaskModel, tag_problem
from app.stalled import STALLED_NOTE, last_heard

# Which statuses each status may be entered from.
ALLOWED_FROM: dict[Status, tuple[Status, ...]] = {
    Status.RUNNING: (Status.QUEUED,),
    Status.COMPLETED: (Status.RUNNING,),
    Status.FAILED: (Status.QUEUED, Status.RUNNING),
    Status.CANCELLED: (Status.QUEUED, Status.RUNNING),
}
# The event each move records.
EVENT_FOR: dict[Status, EventKind] = {
    Status.RUNNING: EventKind.STARTED,
    Status.COMPLETED: EventKind.COMPLETED,
    Status.FAILED: EventKind.FAILED,
    Status.CANCELLED: EventKind.CANCELLED,
}
# Progress milestones are recorded at each of these fractions crossed.
MILESTONES = 4
DEFAULT_ACTOR = "module"


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

    Raised by `report_progress` and `heartbeat`, which then record nothing.
    """

    def __init__(self, task_id: uuid.UUID):
        RuntimeError.__init__(self, f"task {task_id} was asked to stop; confirm with cancel()")
        self.task_id, self.current, self.target = task_id, Status.RUNNING.value, Status.CANCELLED


def milestone_below(progress: float) -> float | None:
    """The last milestone at or below `progress` (0.25, 0.5, 0.75, 1.0), None below the first."""
    reached = int(progress * MILESTONES)
    return reached / MILESTONES if reached >= 1 else None


class Recorder:
    """Creates tasks and moves them through their life, each call its own transaction.

    `actor` is who the events name: the module's name (`Recorder(engine, actor="trainer")`),
    or "system" for the app's own moves.
    """

    def __init__(
        self,
        engine: sa.Engine,
        clock: Callable[[], datetime] = utcnow,
        *,
        actor: str = DEFAULT_ACTOR,
    ):
        if problem := actor_problem(actor):
            raise ValueError(f"{problem}: {actor!r}")
        self.engine = engine
        self.clock = clock
        self.actor = actor

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
            record_event(connection, task_type, task_id, EventKind.CREATED, self.actor, at=now)
        return task_id

    def start(self, task_type: str, task_id: uuid.UUID) -> None:
        """Move a queued task to running."""
        now = self.clock()
        self._move(task_type, task_id, Status.RUNNING, started_at=now, progress=0.0)

    def report_progress(self, task_type: str, task_id: uuid.UUID, progress: float) -> None:
        """Record how far a running task has got, from 0.0 to 1.0; it counts as heard from.

        A report that crosses a milestone (see MILESTONES) records a "progress" event.
        Raises CancelRequested, recording nothing, once an operator asked the task to stop.
        """
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be from 0.0 to 1.0, not {progress}")
        action = "report progress (only a running task can)"
        milestone = milestone_below(progress)
        if milestone is not None:
            model = self._model(task_type)
            crossed = sa.or_(model.progress.is_(None), model.progress < milestone)
            note = f"reached {round(milestone * 100)}%"
            if self._try_move(
                task_type,
                task_id,
                Status.RUNNING,
                (Status.RUNNING,),
                (EventKind.PROGRESS, note),
                where=(crossed, model.cancel_requested_at.is_(None)),
                progress=progress,
            ):
                return
        self._move(
            task_type,
            task_id,
            Status.RUNNING,
            allowed=(Status.RUNNING,),
            action=action,
            event=None,
            unless_asked_to_stop=True,
            progress=progress,
        )

    def heartbeat(self, task_type: str, task_id: uuid.UUID) -> None:
        """Say that a running task's module is alive: it is then not stalled (no event).

        Raises CancelRequested, recording nothing, once an operator asked the task to stop.
        """
        self._move(
            task_type,
            task_id,
            Status.RUNNING,
            allowed=(Status.RUNNING,),
            action="send a heartbeat (only a running task can)",
            event=None,
            unless_asked_to_stop=True,
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

    def fail_stalled(self, task_type: str, task_id: uuid.UUID, heard_before: datetime) -> bool:
        """Fail a running task last heard before `heard_before`; False if it moved on since.

        One compare-and-set: of several callers at once, exactly one fails the task and
        records the event; the others, and a task heard from meanwhile, get False.
        """
        model = self._model(task_type)
        now = self.clock()
        return self._try_move(
            task_type,
            task_id,
            Status.FAILED,
            (Status.RUNNING,),
            (EventKind.FAILED, STALLED_NOTE),
            where=(last_heard(model) < heard_before,),
            finished_at=now,
            error_msg=STALLED_NOTE,
            error_group=error_group(STALLED_NOTE),
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

    def _try_move(
        self,
        task_type: str,
        task_id: uuid.UUID,
        target: Status,
        allowed: tuple[Status, ...],
        event: tuple[EventKind, str | None] | None,
        *,
        where: tuple[sa.ColumnElement[bool], ...] = (),
        connection: sa.Connection | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set, with its event in the same transaction; whether it matched.

        Only a matched move writes its event, so a move that lost a race leaves none.
        """
        if connection is None:
            with self.engine.begin() as own:
                return self._try_move(
                    task_type,
                    task_id,
                    target,
                    allowed,
                    event,
                    where=where,
                    connection=own,
                    **values,
                )
        model = self._model(task_type)
        now = self.clock()
        statement = (
            sa.update(model)
            .where(model.id == task_id, model.status.in_([s.value for s in allowed]), *where)
            .values(status=target.value, updated_at=now, **values)
        )
        if connection.execute(statement).rowcount != 1:
            return False
        if event is not None:
            kind, note = event
            record_event(connection, task_type, task_id, kind, self.actor, note, at=now)
        return True

    def _move(
        self,
        task_type: str,
        task_id: uuid.UUID,
        target: Status,
        *,
        allowed: tuple[Status, ...] | None = None,
        action: str | None = None,
        event: tuple[EventKind, str | None] | bool | None = True,
        unless_asked_to_stop: bool = False,
        **values: Any,
    ) -> None:
        """Compare-and-set: update only if the task is in an allowed status right now (and,
        `unless_asked_to_stop`, has no cancel request, else CancelRequested).

        `event` is the event to record: by default the target's (see EVENT_FOR), with the
        error as its note for a failure; None records none.
        """
        model = self._model(task_type)
        allowed = allowed or ALLOWED_FROM[target]
        if event is True:
            event = (EVENT_FOR[target], values.get("error_msg"))
        where = (model.cancel_requested_at.is_(None),) if unless_asked_to_stop else ()
        with self.engine.begin() as connection:
            moved = self._try_move(
                task_type,
                task_id,
                target,
                allowed,
                event or None,
                where=where,
                connection=connection,
                **values,
            )
            if moved:
                return
            current = connection.execute(
                sa.select(model.status, model.cancel_requested_at).where(model.id == task_id)
            ).first()
        if current is None:
            raise TaskNotFound(f"no {task_type} task has id {task_id}")
        if unless_asked_to_stop and current.status == Status.RUNNING.value:
            raise CancelRequested(task_id)
        raise IllegalTransition(task_id, current.status, target, action)
