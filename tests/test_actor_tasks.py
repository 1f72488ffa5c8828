"""Each actor's tasks, kept by the database: counted per type and status (actor_task_count)
and listed with their created_at (actor_task), equal to what the events and the tables hold
after events and tasks written, moved and deleted in plain SQL, after an upgrade over
events already there, and when a task changes status while its actor's first event is
written; and the counts and pages of `actor=` read from them."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import flask_migrate
import pytest
import sqlalchemy as sa
from conftest import statements_run
from oracle import KNOWN_ACTORS, NOW, facets, insert_events, insert_tasks, known_tasks
from test_cli import all_tasks
from test_rollup import RAW_INSERT, run

from app.bulk import actor_tasks_made_after
from app.filters import TaskFilter
from app.models import TaskEvent
from app.query import actors, counts
from app.query.actors import ACTOR_COUNTS, ACTOR_TASKS
from app.schema import MIGRATIONS


@dataclass(frozen=True)
class Kept:
    """Each actor's tasks: how many per (actor, type, status), and (actor, type, created_at,
    id) of each."""

    counts: dict[tuple[str, str, str], int]
    rows: frozenset[tuple[str, str, datetime, uuid.UUID]]


def kept(engine: sa.Engine) -> Kept:
    """What the database keeps (a count may fall to zero and stay)."""
    with engine.connect() as connection:
        counted = connection.execute(sa.select(ACTOR_COUNTS))
        listed = connection.execute(sa.select(ACTOR_TASKS))
        return Kept(
            {(r.actor, r.task_type, r.status): r.tasks for r in counted if r.tasks},
            frozenset((r.actor, r.task_type, r.created_at, r.task_id) for r in listed),
        )


def acted(engine: sa.Engine) -> Kept:
    """The oracle: each actor's distinct tasks among those there, from the events and the
    tasks' rows."""
    tasks = {(t["task_type"], t["id"]): t for t in all_tasks(engine)}
    with engine.connect() as connection:
        columns = (TaskEvent.actor, TaskEvent.task_type, TaskEvent.task_id)
        pairs = [
            (actor, tasks[task_type, task_id])
            for actor, task_type, task_id in connection.execute(sa.select(*columns).distinct())
            if (task_type, task_id) in tasks
        ]
    return Kept(
        dict(Counter((actor, t["task_type"], t["status"]) for actor, t in pairs)),
        frozenset((actor, t["task_type"], t["created_at"], t["id"]) for actor, t in pairs),
    )


def event(task_type: str, task_id: uuid.UUID, actor: str) -> dict[str, object]:
    """One event of `actor` about a task."""
    return dict(task_type=task_type, task_id=task_id, kind="progress", actor=actor, at=NOW)


def write_events(engine: sa.Engine, *events: dict[str, object]) -> None:
    """Events in one statement (one INSERT of many rows, not one INSERT each)."""
    with engine.begin() as connection:
        connection.execute(sa.insert(TaskEvent).values(list(events)))


@pytest.fixture
def loaded(empty_engine: sa.Engine) -> sa.Engine:
    """The known tasks and their actors' events in the scratch tables."""
    tasks = known_tasks()
    insert_tasks(empty_engine, tasks)
    insert_events(empty_engine, tasks)
    return empty_engine


def a_task(engine: sa.Engine, task_type: str, status: str) -> uuid.UUID:
    """The id of one task of that type and status."""
    return next(
        t["id"] for t in all_tasks(engine) if (t["task_type"], t["status"]) == (task_type, status)
    )


def test_events_written_are_kept_by_actor_type_and_status(loaded):
    found = kept(loaded)
    assert found == acted(loaded)
    assert {actor for actor, _, _ in found.counts} == set(KNOWN_ACTORS)
    assert len(found.rows) == sum(found.counts.values())


def test_more_events_of_one_actor_and_task_keep_it_once(loaded):
    task_id = a_task(loaded, "training", "failed")
    key = ("carol", "training", "failed")
    before = kept(loaded).counts.get(key, 0)
    write_events(loaded, event("training", task_id, "carol"), event("training", task_id, "carol"))
    write_events(loaded, event("training", task_id, "carol"))
    after = kept(loaded)
    assert after == acted(loaded)
    assert after.counts[key] == before + 1


