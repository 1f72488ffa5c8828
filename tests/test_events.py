"""Every change on record: the recorder's events, `GET /tasks/<id>/events`, the task page's
timeline, and the list's `actor=` filter against the oracle, on every engine."""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import every_id
from oracle import KNOWN_ACTORS, NOW, expected, facets, histogram, insert_tasks, make_task
from sqlalchemy.dialects import sqlite
from test_pages import get_page

from app.demo import type_fields
from app.events import record_event, task_events
from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, EventKind, TaskEvent, db
from app.query import actors, count_facets, iter_tasks, task_histogram
from app.query.actors import LISTED_UP_TO, ActorTasks, look_up_actor_tasks
from app.recorder import IllegalTransition, Recorder, TaskNotFound


class SettableClock:
    """A clock that shows whatever instant the test last set."""

    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def recorder(empty_engine: sa.Engine, clock: SettableClock) -> Recorder:
    return Recorder(empty_engine, clock, actor="trainer-7")


def new_task(recorder: Recorder, task_type: str = "training") -> uuid.UUID:
    fields = type_fields(task_type, random.Random(3), finished_ok=False)
    return recorder.create(task_type, tag="exp-1", **fields)


def timeline(engine: sa.Engine, task_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """(kind, actor, note) of a task's events, oldest first."""
    with engine.connect() as connection:
        return [(e.kind, e.actor, e.note) for e in task_events(connection, task_id)]


# -- the recorder writes an event for every move ---------------------------------------------


def test_create_records_who_created_the_task_and_when(recorder, empty_engine, clock):
    task_id = new_task(recorder)
    with empty_engine.connect() as connection:
        (event,) = task_events(connection, task_id)
    assert (event.task_type, event.task_id, event.kind) == ("training", task_id, "created")
    assert (event.actor, event.at, event.note) == ("trainer-7", clock.now, None)


def test_a_whole_life_is_on_record_in_order(recorder, empty_engine, clock):
    task_id = new_task(recorder)
    clock.advance(minutes=1)
    recorder.start("training", task_id)
    for progress in (0.1, 0.2, 0.3, 0.55, 0.56, 0.8, 0.9):
        clock.advance(minutes=1)
        recorder.report_progress("training", task_id, progress)
    clock.advance(minutes=1)
    recorder.complete("training", task_id, output_model="m-ft")
    assert timeline(empty_engine, task_id) == [
        ("created", "trainer-7", None),
        ("started", "trainer-7", None),
        ("progress", "trainer-7", "reached 25%"),
        ("progress", "trainer-7", "reached 50%"),
        ("progress", "trainer-7", "reached 75%"),
        ("completed", "trainer-7", None),
    ]


def test_a_report_that_jumps_several_quarters_records_the_highest_once(recorder, empty_engine):
    task_id = new_task(recorder)
    recorder.start("training", task_id)
    recorder.report_progress("training", task_id, 0.8)
    recorder.report_progress("training", task_id, 0.6)  # backwards: no quarter crossed
    recorder.report_progress("training", task_id, 1.0)
    notes = [note for kind, _, note in timeline(empty_engine, task_id) if kind == "progress"]
    assert notes == ["reached 75%", "reached 100%"]


@pytest.mark.parametrize("from_status", ["queued", "running"])
def test_fail_records_the_error_as_its_note(recorder, empty_engine, from_status):
    task_id = new_task(recorder)
    if from_status == "running":
        recorder.start("training", task_id)
    recorder.fail("training", task_id, "CUDA out of memory")
    assert timeline(empty_engine, task_id)[-1] == ("failed", "trainer-7", "CUDA out of memory")


def test_cancel_is_recorded(recorder, empty_engine):
    task_id = new_task(recorder)
    recorder.cancel("training", task_id)
    assert timeline(empty_engine, task_id)[-1] == ("cancelled", "trainer-7", None)


def test_a_refused_move_leaves_no_event(recorder, empty_engine):
    task_id = new_task(recorder)
    with pytest.raises(IllegalTransition):
        recorder.complete("training", task_id)
    with pytest.raises(IllegalTransition):
        recorder.report_progress("training", task_id, 0.5)
    assert [kind for kind, _, _ in timeline(empty_engine, task_id)] == ["created"]


def test_heartbeat_is_heard_but_records_no_event(recorder, empty_engine, clock):
    task_id = new_task(recorder)
    recorder.start("training", task_id)
    clock.advance(minutes=45)
    recorder.heartbeat("training", task_id)
    table = MODEL_FOR_TYPE["training"].__table__
    with empty_engine.connect() as connection:
        heard = connection.execute(
            sa.select(table.c.updated_at).where(table.c.id == task_id)
        ).scalar_one()
    assert heard == clock.now
    assert [kind for kind, _, _ in timeline(empty_engine, task_id)] == ["created", "started"]


def test_heartbeat_of_a_task_that_is_not_running_is_refused(recorder):
    task_id = new_task(recorder)
    with pytest.raises(IllegalTransition, match="heartbeat"):
        recorder.heartbeat("training", task_id)
    with pytest.raises(TaskNotFound):
        recorder.heartbeat("training", uuid.uuid4())


def test_two_reports_racing_over_one_quarter_record_it_once(empty_engine, clock, engine_kind):
    """Each report's compare-and-set also asks for the task below the quarter."""
    recorder = Recorder(empty_engine, clock, actor="trainer-7")
    task_ids = [new_task(recorder) for _ in range(8)]
    for task_id in task_ids:
        recorder.start("training", task_id)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def report(progress: float) -> None:
        try:
            barrier.wait()
            for task_id in task_ids:
                recorder.report_progress("training", task_id, progress)
        except BaseException as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=report, args=(p,)) for p in (0.5, 0.6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for task_id in task_ids:
        kinds = [kind for kind, _, _ in timeline(empty_engine, task_id)]
        assert kinds.count("progress") == 1


def test_a_recorder_needs_a_usable_actor_name(empty_engine):
    with pytest.raises(ValueError, match="control characters"):
        Recorder(empty_engine, actor="bad\nname")
    with pytest.raises(ValueError, match="empty"):
        Recorder(empty_engine, actor="")


def test_record_event_refuses_an_unknown_kind(empty_engine):
    with empty_engine.begin() as connection, pytest.raises(ValueError):
        record_event(connection, "training", uuid.uuid4(), "renamed", "alice")


def test_an_event_written_in_a_rolled_back_transaction_is_gone(empty_engine):
    """record_event writes on the caller's connection: the change's transaction decides."""
    task_id = uuid.uuid4()
    with empty_engine.connect() as connection:
        transaction = connection.begin()
        record_event(connection, "training", task_id, EventKind.RETRIED, "alice@example.com")
        transaction.rollback()
    assert timeline(empty_engine, task_id) == []


# -- GET /tasks/<id>/events and the task page ------------------------------------------------


@pytest.fixture
def lived(scratch_app, scratch_engine) -> uuid.UUID:
    """A training task created, started, half done and failed by the module "trainer"."""
    recorder = Recorder(scratch_engine, lambda: NOW, actor="trainer")
    task_id = new_task(recorder)
    recorder.start("training", task_id)
    recorder.report_progress("training", task_id, 0.5)
    recorder.fail("training", task_id, "<script>alert(1)</script>")
    return task_id


def test_events_endpoint_lists_a_task_s_events_oldest_first(scratch_app, lived):
    response = scratch_app.test_client().get(f"/tasks/{lived}/events")
    assert response.status_code == 200
    body = response.get_json()
    assert body["task_id"] == str(lived)
    assert [item["kind"] for item in body["items"]] == ["created", "started", "progress", "failed"]
    first = body["items"][0]
    assert first == {
        "task_type": "training",
        "task_id": str(lived),
        "kind": "created",
        "actor": "trainer",
        "at": "2026-11-28T12:00:00Z",
        "note": None,
    }


def test_deleting_a_task_keeps_its_events_readable(scratch_app, scratch_engine, lived):
    table = MODEL_FOR_TYPE["training"].__table__
    with scratch_engine.begin() as connection:
        connection.execute(table.delete().where(table.c.id == lived))
    client = scratch_app.test_client()
    assert client.get(f"/tasks/{lived}").status_code == 404
    response = client.get(f"/tasks/{lived}/events")
    assert response.status_code == 200
    assert len(response.get_json()["items"]) == 4


def test_events_of_a_task_with_none_are_an_empty_list(client, tasks):
    quiet = next(task for task in tasks if not task["actors"])
    response = client.get(f"/tasks/{quiet['id']}/events")
    assert response.status_code == 200
    assert response.get_json() == {"task_id": str(quiet["id"]), "items": []}


@pytest.mark.parametrize("task_id", [str(uuid.UUID(int=5)), "not-a-uuid"])
def test_events_of_no_task_are_404_problems(client, task_id):
    response = client.get(f"/tasks/{task_id}/events")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_task_page_shows_the_timeline_escaped(scratch_app, lived):
    response, page = get_page(scratch_app.test_client(), f"/task/{lived}")
    body = response.get_data(as_text=True)
    assert [item["data-kind"] for item in page.find("li")] == [
        "created",
        "started",
        "progress",
        "failed",
    ]
    assert "reached 50%" in body
    assert 'by <span class="event-actor">trainer</span>' in body
    assert "<script>alert(1)</script>" not in body


def test_task_page_says_when_nothing_is_on_record(client, tasks):
    quiet = next(task for task in tasks if not task["actors"])
    _, page = get_page(client, f"/task/{quiet['id']}")
    assert page.has_id("no-events")


def test_the_app_has_no_way_to_edit_an_event():
    """Events are written once: no UPDATE of task_event anywhere in the app's code."""
    from pathlib import Path

    source = "\n".join(p.read_text() for p in Path("app").rglob("*.py"))
    assert "update(TaskEvent" not in source and "TaskEvent.__table__.update" not in source


# -- actor= on the list, against the oracle --------------------------------------------------

ACTOR_FILTERS = [
    *[TaskFilter(actor=actor) for actor in KNOWN_ACTORS],
    TaskFilter(actor="nobody"),
    TaskFilter(actor="trainer", statuses=("running", "failed")),
    TaskFilter(actor="alice@example.com", task_types=("training",), within_hours=24 * 30),
    TaskFilter(actor="system", tags=("exp-1", "nightly")),
    TaskFilter(actor="uploader", order="asc", limit=7),
    TaskFilter(actor="trainer", stalled=True),
]


def args_of(task_filter: TaskFilter) -> list[tuple[str, str]]:
    return task_filter.to_args()


@pytest.mark.parametrize("task_filter", ACTOR_FILTERS, ids=lambda f: repr(f.to_args()))
def test_actor_filter_lists_the_oracles_tasks(client, tasks, task_filter):
    assert every_id(client, task_filter) == expected(tasks, task_filter)


@pytest.mark.parametrize("task_filter", ACTOR_FILTERS, ids=lambda f: repr(f.to_args()))
def test_actor_filter_counts_are_the_oracles(client, tasks, task_filter):
    counts = client.get("/tasks/counts", query_string=args_of(task_filter)).get_json()
    assert counts == facets(tasks, task_filter)


def test_actor_filter_on_the_page_lists_the_same_rows(client, tasks):
    task_filter = TaskFilter(actor="trainer", limit=100)
    response, page = get_page(client, "/", args_of(task_filter))
    assert response.status_code == 200
    assert page.row_ids == expected(tasks, task_filter)
    assert page.by_id("actor")["value"] == "trainer"
    assert "acted on by “trainer”" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("value", "message"),
    [("x" * 201, "at most 200"), ("a\tb", "control characters")],
)
def test_bad_actor_is_a_422_naming_it(client, value, message):
    response = client.get("/tasks", query_string={"actor": value})
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["parameter"] == "actor" and message in error["detail"]


