"""Every change of every task on record: who made it, when, and a note.

`record_event` is the one way an event is written, on the connection (and so in the
transaction) that makes the change: the change and its event commit together or not at all.
Events are only ever inserted; nothing in the app updates one. They name their task by type
and id without a foreign key, so a deleted task's events stay readable.

Who acted (`actor`) is the name of the module or token, the signed-in person, or "system"
for what the app does by itself (`fail-stalled`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.models import ACTOR_MAX_LENGTH, CONTROL_CHARACTERS, EventKind, TaskEvent

# Who the app's own moves name (fail-stalled).
SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class Event:
    """One line of a task's timeline."""

    task_type: str
    task_id: uuid.UUID
    kind: str
    actor: str
    at: datetime
    note: str | None


def actor_problem(actor: str) -> str | None:
    """What makes an actor's name unusable, or None: the recorder and the filter share it."""
    if not actor:
        return "an actor's name must not be empty"
    if len(actor) > ACTOR_MAX_LENGTH:
        return f"an actor's name has at most {ACTOR_MAX_LENGTH} characters"
    if CONTROL_CHARACTERS.search(actor):
        return "an actor's name cannot contain control characters"
    return None


def record_event(
    connection: sa.Connection,
    task_type: str,
    task_id: uuid.UUID,
    kind: EventKind | str,
    actor: str,
    note: str | None = None,
    *,
    at: datetime | None = None,
) -> None:
    """Write one event on `connection`, inside the caller's transaction.

    Call it in the same transaction as the change it records, after the change's
    compare-and-set statement matched (so a move that lost a race leaves no event).
    `kind` is an `EventKind` (a ValueError otherwise); `at` defaults to now.
    """
    kind = EventKind(kind)
    if problem := actor_problem(actor):
        raise ValueError(f"{problem}: {actor!r}")
    values = {"task_type": task_type, "task_id": task_id, "kind": kind.value, "actor": actor}
    values |= {"at": at or utcnow(), "note": note}
    connection.execute(sa.insert(TaskEvent).values(values))


def task_events(executor: Any, task_id: uuid.UUID) -> list[Event]:
    """A task's events, oldest first (by time, then by the order they were written)."""
    statement = (
        sa.select(
            TaskEvent.task_type,
            TaskEvent.task_id,
            TaskEvent.kind,
            TaskEvent.actor,
            TaskEvent.at,
            TaskEvent.note,
        )
        .where(TaskEvent.task_id == task_id)
        .order_by(TaskEvent.at, TaskEvent.id)
    )
    return [Event(*row) for row in executor.execute(statement)]
