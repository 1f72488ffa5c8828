"""How the pages put things into words: the labels of types, statuses and events, and times,
durations and counts as people read them."""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from app.filters import format_timestamp
from app.query import TaskRow, Total
from app.stalled import is_stalled

# How much of an error a row shows before "read all".
ERROR_PREVIEW_CHARACTERS = 80

TYPE_LABELS = {
    "model_upload": "Model upload",
    "dataset_upload": "Dataset upload",
    "training": "Training",
    "evaluation": "Evaluation",
    "synthesis": "Synthesis",
}
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
EVENT_LABELS = {
    "created": "Created",
    "started": "Started",
    "progress": "Progress",
    "cancel_requested": "Cancel requested",
    "cancelled": "Cancelled",
    "completed": "Completed",
    "failed": "Failed",
    "retried": "Retried",
}
# Shown beside the status text, never instead of it; "Cancelling…" has one of its own.
STATUS_ICONS = {"queued": "◷", "running": "▶", "completed": "✓", "failed": "✕", "cancelled": "⊘"}
CANCELLING_ICON = "◌"


# -- time, as people read it -----------------------------------------------------------------


def time_ago(moment: datetime, now: datetime) -> str:
    """ "5 min ago", "3 h ago", "12 d ago": how long ago, in the largest useful unit."""
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h ago"
    return f"{hours // 24} d ago"


def duration_text(seconds: float) -> str:
    """ "42 s", "12 min 5 s", "3 h 20 min", "2 d 4 h": two units at most."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {whole} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def task_duration(started: datetime | None, finished: datetime | None, now: datetime) -> str:
    """How long a task ran, or has been running; empty when it never started."""
    if started is None:
        return ""
    return duration_text(((finished or now) - started).total_seconds())


def stalled_text(row: TaskRow, now: datetime) -> str | None:
    """ "Stalled — last heard 2 h ago" for a stalled task (see app/stalled.py), else None."""
    limits = current_app.config["STALL_LIMITS"]
    if not is_stalled(row.task_type, row.status, row.updated_at, now, limits):
        return None
    return f"Stalled \N{EM DASH} last heard {time_ago(row.updated_at, now)}"


def utc_text(moment: datetime) -> str:
    """The exact instant, for tooltips: 2026-11-28 09:14:03 UTC."""
    return format_timestamp(moment)[:19].replace("T", " ") + " UTC"


def thousands(number: int) -> str:
    """1234 as "1,234"."""
    return f"{number:,}"


def total_text(total: Total) -> str:
    """ "1,234", or "10,000+" when only a lower bound is known."""
    return thousands(total.value) + ("+" if total.relation == "gte" else "")