def test_bad_actor_on_the_page_is_an_inline_message(client):
    response, page = get_page(client, "/", [("actor", "a\x01b")])
    assert response.status_code == 200
    assert page.by_id("actor").get("aria-invalid") == "true"


def kept_share(task_filter: TaskFilter) -> tuple[tuple[str, str, int], ...]:
    """The actor's kept counts, as the lookup reads them (in the app's context)."""
    return look_up_actor_tasks(db.session, task_filter.actor or "").counted


def read_row_by_row(task_filter: TaskFilter) -> TaskFilter:
    """The filter with none of its actor's tasks listed: each table tests every row."""
    share = ActorTasks(task_filter.actor or "", (), counted=kept_share(task_filter))
    return replace(task_filter, actor_tasks=share)


@pytest.mark.parametrize("task_filter", ACTOR_FILTERS, ids=lambda f: repr(f.to_args()))
def test_actor_tasks_tested_row_by_row_are_the_oracles(app, tasks, task_filter):
    """The way a table is read where the actor acted on too many of its tasks to list."""
    with app.app_context():
        every_row = read_row_by_row(task_filter)
        listed = [str(row.id) for row in iter_tasks(db.session, every_row, NOW, batch=7)]
        counts = count_facets(db.session, every_row, NOW).as_json()
    assert listed == expected(tasks, task_filter)
    assert counts == facets(tasks, task_filter)


