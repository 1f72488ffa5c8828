"""What a listed task is, and the columns every member selects to make one."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from app.models import TaskModel, sql_constant


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
    # When an operator asked the running task to stop; its module confirms (app/actions.py).
    cancel_requested_at: datetime | None

    @property
    def cancelling(self) -> bool:
        """Running, and asked to stop: the pages say "Cancelling…" until its module confirms."""
        return self.status == "running" and self.cancel_requested_at is not None


LIST_COLUMNS = TaskRow._fields


@dataclass(frozen=True)
class TaskDetail:
    """One task with the fields only its type has, and its retry links."""

    row: TaskRow
    details: dict[str, Any]
    retry_of: uuid.UUID | None = None
    retried_as: uuid.UUID | None = None


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
        model.cancel_requested_at,
    )


@functools.cache
def key_columns(model: TaskModel) -> tuple[sa.ColumnElement[Any], ...]:
    """What places a task in the listing, all held by the indexes a page walks."""
    task_type = list_columns(model)[0]
    return (task_type, model.created_at, model.id)


def outer_columns(members: tuple[sa.ColumnElement[Any], ...]) -> dict[str, sa.ColumnClause[Any]]:
    """A union's columns by name, typed so results convert as the members' would."""
    return {column.name: sa.column(column.name, column.type) for column in members}
