"""The most common errors: the failed tasks that match a filter, grouped by error group.

Each table's failed tasks are one range of its (status, error_group, created_at) index, read
in group order, so the engine counts each group as it passes it, without sorting. A group's
message is that of its newest matching task: a page of one task by the same query module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.filters import TaskFilter, format_timestamp
from app.models import TASK_TYPES, Status, sql_constant
from app.query.engines import Executor
from app.query.lookups import looked_up_first
from app.query.pages import fetch_page
from app.query.shapes import Shape, branch_conditions, chosen_models, shape_of

FAILED = Status.FAILED.value


@dataclass(frozen=True)
class ErrorGroup:
    """One group of errors among the matching failed tasks."""

    key: str
    count: int
    task_types: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        """A group as `/tasks/errors` writes it (the caller adds its link)."""
        return {
            "error_group": self.key,
            "count": self.count,
            "message": self.message,
            "task_types": list(self.task_types),
            "first_seen": format_timestamp(self.first_seen),
            "last_seen": format_timestamp(self.last_seen),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErrorGroup:
        """Back from `as_json`."""
        return cls(
            key=data["error_group"],
            count=data["count"],
            task_types=tuple(data["task_types"]),
            first_seen=datetime.fromisoformat(data["first_seen"]),
            last_seen=datetime.fromisoformat(data["last_seen"]),
            message=data["message"],
        )


def failed_filter(task_filter: TaskFilter) -> TaskFilter | None:
    """The filter's failed tasks alone; None when it leaves failed tasks out."""
    if task_filter.statuses and FAILED not in task_filter.statuses:
        return None
    return replace(task_filter.first_page, statuses=(FAILED,))


@functools.lru_cache(maxsize=256)
def groups_template(shape: Shape) -> sa.CompoundSelect:
    """(task_type, error_group, count, first, last) per table and group."""
    return sa.union_all(
        *(
            sa.select(
                sql_constant(model.task_type).label("task_type"),
                model.error_group,
                sa.func.count().label("tasks"),
                sa.func.min(model.created_at).label("first_seen"),
                sa.func.max(model.created_at).label("last_seen"),
            )
            .where(*branch_conditions(model, shape), model.error_group.is_not(None))
            .group_by(model.error_group)
            for model in chosen_models(shape)
        )
    )


def merge_groups(rows: Any) -> list[ErrorGroup]:
    """One group per key over the tables, most frequent first (ties by key)."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = merged.setdefault(
            row.error_group,
            {"count": 0, "types": set(), "first": row.first_seen, "last": row.last_seen},
        )
        group["count"] += row.tasks
        group["types"].add(row.task_type)
        group["first"] = min(group["first"], row.first_seen)
        group["last"] = max(group["last"], row.last_seen)
    groups = [
        ErrorGroup(
            key,
            group["count"],
            tuple(t for t in TASK_TYPES if t in group["types"]),
            group["first"],
            group["last"],
        )
        for key, group in merged.items()
    ]
    return sorted(groups, key=lambda group: (-group.count, group.key))


def newest_message(executor: Executor, task_filter: TaskFilter, key: str, now: datetime) -> str:
    """The error message of the group's newest matching task."""
    newest = replace(task_filter, error_group=key, limit=1, order="desc")
    rows = fetch_page(executor, newest, now)
    return rows[0].error_msg or "" if rows else ""


@looked_up_first
def top_errors(
    executor: Executor, task_filter: TaskFilter, now: datetime, limit: int
) -> list[ErrorGroup]:
    """The `limit` most common error groups among the failed tasks the filter matches."""
    failed = failed_filter(task_filter)
    if failed is None:
        return []
    shape, values = shape_of(failed, now)
    rows = executor.execute(groups_template(shape), values).all()
    top = merge_groups(rows)[:limit]
    return [
        replace(group, message=newest_message(executor, failed, group.key, now)) for group in top
    ]