def gathered_by_the_statement(task_filter: TaskFilter) -> TaskFilter:
    """The filter with its actor's tasks gathered from task_event in every table."""
    every_table = tuple(MODEL_FOR_TYPE)
    share = ActorTasks(
        task_filter.actor or "", (), gathered=every_table, counted=kept_share(task_filter)
    )
    return replace(task_filter, actor_tasks=share)


@pytest.mark.parametrize("task_filter", ACTOR_FILTERS, ids=lambda f: repr(f.to_args()))
def test_actor_tasks_gathered_by_the_statement_are_the_oracles(app, tasks, task_filter):
    """The way a table is read where the actor acted on too many of its tasks to list and
    too few to walk for: the list, the counts and the chart."""
    with app.app_context():
        gathered = gathered_by_the_statement(task_filter)
        listed = [str(row.id) for row in iter_tasks(db.session, gathered, NOW, batch=7)]
        counts = count_facets(db.session, gathered, NOW).as_json()
        chart = task_histogram(db.session, gathered, NOW).as_json()
    assert listed == expected(tasks, task_filter)
    assert counts == facets(tasks, task_filter)
    assert chart == histogram(tasks, task_filter)


def event_rows(events: list[tuple[str, uuid.UUID, str]]) -> list[dict[str, Any]]:
    return [
        {"task_type": t, "task_id": i, "kind": "cancelled", "actor": a, "at": NOW}
        for t, i, a in events
    ]


