"""Stalled tasks: running, and not heard from for longer than their type's limit.

A task is heard from when its module starts it, reports progress or sends a heartbeat
(`Recorder.heartbeat`): each sets `updated_at`, so a running task's `updated_at` is when it
was last heard from (`last_heard`). Each type has its own limit, `STALLED_AFTER_MINUTES`
unless `STALLED_AFTER_MINUTES_<TYPE>` (e.g. `STALLED_AFTER_MINUTES_TRAINING`) says
otherwise: a training run reports less often than an upload.

`fail_stalled` fails them, one compare-and-set statement per task, so that several servers
running it at once (cron) fail each task once.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.events import SYSTEM_ACTOR
from app.models import MODEL_FOR_TYPE, TASK_TYPES, Status, TaskModel

DEFAULT_STALLED_AFTER_MINUTES = 30
# Types whose modules report less often than the others, unless the environment says.
DEFAULT_OVERRIDES = {"training": 120}
STALLED_NOTE = "the module stopped reporting"


def last_heard(model: TaskModel) -> sa.ColumnElement[datetime]:
    """When a running task's module was last heard from: its last change (see above)."""
    return model.updated_at


@dataclass(frozen=True)
class StallLimits:
    """How long each type's running tasks may go unheard before they count as stalled."""

    minutes: tuple[tuple[str, int], ...] = tuple(
        (task_type, DEFAULT_OVERRIDES.get(task_type, DEFAULT_STALLED_AFTER_MINUTES))
        for task_type in TASK_TYPES
    )

    @classmethod
    def of(cls, default: int, overrides: Mapping[str, int] | None = None) -> StallLimits:
        """`default` minutes for every type, except those in `overrides`."""
        overrides = overrides or {}
        unknown = set(overrides) - set(TASK_TYPES)
        if unknown:
            raise ValueError(f"unknown task types: {', '.join(sorted(unknown))}")
        return cls(tuple((t, overrides.get(t, default)) for t in TASK_TYPES))

    def limit(self, task_type: str) -> timedelta:
        """How long a task of this type may go unheard."""
        return timedelta(minutes=dict(self.minutes)[task_type])

    def heard_before(self, now: datetime) -> dict[str, datetime]:
        """Per type: a running task last heard before this moment is stalled."""
        return {task_type: now - timedelta(minutes=m) for task_type, m in self.minutes}


def positive_minutes(name: str, text: str) -> int:
    """A whole number of minutes from 1 to a year, or a ValueError naming the setting."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 525_600:
        raise ValueError(f"{name} must be a whole number of minutes from 1 to 525600: {text!r}")
    return int(text)


def limits_from_environment(environ: Mapping[str, str] = os.environ) -> StallLimits:
    """`STALLED_AFTER_MINUTES` and its per-type `STALLED_AFTER_MINUTES_<TYPE>` overrides."""
    name = "STALLED_AFTER_MINUTES"
    default = DEFAULT_STALLED_AFTER_MINUTES
    if environ.get(name, "").strip():
        default = positive_minutes(name, environ[name])
        overrides = {}
    else:
        overrides = dict(DEFAULT_OVERRIDES)
    for task_type in TASK_TYPES:
        key = f"{name}_{task_type.upper()}"
        if environ.get(key, "").strip():
            overrides[task_type] = positive_minutes(key, environ[key])
    return StallLimits.of(default, overrides)


def is_stalled(
    task_type: str, status: str, heard_at: datetime, now: datetime, limits: StallLimits
) -> bool:
    """Whether a task, as listed, is stalled at `now`: the page's reading of the filter."""
    return status == Status.RUNNING.value and heard_at < limits.heard_before(now)[task_type]


DURATION = re.compile(r"([1-9][0-9]{0,6})([mhd])")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """ "90m", "2h" or "3d" as a timedelta; a ValueError says the form otherwise."""
    found = DURATION.fullmatch(text.strip().lower())
    if not found:
        raise ValueError(f"{text!r} is not a duration such as 90m, 2h or 3d")
    return timedelta(**{DURATION_UNITS[found[2]]: int(found[1])})


@dataclass(frozen=True)
class FailedStalled:
    """What one `fail_stalled` run found and did."""

    found: list[tuple[str, uuid.UUID]]
    failed: list[tuple[str, uuid.UUID]]

    @property
    def moved_on(self) -> list[tuple[str, uuid.UUID]]:
        """Found, but failed by another run or heard from in between."""
        return [key for key in self.found if key not in set(self.failed)]


def fail_stalled(
    engine: sa.Engine,
    heard_before: Mapping[str, datetime],
    *,
    clock: Callable[[], datetime],
    dry_run: bool = False,
) -> FailedStalled:
    """Fail every running task last heard before its type's moment, as "system".

    Each task is failed by its own compare-and-set statement, which also asks that it is
    still unheard: several runs at once fail each task once, and a task that reported
    meanwhile is left running. A dry run only finds them.
    """
    from app.recorder import Recorder  # the recorder reads this module's definitions

    with engine.connect() as connection:
        found = stalled_candidates(connection, heard_before)
    if dry_run:
        return FailedStalled(found, [])
    recorder = Recorder(engine, clock, actor=SYSTEM_ACTOR)
    failed = [
        (task_type, task_id)
        for task_type, task_id in found
        if recorder.fail_stalled(task_type, task_id, heard_before[task_type])
    ]
    return FailedStalled(found, failed)


def stalled_candidates(
    connection: sa.Connection, heard_before: Mapping[str, datetime]
) -> list[tuple[str, uuid.UUID]]:
    """(task_type, id) of the running tasks last heard before their type's moment.

    Each table's read is a range of its (status, updated_at) index.
    """
    found: list[tuple[str, uuid.UUID]] = []
    for task_type, model in MODEL_FOR_TYPE.items():
        statement = (
            sa.select(model.id)
            .where(
                model.status == Status.RUNNING.value,
                last_heard(model) < heard_before[task_type],
            )
            .order_by(last_heard(model))
        )
        found += [(task_type, task_id) for task_id in connection.execute(statement).scalars()]
    return found
