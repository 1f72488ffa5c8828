"""Known tasks, and a plain-Python filter-and-sort over them that the API must agree with."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.demo import type_fields
from app.error_groups import error_group
from app.filters import TaskFilter, format_timestamp
from app.models import MODEL_FOR_TYPE, TASK_TYPES, TERMINAL_STATUSES, Base, Status, TaskEvent
from app.query import TOTAL_EXACT_UP_TO
from app.query.histogram import chart_window
from app.search import Search

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATUSES = [s.value for s in Status]
KNOWN_TAGS = ["exp-1", "exp-2", "nightly", "Exp-1", "exp-1 ", "<b>bold</b>", "ünïcode-✓"]
# Who acted on the known tasks (an event each); names differing in case or a space are apart.
KNOWN_ACTORS = ["trainer", "Trainer", "uploader", "alice@example.com", "system", "trainer "]
# Keys of a known task that the oracle reads but the task tables do not hold.
ORACLE_ONLY = frozenset({"task_type", "actors"})
# How long ago the module of a recently heard running task last reported, in minutes: on
# each side of the 30-minute limit and of training's 120.
HEARD_MINUTES_AGO = (5, 29, 31, 119, 121)


# Error messages of failed tasks: variable parts (numbers, hex, paths, quoted values) that
# the error groups take out, and HTML that every page must show as text.
FAILURES = (
    "Traceback: <script>alert(1)</script> & more",
    "CUDA out of memory. Tried to allocate {n}.00 GiB (GPU {m}; 79.15 GiB total capacity)",
    "row {n}: expected 3 columns, found {m}",
    "FileNotFoundError: '/data/shard-{n}/part-{m}.parquet' at 0x{n:x}ff",
)


def failure(task_type: str, task_id: uuid.UUID) -> str:
    """A failed task's message, from its id (no draw from the random stream): training
    tasks all fail with the first, the others with any."""
    template = FAILURES[0 if task_type == "training" else task_id.int % len(FAILURES)]
    return template.format(n=task_id.int % 997, m=task_id.int % 7)


def make_task(
    task_type: str,
    status: str,
    created_at: datetime,
    *,
    tag: str | None = None,
    finished_after: timedelta = timedelta(minutes=30),
    rng: random.Random,
) -> dict[str, Any]:
    """One task row that keeps the recorder's rules, with a random id."""
    terminal = status in {s.value for s in TERMINAL_STATUSES}
    started = None if status == "queued" else created_at + timedelta(minutes=1)
    finished = created_at + finished_after if terminal else None
    task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    return {
        "task_type": task_type,
        "id": task_id,
        "status": status,
        "tag": tag,
        "created_at": created_at,
        "updated_at": finished or started or created_at,
        "started_at": started,
        "finished_at": finished,
        "progress": {"running": 0.5, "completed": 1.0}.get(status),
        "error_msg": failure(task_type, task_id) if status == "failed" else None,
        "error_group": error_group(failure(task_type, task_id)) if status == "failed" else None,
        "cancel_requested_at": None,
        **type_fields(task_type, rng, finished_ok=status == "completed"),
    }