def test_an_actors_tasks_are_looked_up_per_table(empty_engine, monkeypatch):
    """Listed where few (none is a list too), gathered by the statement where more, left to
    a test per row where the kept counts hold more tasks than a gathering takes (a lower
    threshold here, so that few tasks pass it). The events of tasks that are not there
    (deleted, or not yet written) are gathered, not walked for."""
    gathered_up_to = LISTED_UP_TO + 10
    monkeypatch.setattr(actors, "GATHERED_UP_TO", gathered_up_to)
    rng = random.Random(11)
    moment = NOW - timedelta(hours=1)
    many_tasks = [
        make_task("synthesis", "running", moment, rng=rng) for _ in range(gathered_up_to + 1)
    ]
    insert_tasks(empty_engine, many_tasks)
    many = [task["id"] for task in many_tasks]
    some = [uuid.uuid4() for _ in range(LISTED_UP_TO + 1)]
    few = [uuid.uuid4() for _ in range(3)]
    events = [("training", task_id, "alice") for task_id in some for _ in range(2)]
    events += [("synthesis", task_id, "alice") for task_id in many]
    events += [("evaluation", task_id, "alice") for task_id in few for _ in range(2)]
    events += [("dataset_upload", uuid.uuid4(), "bob")]
    with empty_engine.begin() as connection:
        connection.execute(sa.insert(TaskEvent), event_rows(events))
        found = look_up_actor_tasks(connection, "alice")
    listed = {task_type: sorted(ids) for task_type, ids in found.listed}
    bounded = {"model_upload", "dataset_upload", "evaluation"}
    assert listed == {t: [] for t in bounded} | {"evaluation": sorted(few)}
    assert found.gathered == ("training",)
    assert found.counted == (("synthesis", "running", gathered_up_to + 1),)


