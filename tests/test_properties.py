"""Property tests: for random tasks and random filters, the API agrees with the oracle.

Each example empties the scratch tables and fills them with its own tasks, so one app (and
one database per engine) serves every example of a test.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import IN_CI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import (
    NOW,
    STATUSES,
    delete_all_tasks,
    expected,
    facets,
    field_words,
    insert_tasks,
    item_json,
)

from app.cache import MemoryCache
from app.demo import type_fields
from app.filters import STATUS_ALIASES, TaskFilter
from app.models import MODEL_FOR_TYPE, TASK_TYPES, TERMINAL_STATUSES
from app.search import parse_search

# CI replays the same examples on every run (see conftest.py), each test on three engines:
# 100 of them there keep the suite within CI's time; a laptop's runs draw 200 new ones.
PROPERTY_SETTINGS = settings(
    max_examples=100 if IN_CI else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Case and trailing-space variants: tags match exactly, on every engine.
TAGS = ["a", "A", "a ", " a", "b", "exp-1"]
TERMINAL = {s.value for s in TERMINAL_STATUSES}
# Failed tasks' messages: unicode, HTML, and words shared with summaries ("lora", "from").
ERRORS = [
    "ran out of ünïcode ✓",
    "CUDA out of memory; tried LoRA from scratch",
    '<b>Bad</b> & "quoted" <script>alert(1)</script>',
    "ÉCOLE d'été 日本語 Привет",
    "Out-of-memory: CUDA",
]

# Minutes before NOW. The sampled ones recur often, so tasks tie on created_at across tables
# and land exactly on the edges of time windows and created_after/created_before bounds.
AGES = st.one_of(st.sampled_from([0, 1, 60, 61, 24 * 60]), st.integers(0, 96 * 60))
MICROSECONDS = st.sampled_from([0, 1, 500_000, 999_999])
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """A moment at most four days before NOW, on a coarse grid so that moments coincide."""
    return NOW - timedelta(minutes=draw(AGES), microseconds=draw(MICROSECONDS))


@st.composite
def task_rows(draw: st.DrawFn, creation: st.SearchStrategy[datetime]) -> dict[str, Any]:
    """One task that keeps the recorder's rules: finished exactly when terminal."""
    task_type = draw(st.sampled_from(TASK_TYPES))
    status = draw(st.sampled_from(STATUSES))
    created = draw(creation)
    started = None if status == "queued" else created
    finished = None
    if status in TERMINAL:
        # From the creation (to the minute) up to NOW, often a whole number of hours ago:
        # where a `within_hours` window begins.
        age = (NOW - created) // timedelta(minutes=1)
        hours_ago = st.integers(0, age // 60).map(lambda hours: hours * 60)
        finished_age = draw(st.one_of(hours_ago, st.integers(0, age)))
        finished = max(created, NOW - timedelta(minutes=finished_age))
    progress = {"queued": None, "completed": 1.0}.get(status, draw(st.floats(0, 1)))
    return {
        "task_type": task_type,
        "id": draw(st.uuids()),
        "status": status,
        "tag": draw(st.none() | st.sampled_from(TAGS)),
        "created_at": created,
        "updated_at": finished or started or created,
        "started_at": started,
        "finished_at": finished,
        "progress": progress,
        "error_msg": draw(st.sampled_from(ERRORS)) if status == "failed" else None,
        **type_fields(task_type, random.Random(0), finished_ok=status == "completed"),
    }


@st.composite
def task_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to 40 tasks, many created at one of a few shared instants, so only `id` orders them."""
    shared = draw(st.lists(instants(), min_size=1, max_size=4))
    creation = st.sampled_from(shared) | instants()
    return draw(st.lists(task_rows(creation), max_size=40, unique_by=lambda task: task["id"]))


def timestamp_arg(moment: datetime, zone: timezone) -> str:
    """An ISO 8601 argument in some zone: the API must read the instant, not the wall time."""
    return moment.astimezone(zone).isoformat()


def edges(tasks: list[dict[str, Any]]) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """Bounds that fall exactly on the tasks: creation instants, and windows that begin
    exactly when a task finished."""
    created = sorted({task["created_at"] for task in tasks})
    hours = sorted(
        {
            (NOW - task["finished_at"]) // timedelta(hours=1)
            for task in tasks
            if task["finished_at"] is not None
            and NOW - task["finished_at"] >= timedelta(hours=1)
            and (NOW - task["finished_at"]) % timedelta(hours=1) == timedelta(0)
        }
    )
    return (
        st.sampled_from(created) if created else st.nothing(),
        st.sampled_from(hours) if hours else st.nothing(),
    )


@st.composite
def search_terms(draw: st.DrawFn, tasks: list[dict[str, Any]]) -> str:
    """One term of `q` that is likely to match some of the tasks: a word, a phrase of two
    neighbouring words, an id or its start, or a word no task has."""
    fields = [words for task in tasks for words in field_words(task) if words] or [["none"]]
    words = draw(st.sampled_from(fields))
    start = draw(st.integers(0, len(words) - 1))
    kind = draw(st.sampled_from(["word", "phrase", "id", "prefix", "absent", "upper"]))
    if kind in {"id", "prefix"} and tasks:
        task_id = draw(st.sampled_from(tasks))["id"]
        if kind == "id":
            return str(task_id) if draw(st.booleans()) else task_id.hex.upper()
        return str(task_id)[: draw(st.integers(8, 23))].rstrip("-")
    if kind == "phrase":
        return '"' + " ".join(words[start : start + 2]) + '"'
    if kind == "absent":
        return draw(st.sampled_from(["zzzq", "ünï", "日本", "memory-cuda", '"memory of"']))
    word = words[start]
    return word.upper() if kind == "upper" else word


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, str]], TaskFilter]:
    """Random tasks, the query-string arguments of a random filter, and the filter they mean."""
    tasks = draw(task_lists())
    created_edges, window_edges = edges(tasks)
    moments = st.none() | instants() | created_edges
    task_types = draw(st.lists(st.sampled_from(TASK_TYPES), max_size=3))
    statuses = draw(st.lists(st.sampled_from([*STATUSES, *STATUS_ALIASES]), max_size=3))
    within_hours = draw(
        st.none() | st.sampled_from([1, 24, 8760]) | st.integers(1, 100) | window_edges
    )
    created_after = draw(moments)
    created_before = draw(moments)
    if created_after is not None and created_before is not None:
        created_after, created_before = sorted((created_after, created_before))
        if created_after == created_before:
            created_before = None
    tags = draw(st.lists(st.sampled_from([*TAGS, "no-such-tag"]), max_size=3))
    order = draw(st.sampled_from([None, "desc", "asc"]))
    terms = draw(st.none() | st.lists(search_terms(tasks), min_size=1, max_size=3))
    q = " ".join(terms) if terms else None

    args = [("task_type", t) for t in task_types] + [("status", s) for s in statuses]
    if within_hours is not None:
        args.append(("within_hours", str(within_hours)))
    if created_after is not None:
        args.append(("created_after", timestamp_arg(created_after, draw(ZONES))))
    if created_before is not None:
        args.append(("created_before", timestamp_arg(created_before, draw(ZONES))))
    args += [("tag", tag) for tag in tags]
    if order is not None:
        args.append(("order", order))
    if q is not None:
        args.append(("q", q))
    task_filter = TaskFilter(
        task_types=tuple(set(task_types)),
        statuses=tuple({STATUS_ALIASES.get(s, s) for s in statuses}),
        within_hours=within_hours,
        created_after=created_after,
        created_before=created_before,
        tags=tuple(set(tags)),
        search=parse_search(q) if q is not None else None,
        order=order or "desc",
    )
    return tasks, draw(st.permutations(args)), task_filter


def refill(engine, tasks: list[dict[str, Any]]) -> None:
    """Make the scratch tables hold exactly `tasks`."""
    delete_all_tasks(engine)
    insert_tasks(engine, tasks)


def get_json(client, path: str, args: list[tuple[str, str]]) -> dict[str, Any]:
    response = client.get(path, query_string=args)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@PROPERTY_SETTINGS
@given(
    scenario=scenarios(),
    limit=st.integers(1, 10),
    offset=st.integers(0, 45),
    exact=st.booleans(),
)
def test_offset_page_matches_oracle(scratch_app, scratch_engine, scenario, limit, offset, exact):
    tasks, args, task_filter = scenario
    refill(scratch_engine, tasks)
    paging = [("limit", str(limit)), ("offset", str(offset))] + ([("count", "exact")] * exact)
    body = get_json(scratch_app.test_client(), "/tasks", args + paging)

    matching = expected(tasks, task_filter)
    assert [item["id"] for item in body["items"]] == matching[offset : offset + limit]
    assert body["total"] == {"value": len(matching), "relation": "eq"}
    assert (body["next_cursor"] is None) == (offset + limit >= len(matching))


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_listed_fields_match_the_stored_task(scratch_app, scratch_engine, scenario):
    tasks, args, task_filter = scenario
    refill(scratch_engine, tasks)
    body = get_json(scratch_app.test_client(), "/tasks", [*args, ("limit", "100")])

    by_id = {str(task["id"]): task for task in tasks}
    assert body["items"] == [item_json(by_id[i]) for i in expected(tasks, task_filter)]


@PROPERTY_SETTINGS
@given(scenario=scenarios(), limit=st.integers(1, 7))
def test_cursor_walk_matches_oracle(scratch_app, scratch_engine, scenario, limit):
    tasks, args, task_filter = scenario
    refill(scratch_engine, tasks)
    client = scratch_app.test_client()
    matching = expected(tasks, task_filter)

    pages: list[list[str]] = []
    cursor_args: list[tuple[str, str]] = []
    for _ in range(len(matching) // limit + 2):
        body = get_json(client, "/tasks", [*args, ("limit", str(limit)), *cursor_args])
        pages.append([item["id"] for item in body["items"]])
        assert body["total"] == {"value": len(matching), "relation": "eq"}
        if body["next_cursor"] is None:
            break
        cursor_args = [("cursor", body["next_cursor"])]
    else:
        pytest.fail("the walk did not reach a page without next_cursor")

    assert [task_id for page in pages for task_id in page] == matching
    assert all(len(page) == limit for page in pages[:-1])
    assert len(pages) == max(1, -(-len(matching) // limit))


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_counts_match_oracle(scratch_app, scratch_engine, scenario):
    tasks, args, task_filter = scenario
    refill(scratch_engine, tasks)
    # Each example replaces every task with others whose updated_at may be no newer, which
    # no writer does (test_cache.py holds the cache to changes writers make): the counts
    # are computed afresh here, as in a new process.
    scratch_app.extensions["counts_cache"] = MemoryCache()
    body = get_json(scratch_app.test_client(), "/tasks/counts", args)
    assert body == facets(tasks, task_filter)


# What a module writing the tables directly may change of a task: its status with the times
# that go with it (so its hour's count moves to another status), when it was created (to
# another hour), its progress and its tag.
REWRITTEN = ("status", "created_at", "updated_at", "started_at", "finished_at", "progress", "tag")


@st.composite
def writes_in_sql(draw: st.DrawFn, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to eight of the tasks, each either rewritten (its REWRITTEN columns taken from a
    new random task of the same rules) or deleted (its id marked "delete")."""
    chosen = draw(st.lists(st.sampled_from(tasks), max_size=8, unique_by=lambda t: t["id"]))
    writes = []
    for task in chosen:
        if draw(st.booleans()):
            writes.append({"task_type": task["task_type"], "id": task["id"], "delete": True})
        else:
            new = draw(task_rows(instants()))
            writes.append({**task, **{column: new[column] for column in REWRITTEN}})
    return writes


def write_in_sql(engine, write: dict[str, Any]) -> None:
    """One UPDATE or DELETE by id in plain SQL, past the recorder, as a module may send it:
    whatever the database keeps beside the rows (the hourly summary, the search index,
    each table's newest change) is its triggers' to keep."""
    table = MODEL_FOR_TYPE[write["task_type"]].__table__
    if write.get("delete"):
        sql = f"DELETE FROM {table.name} WHERE id = :id"
        values = {"id": write["id"]}
    else:
        assignments = ", ".join(f"{column} = :{column}" for column in REWRITTEN)
        sql = f"UPDATE {table.name} SET {assignments} WHERE id = :id"
        values = {column: write[column] for column in ("id", *REWRITTEN)}
    binds = (sa.bindparam(name, type_=table.c[name].type) for name in values)
    with engine.begin() as connection:
        connection.execute(sa.text(sql).bindparams(*binds), values)


def written(tasks: list[dict[str, Any]], writes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks as the writes leave them: the oracle's rows."""
    by_id = {write["id"]: write for write in writes}
    after = (by_id.get(task["id"], task) for task in tasks)
    return [task for task in after if not task.get("delete")]


@PROPERTY_SETTINGS
@given(scenario=scenarios(), data=st.data(), exact=st.booleans())
def test_counts_match_oracle_after_updates_and_deletes_in_sql(
    scratch_app, scratch_engine, scenario, data, exact
):
    """The hourly summary, the words tables and the search index are kept by triggers, so
    counts read from them hold after writes that never went through the app."""
    tasks, args, task_filter = scenario
    refill(scratch_engine, tasks)
    writes = data.draw(writes_in_sql(tasks)) if tasks else []
    for write in writes:
        write_in_sql(scratch_engine, write)
    scratch_app.extensions["counts_cache"] = MemoryCache()
    args = [*args, ("count", "exact")] if exact else args
    body = get_json(scratch_app.test_client(), "/tasks/counts", args)
    assert body == facets(written(tasks, writes), replace(task_filter, exact_count=exact))