def known_tasks(seed: int = 7) -> list[dict[str, Any]]:
    """About 300 tasks: every type and status, ties on created_at, tags, edges of windows."""
    rng = random.Random(seed)
    tasks = []
    for index in range(250):
        task_type = TASK_TYPES[index % len(TASK_TYPES)]
        status = STATUSES[(index // len(TASK_TYPES)) % len(STATUSES)]
        created = NOW - timedelta(minutes=rng.randint(1, 60 * 24 * 60))
        tag = rng.choice([None, None, *KNOWN_TAGS])
        after = timedelta(minutes=rng.randint(1, 60 * 48))
        after = min(after, NOW - created - timedelta(seconds=1))
        tasks.append(make_task(task_type, status, created, tag=tag, finished_after=after, rng=rng))
    # Tasks created at the very same instant, in every table: only `id` orders them.
    tie = NOW - timedelta(hours=5)
    for index in range(25):
        task_type = TASK_TYPES[index % len(TASK_TYPES)]
        status = STATUSES[index % len(STATUSES)]
        finished_after = timedelta(minutes=10)
        tasks.append(make_task(task_type, status, tie, finished_after=finished_after, rng=rng))
    tasks += recently_heard_tasks(rng)
    return with_actors(tasks, random.Random(seed + 1))


def recently_heard_tasks(rng: random.Random) -> list[dict[str, Any]]:
    """Running tasks of every type last heard a little before and after their limits; the
    one heard last was then asked to stop by an operator (it shows as "Cancelling…")."""
    tasks = []
    for task_type in TASK_TYPES:
        for minutes in HEARD_MINUTES_AGO:
            created = NOW - timedelta(hours=8, minutes=minutes)
            task = make_task(task_type, "running", created, tag="exp-2", rng=rng)
            task["updated_at"] = NOW - timedelta(minutes=minutes)
            if minutes == min(HEARD_MINUTES_AGO):
                task["cancel_requested_at"] = task["updated_at"]
            tasks.append(task)
    return tasks


def with_actors(tasks: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Each task with the actors of its events: none, one or two of KNOWN_ACTORS."""
    for task in tasks:
        task["actors"] = tuple(rng.sample(KNOWN_ACTORS, rng.choice([0, 1, 1, 2])))
    return tasks


def insert_events(engine: sa.Engine, tasks: Iterable[dict[str, Any]]) -> None:
    """An event for each actor of each task, so that `actor=` has something to find."""
    rows = [
        {
            "task_type": task["task_type"],
            "task_id": task["id"],
            "kind": "progress",
            "actor": actor,
            "at": task["updated_at"],
            "note": "reached 50%",
        }
        for task in tasks
        for actor in task.get("actors", ())
    ]
    if rows:
        with engine.begin() as connection:
            connection.execute(sa.insert(TaskEvent), rows)


def insert_tasks(engine: sa.Engine, tasks: Iterable[dict[str, Any]]) -> None:
    """Bulk-insert task dicts into their tables."""
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in TASK_TYPES}
    for task in tasks:
        row = {key: value for key, value in task.items() if key not in ORACLE_ONLY}
        by_type[task["task_type"]].append(row)
    with engine.begin() as connection:
        for task_type, rows in by_type.items():
            if rows:
                # The table as the database has it: an older revision lacks newer columns.
                table = sa.Table(
                    MODEL_FOR_TYPE[task_type].__tablename__, sa.MetaData(), autoload_with=connection
                )
                kept = [{k: v for k, v in row.items() if k in table.c} for row in rows]
                connection.execute(sa.insert(MODEL_FOR_TYPE[task_type].__table__), kept)


def matches(task: dict[str, Any], f: TaskFilter, now: datetime = NOW) -> bool:
    """Whether a task passes the filter, by the API's documented rules."""
    if f.task_types and task["task_type"] not in f.task_types:
        return False
    if f.statuses and task["status"] not in f.statuses:
        return False
    if f.tags and task["tag"] not in f.tags:
        return False
    if f.error_group is not None and task.get("error_group") != f.error_group:
        return False
    if f.within_hours is not None:
        active = task["status"] in {"queued", "running"}
        cutoff = now - timedelta(hours=f.within_hours)
        if not active and task["finished_at"] < cutoff:
            return False
    if f.created_after is not None and task["created_at"] < f.created_after:
        return False
    if f.actor is not None and f.actor not in task.get("actors", ()):
        return False
    if f.stalled and not stalled(task, f, now):
        return False
    if f.search is not None and not search_matches(task, f.search):
        return False
    return not (f.created_before is not None and task["created_at"] >= f.created_before)


def stalled(task: dict[str, Any], f: TaskFilter, now: datetime = NOW) -> bool:
    """Running, and last heard (updated_at) longer ago than its type's limit."""
    limit = f.stall_limits.limit(task["task_type"])
    return task["status"] == "running" and task["updated_at"] < now - limit


# The fields whose words `q` finds, by type: the summary's, then the error and the tag.
SEARCHED_FIELDS = {
    "model_upload": ("model_name", "source"),
    "dataset_upload": ("dataset_name", "source"),
    "training": ("base_model", "dataset_name", "method"),
    "evaluation": ("model_name", "benchmark"),
    "synthesis": ("output_dataset", "generator_model"),
}


def field_words(task: dict[str, Any]) -> list[list[str]]:
    """Each searched field's words: runs of letters and digits, in lower case."""
    fields = (*SEARCHED_FIELDS[task["task_type"]], "error_msg", "tag")
    return [re.findall(r"[^\W_]+", (task[name] or "").lower()) for name in fields]


def has_phrase(words: list[str], phrase: tuple[str, ...]) -> bool:
    """Whether the words hold the phrase's words one after the other."""
    size = len(phrase)
    return any(tuple(words[start : start + size]) == phrase for start in range(len(words)))


def search_matches(task: dict[str, Any], search: Search) -> bool:
    """Whether a task's id is in every id range and its fields hold every phrase."""
    task_id = task["id"].hex
    if not all(ids.low.hex <= task_id <= ids.high.hex for ids in search.ids):
        return False
    fields = field_words(task)
    return all(any(has_phrase(words, phrase) for words in fields) for phrase in search.phrases)


def sort_key(task: dict[str, Any]) -> tuple[datetime, str]:
    """The listing's order: created_at, then the id's hex digits."""
    return (task["created_at"], task["id"].hex)


def expected(tasks: Iterable[dict[str, Any]], f: TaskFilter, now: datetime = NOW) -> list[str]:
    """Ids of every matching task, in the order the API lists them."""
    chosen = sorted(
        (t for t in tasks if matches(t, f, now)), key=sort_key, reverse=f.order == "desc"
    )
    return [str(t["id"]) for t in chosen]


def delete_all_tasks(engine: sa.Engine) -> None:
    """Empty the five tables (children first), keeping the tables themselves."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


def counted(found: int, exact: bool = False) -> dict[str, Any]:
    """A count as the API writes it: exact up to the threshold, then "at least" it."""
    if found > TOTAL_EXACT_UP_TO and not exact:
        return {"value": TOTAL_EXACT_UP_TO, "relation": "gte"}
    return {"value": found, "relation": "eq"}


def facets(tasks: list[dict[str, Any]], f: TaskFilter, now: datetime = NOW) -> dict[str, Any]:
    """What `/tasks/counts` answers: each facet counted without its own dimension's filter."""

    def count(chosen: TaskFilter) -> dict[str, Any]:
        return counted(len(expected(tasks, chosen, now)), f.exact_count)

    return {
        "status": {s: count(replace(f, statuses=(s,))) for s in STATUSES},
        "task_type": {t: count(replace(f, task_types=(t,))) for t in TASK_TYPES},
        "total": count(f),
        "stalled": count(replace(f, stalled=True)),
    }


# What each type's `summary` says, from its own fields.
SUMMARIES = {
    "model_upload": "{model_name} from {source}",
    "dataset_upload": "{dataset_name} from {source}",
    "training": "{base_model} on {dataset_name} ({method})",
    "evaluation": "{model_name} on {benchmark}",
    "synthesis": "{output_dataset} by {generator_model}",
}


def item_json(task: dict[str, Any]) -> dict[str, Any]:
    """The list item the API must answer for a task, as JSON."""

    def instant(moment: datetime | None) -> str | None:
        return None if moment is None else format_timestamp(moment)

    return {
        "id": str(task["id"]),
        "task_type": task["task_type"],
        "status": task["status"],
        "tag": task["tag"],
        "created_at": instant(task["created_at"]),
        "updated_at": instant(task["updated_at"]),
        "started_at": instant(task["started_at"]),
        "finished_at": instant(task["finished_at"]),
        "progress": task["progress"],
        "error_msg": task["error_msg"],
        "summary": SUMMARIES[task["task_type"]].format(**task),
        "cancel_requested_at": instant(task.get("cancel_requested_at")),
    }


def histogram(tasks: list[dict[str, Any]], f: TaskFilter, now: datetime = NOW) -> dict[str, Any]:
    """What `/tasks/histogram` answers: the matching tasks of each bar of the filter's window,
    by status, each task placed by its own created_at."""
    window = chart_window(f, now)
    if window is None:
        return {"start": None, "end": None, "bucket_seconds": None, "buckets": [], "total": 0}
    counts = [dict.fromkeys(STATUSES, 0) for _ in range(window.bars)]
    step = timedelta(seconds=window.step)
    for task in tasks:
        created = task["created_at"]
        if matches(task, f, now) and window.lower <= created < window.upper:
            counts[(created - window.grid_start) // step][task["status"]] += 1
    buckets = []
    for index, bar in enumerate(counts):
        start, end = window.bucket(index)
        bounds = {"start": format_timestamp(start), "end": format_timestamp(end)}
        buckets.append(bounds | {"counts": bar, "total": sum(bar.values())})
    return {
        "start": format_timestamp(window.lower),
        "end": format_timestamp(window.upper),
        "bucket_seconds": window.step,
        "buckets": buckets,
        "total": sum(bucket["total"] for bucket in buckets),
    }


def hourly_counts(tasks: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], int]:
    """What the hourly summary must hold: tasks per (type, status, hour of created_at), the
    hour numbered from 1970-01-01 UTC."""
    counts: dict[tuple[str, str, int], int] = {}
    for task in tasks:
        hour = (task["created_at"] - EPOCH) // timedelta(hours=1)
        key = (task["task_type"], task["status"], hour)
        counts[key] = counts.get(key, 0) + 1
    return counts


def error_groups(
    tasks: list[dict[str, Any]], f: TaskFilter, now: datetime = NOW
) -> list[dict[str, Any]]:
    """What `/tasks/errors` lists (links aside): the matching failed tasks grouped by their
    message's error group, most frequent first, each with its newest message."""
    failed = [t for t in tasks if t["status"] == "failed" and matches(t, f, now)]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for task in failed:
        grouped.setdefault(error_group(task["error_msg"]), []).append(task)
    groups = [
        {
            "error_group": key,
            "count": len(members),
            "message": max(members, key=sort_key)["error_msg"],
            "task_types": [t for t in TASK_TYPES if any(m["task_type"] == t for m in members)],
            "first_seen": format_timestamp(min(m["created_at"] for m in members)),
            "last_seen": format_timestamp(max(m["created_at"] for m in members)),
        }
        for key, members in grouped.items()
    ]
    return sorted(groups, key=lambda group: (-group["count"], group["error_group"]))