@pytest.mark.parametrize(
    "actor", ["o'brien", 'say "hi"', "back\\slash", "semi;colon -- dash", "ünï 名前 🙂"]
)
def test_an_actor_named_in_the_statement_is_found_as_written(empty_engine, actor):
    """A gathering names its actor in the statement's text (see `actor_condition`): quotes,
    backslashes and any other character are the actor's own, on every engine."""
    rng = random.Random(5)
    moments = [NOW - timedelta(minutes=minutes) for minutes in range(LISTED_UP_TO + 1)]
    tasks = [make_task("training", "completed", moment, rng=rng) for moment in moments]
    insert_tasks(empty_engine, tasks)
    events = [("training", task["id"], actor) for task in tasks]
    events += [("training", task["id"], actor + "x") for task in tasks[:3]]
    with empty_engine.begin() as connection:
        connection.execute(sa.insert(TaskEvent), event_rows(events))
        task_filter = TaskFilter(actor=actor, limit=1000)
        assert look_up_actor_tasks(connection, actor).gathered == ("training",)
        found = [str(row.id) for row in iter_tasks(connection, task_filter, NOW)]
        counts = count_facets(connection, task_filter, NOW).as_json()
    assert sorted(found) == sorted(str(task["id"]) for task in tasks)
    assert counts["total"] == {"value": len(tasks), "relation": "eq"}


def test_an_actors_listed_tasks_stay_within_sqlites_parameter_limit():
    """Every table listing as many tasks as it may, with ten tags and every status: each
    statement binds each list a few times, far below SQLite's 32,766 parameters."""
    from app.query.counts import capped_count_templates, exact_count_template, facet_template
    from app.query.histogram import grouped_template
    from app.query.pages import keys_template, page_template, page_values
    from app.query.shapes import STATUSES, page_shape_of, shape_of

    ids = tuple(uuid.uuid4() for _ in range(LISTED_UP_TO))
    share = ActorTasks("alice", tuple((task_type, ids) for task_type in MODEL_FOR_TYPE))
    tags = tuple(f"exp-{index}" for index in range(10))
    task_filter = TaskFilter(
        actor="alice", actor_tasks=share, tags=tags, statuses=STATUSES, within_hours=24
    )
    page_shape, values = page_shape_of(task_filter, NOW)
    count_shape, _ = shape_of(task_filter, NOW)
    values |= page_values(task_filter) | {"cap": 10_001, "chart_lower": NOW, "chart_upper": NOW}
    statements = [
        page_template(page_shape, merged=True),
        keys_template(page_shape),
        facet_template(count_shape),
        *capped_count_templates(count_shape, one_statement=True),
        exact_count_template(count_shape),
        grouped_template(count_shape, 3600),
    ]
    for statement in statements:
        compiled = statement.compile(dialect=sqlite.dialect())
        bound = compiled.construct_expanded_state(values).positiontup or ()
        assert len(bound) <= 32_766 // 2, len(bound)  # with room to spare


def test_actor_filter_reads_each_table_as_its_share_of_the_actors_tasks():
    """A table the actor never touched is not read, a few tasks are read by id, and many
    are a correlated EXISTS over task_event (not a join, which would repeat tasks)."""
    from app.query.pages import page_statement

    share = ActorTasks("trainer", (("training", (uuid.uuid4(),)), ("evaluation", ())))
    task_filter = TaskFilter(actor="trainer", actor_tasks=share)
    sql = str(page_statement(task_filter, NOW).compile(compile_kwargs={"render_postcompile": True}))
    assert sql.count("EXISTS") == len(MODEL_FOR_TYPE) - 2
    assert sql.count("training_task.id IN (") == 1
    assert sql.count("false") == 1


def keys_of(rows: list[Any]) -> set[str]:
    return {row["id"] for row in rows}


def test_events_written_by_the_recorder_are_found_by_actor(scratch_app, lived):
    client = scratch_app.test_client()
    assert keys_of(client.get("/tasks?actor=trainer").get_json()["items"]) == {str(lived)}
    assert client.get("/tasks?actor=Trainer").get_json()["items"] == []


def test_event_table_has_no_foreign_key_to_the_tasks(scratch_engine):
    assert sa.inspect(scratch_engine).get_foreign_keys(TaskEvent.__tablename__) == []