def test_changes_written_in_sql_keep_them_equal_to_the_events_and_tables(loaded):
    run(
        loaded,
        "UPDATE training_task SET status = 'running', started_at = updated_at "
        "WHERE status = 'queued'",
    )
    run(loaded, "UPDATE evaluation_task SET status = status, progress = 0.5")  # moves nothing
    run(loaded, "DELETE FROM upload_dataset_task WHERE status IN ('failed', 'cancelled')")
    run(
        loaded,
        "UPDATE synthesis_task SET created_at = :moved WHERE status = 'completed'",
        moved=NOW - timedelta(days=3, minutes=7),
    )
    assert kept(loaded) == acted(loaded)
    run(loaded, "DELETE FROM task_event WHERE task_type = 'synthesis' AND actor = 'trainer'")
    run(loaded, "UPDATE task_event SET actor = 'dave' WHERE task_type = 'model_upload'")
    run(loaded, "UPDATE task_event SET kind = 'cancelled' WHERE task_type = 'evaluation'")
    assert kept(loaded) == acted(loaded)


def test_an_event_before_its_task_is_kept_when_the_task_is_written(empty_engine):
    task_id = uuid.uuid4()
    created = NOW - timedelta(minutes=5)
    write_events(empty_engine, event("synthesis", task_id, "early"))
    assert kept(empty_engine) == Kept({}, frozenset())
    run(empty_engine, RAW_INSERT, id=task_id, at=created)
    assert kept(empty_engine) == acted(empty_engine)
    assert kept(empty_engine).counts == {("early", "synthesis", "queued"): 1}


def test_a_deleted_task_is_no_longer_kept_nor_are_its_later_events(loaded):
    task_id = a_task(loaded, "evaluation", "completed")
    write_events(loaded, event("evaluation", task_id, "erin"))
    run(loaded, "DELETE FROM evaluation_task WHERE id = :id", id=task_id)
    write_events(loaded, event("evaluation", task_id, "erin"))
    assert ("erin", "evaluation", "completed") not in kept(loaded).counts
    assert kept(loaded) == acted(loaded)


def test_deleting_every_event_at_once_leaves_nothing_kept(loaded):
    run(loaded, "DELETE FROM task_event")
    assert kept(loaded) == Kept({}, frozenset())


def test_deleting_every_task_leaves_nothing_kept(loaded):
    for table in ("upload_task", "upload_dataset_task", "training_task", "evaluation_task"):
        run(loaded, f"DELETE FROM {table}")
    run(loaded, "DELETE FROM synthesis_task")
    assert kept(loaded) == Kept({}, frozenset())


def test_a_status_change_waiting_for_a_first_event_moves_its_count(empty_engine):
    """The first event of an actor locks its task (PostgreSQL), or reads it with a lock
    (MariaDB), or holds the file (SQLite): a status change meanwhile waits, and then moves
    the new actor's count too."""
    task_id = uuid.uuid4()
    run(empty_engine, RAW_INSERT, id=task_id, at=NOW - timedelta(minutes=5))
    errors: list[Exception] = []

    def start_meanwhile() -> None:
        try:
            start = "UPDATE synthesis_task SET status = 'running' WHERE id = :id"
            run(empty_engine, start, id=task_id)
        except Exception as error:  # the test reports it
            errors.append(error)

    with empty_engine.connect() as first:
        with first.begin():
            first.execute(sa.insert(TaskEvent), [event("synthesis", task_id, "frank")])
            second = threading.Thread(target=start_meanwhile)
            second.start()
            second.join(timeout=0.3)
        second.join(timeout=30)
    assert not second.is_alive() and not errors
    assert kept(empty_engine).counts == {("frank", "synthesis", "running"): 1}
    assert kept(empty_engine) == acted(empty_engine)


def test_an_upgrade_keeps_the_events_already_there(scratch_app, scratch_engine):
    """Revision 0017 counts and lists the tasks of the events already there: after a
    downgrade and an upgrade, what it keeps is what the triggers kept."""
    tasks = known_tasks()
    insert_tasks(scratch_engine, tasks)
    insert_events(scratch_engine, tasks)
    run(scratch_engine, "DELETE FROM training_task WHERE status = 'failed'")
    written = kept(scratch_engine)
    with scratch_app.app_context():
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0016")
        flask_migrate.upgrade(directory=str(MIGRATIONS))
    assert kept(scratch_engine) == written == acted(scratch_engine)


def test_events_written_in_bulk_are_kept_once_made_again(scratch_engine):
    """The bench writes millions of events with the triggers dropped, and the counts and
    rows made again from them at the end."""
    tasks = known_tasks()
    insert_tasks(scratch_engine, tasks)
    with actor_tasks_made_after(scratch_engine):
        insert_events(scratch_engine, tasks)
    assert kept(scratch_engine) == acted(scratch_engine) != Kept({}, frozenset())


# -- what reads them --------------------------------------------------------------------------

COUNTED_FILTERS = [
    TaskFilter(actor="trainer"),
    TaskFilter(actor="trainer", statuses=("running", "failed")),
    TaskFilter(actor="alice@example.com", task_types=("training", "evaluation")),
    TaskFilter(actor="nobody"),
]


def refuse(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("counted from the tables")


@pytest.fixture
def counted(scratch_app, scratch_engine, monkeypatch) -> list[dict]:
    """The known tasks and their events, and the counts module unable to count an actor's
    chips or total from the tables."""
    tasks = known_tasks()
    insert_tasks(scratch_engine, tasks)
    insert_events(scratch_engine, tasks)
    monkeypatch.setattr(counts, "count_by_type_and_status", refuse)
    monkeypatch.setattr(counts, "capped_facets", refuse)
    return tasks


@pytest.mark.parametrize("task_filter", COUNTED_FILTERS, ids=lambda f: repr(f.to_args()))
def test_an_actors_chips_come_from_the_kept_counts(scratch_app, counted, task_filter):
    client = scratch_app.test_client()
    answer = client.get("/tasks/counts", query_string=task_filter.to_args()).get_json()
    assert answer == facets(counted, task_filter)


@pytest.mark.parametrize("task_filter", COUNTED_FILTERS, ids=lambda f: repr(f.to_args()))
def test_an_actors_total_comes_from_the_kept_counts(scratch_app, counted, task_filter, monkeypatch):
    monkeypatch.setattr(counts, "capped_count_templates", refuse)
    client = scratch_app.test_client()
    answer = client.get("/tasks", query_string=task_filter.to_args()).get_json()
    assert answer["total"] == facets(counted, task_filter)["total"]


def test_exact_counts_of_an_actor_read_the_tables(scratch_app, counted):
    """`count=exact` counts every match where it is, not a sum kept beside it."""
    client = scratch_app.test_client()
    args = [("actor", "trainer"), ("count", "exact")]
    with pytest.raises(AssertionError, match="counted from the tables"):
        client.get("/tasks/counts", query_string=args)


# -- a module's stalled tasks -----------------------------------------------------------------


@pytest.fixture
def made(scratch_app, scratch_engine, monkeypatch) -> list[dict]:
    """The known tasks, every synthesis task also acted on by "maker" (as a module creates
    its own), which is walked for there (a low threshold, so that few tasks pass it)."""
    monkeypatch.setattr(actors, "GATHERED_UP_TO", 1)
    tasks = known_tasks()
    for task in tasks:
        if task["task_type"] == "synthesis":
            task["actors"] = (*task["actors"], "maker")
    insert_tasks(scratch_engine, tasks)
    insert_events(scratch_engine, tasks)
    return tasks


def stalled_synthesis_probes(statements: list[str]) -> list[str]:
    """The statements that test a stalled synthesis task for an event of the actor."""
    probe = "task_event.task_type = 'synthesis'"
    return [s for s in statements if probe in s and "synthesis_task.updated_at" in s]


def test_a_modules_stalled_chip_needs_no_test_of_the_module(scratch_app, made):
    """Every running synthesis task is maker's: its stalled chip reads the table's stalled
    tasks without probing task_event for each."""
    client = scratch_app.test_client()
    task_filter = TaskFilter(actor="maker")
    with statements_run(scratch_app) as sent:
        answer = client.get("/tasks/counts", query_string=task_filter.to_args()).get_json()
    assert answer == facets(made, task_filter)
    assert answer["stalled"]["value"] > 0
    assert not stalled_synthesis_probes(sent)


def test_a_running_task_of_someone_else_keeps_the_test(scratch_app, scratch_engine, made):
    running = next(t for t in made if (t["task_type"], t["status"]) == ("synthesis", "running"))
    run(
        scratch_engine,
        "DELETE FROM task_event WHERE actor = 'maker' AND task_id = :id",
        id=running["id"],
    )
    running["actors"] = tuple(a for a in running["actors"] if a != "maker")
    client = scratch_app.test_client()
    task_filter = TaskFilter(actor="maker")
    with statements_run(scratch_app) as sent:
        answer = client.get("/tasks/counts", query_string=task_filter.to_args()).get_json()
    assert answer == facets(made, task_filter)
    assert stalled_synthesis_probes(sent)
