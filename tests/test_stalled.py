"""Stalled tasks: the limits, `stalled=true` and its chip against the oracle, the note beside
a stalled task's status, heartbeats, and `fail-stalled`, racing itself on every engine."""

from __future__ import annotations

import random
import re
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import every_id, statements_run
from oracle import HEARD_MINUTES_AGO, NOW, expected, facets, stalled
from test_cli import invoke
from test_pages import get_page

from app.actions import cancel_task
from app.demo import type_fields
from app.events import task_events
from app.filters import TaskFilter, format_timestamp
from app.models import MODEL_FOR_TYPE, TASK_TYPES
from app.recorder import Recorder
from app.stalled import (
    DEFAULT_STALLED_AFTER_MINUTES,
    STALLED_NOTE,
    StallLimits,
    fail_stalled,
    limits_from_environment,
    parse_duration,
)

# -- the limits ------------------------------------------------------------------------------


def test_default_limits_give_training_longer():
    limits = limits_from_environment({})
    assert limits.limit("model_upload") == timedelta(minutes=DEFAULT_STALLED_AFTER_MINUTES)
    assert limits.limit("training") == timedelta(minutes=120)


def test_per_type_settings_override_the_default():
    limits = limits_from_environment(
        {"STALLED_AFTER_MINUTES": "10", "STALLED_AFTER_MINUTES_EVALUATION": "45"}
    )
    assert limits.limit("evaluation") == timedelta(minutes=45)
    assert limits.limit("training") == timedelta(minutes=10)
    assert limits.limit("synthesis") == timedelta(minutes=10)


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5", "999999999"])
def test_a_bad_limit_stops_the_start_naming_the_setting(value):
    with pytest.raises(ValueError, match="STALLED_AFTER_MINUTES_TRAINING"):
        limits_from_environment({"STALLED_AFTER_MINUTES_TRAINING": value})


def test_the_app_reads_its_limits_from_the_environment(known_database, monkeypatch):
    from conftest import make_app

    monkeypatch.setenv("STALLED_AFTER_MINUTES_SYNTHESIS", "7")
    app = make_app(known_database[0])
    assert app.config["STALL_LIMITS"].limit("synthesis") == timedelta(minutes=7)


@pytest.mark.parametrize(
    ("text", "delta"),
    [("90m", timedelta(minutes=90)), ("2h", timedelta(hours=2)), ("3D", timedelta(days=3))],
)
def test_durations(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["2", "h", "0h", "-2h", "2 hours", "1.5h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="90m, 2h or 3d"):
        parse_duration(text)


# -- stalled=true on the list, against the oracle --------------------------------------------

STALLED_FILTERS = [
    TaskFilter(stalled=True),
    TaskFilter(stalled=True, task_types=("training",)),
    TaskFilter(stalled=True, task_types=("model_upload", "evaluation")),
    TaskFilter(stalled=True, statuses=("running", "failed")),
    TaskFilter(stalled=True, statuses=("failed",)),
    TaskFilter(stalled=True, tags=("exp-2",)),
    TaskFilter(stalled=True, within_hours=1),
    TaskFilter(stalled=True, created_after=NOW - timedelta(days=1)),
    TaskFilter(stalled=True, order="asc", limit=5),
    TaskFilter(stalled=True, limit=3),
    TaskFilter(stalled=True, created_before=NOW - timedelta(hours=8, minutes=30)),
    TaskFilter(stalled=True, created_before=NOW - timedelta(minutes=20), order="asc", limit=4),
    TaskFilter(stalled=True, exact_count=True),
    TaskFilter(),
    TaskFilter(tags=("exp-2",), statuses=("running",)),
]


def test_the_known_tasks_have_stalled_and_heard_running_tasks_of_every_type(tasks):
    """The fixture exercises the filter: both sides of each type's limit are there."""
    for task_type in TASK_TYPES:
        running = [t for t in tasks if t["task_type"] == task_type and t["status"] == "running"]
        assert any(stalled(t, TaskFilter()) for t in running)
        assert any(not stalled(t, TaskFilter()) for t in running)
    assert HEARD_MINUTES_AGO


@pytest.mark.parametrize("task_filter", STALLED_FILTERS, ids=lambda f: repr(f.to_args()))
def test_stalled_filter_lists_the_oracles_tasks(client, tasks, task_filter):
    assert every_id(client, task_filter) == expected(tasks, task_filter)


@pytest.mark.parametrize("task_filter", STALLED_FILTERS, ids=lambda f: repr(f.to_args()))
def test_counts_and_the_stalled_count_are_the_oracles(client, tasks, task_filter):
    counts = client.get("/tasks/counts", query_string=task_filter.to_args()).get_json()
    assert counts == facets(tasks, task_filter)


@pytest.mark.parametrize("task_type", [None, "training"])
def test_a_view_with_no_running_task_counts_no_stalled_one_without_reading_them(
    app, client, tasks, task_type
):
    """Created before the oldest running task: the running chip is none, so is the stalled
    chip, and the stalled tasks' range is not read."""
    oldest_running = min(t["created_at"] for t in tasks if t["status"] == "running")
    task_filter = TaskFilter(
        created_before=oldest_running, task_types=(task_type,) if task_type else ()
    )
    assert any(t["created_at"] < oldest_running for t in tasks)
    with statements_run(app) as sent:
        counts = client.get("/tasks/counts", query_string=task_filter.to_args()).get_json()
    assert counts == facets(tasks, task_filter)
    assert counts["status"]["running"] == counts["stalled"] == {"value": 0, "relation": "eq"}
    assert sent and not any(map(reads_stalled_range, sent)), sent


def test_a_view_with_running_tasks_counts_its_stalled_ones(app, client, tasks):
    """The same view ending just after the oldest stalled task reads the stalled range."""
    oldest_stalled = min(t["created_at"] for t in tasks if stalled(t, TaskFilter()))
    task_filter = TaskFilter(created_before=oldest_stalled + timedelta(seconds=1))
    with statements_run(app) as sent:
        counts = client.get("/tasks/counts", query_string=task_filter.to_args()).get_json()
    assert counts == facets(tasks, task_filter)
    assert counts["stalled"]["value"] >= 1
    assert any(map(reads_stalled_range, sent))


def reads_stalled_range(statement: str) -> bool:
    """Whether a statement tests running tasks last heard before a moment (PostgreSQL
    writes it as a row comparison, `(status, updated_at) < ('running', …)`)."""
    return re.search(r"updated_at\)? <", statement) is not None


@pytest.mark.parametrize(
    ("task_type", "stalled_minutes"), [("training", {121}), ("synthesis", {31, 119, 121})]
)
def test_training_is_held_to_its_own_longer_limit(client, tasks, task_type, stalled_minutes):
    """Of the tasks heard 5, 29, 31, 119 and 121 minutes ago, which are stalled."""
    listed = every_id(client, TaskFilter(stalled=True, task_types=(task_type,)))
    by_id = {str(task["id"]): task for task in tasks}
    minutes_ago = [round((NOW - by_id[i]["updated_at"]).total_seconds() / 60) for i in listed]
    assert {m for m in minutes_ago if m in HEARD_MINUTES_AGO} == stalled_minutes


@pytest.mark.parametrize("value", ["yes", "1", "TRUE"])
def test_stalled_takes_true_or_false_only(client, value):
    response = client.get("/tasks", query_string={"stalled": value})
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["parameter"] == "stalled"


def test_stalled_false_is_no_filter(client, tasks):
    body = client.get("/tasks", query_string={"stalled": "false", "limit": 100}).get_json()
    assert [item["id"] for item in body["items"]] == expected(tasks, TaskFilter())[:100]


def test_a_different_limit_changes_what_is_stalled(known_database, tasks):
    from conftest import make_app

    limits = StallLimits.of(600)
    app = make_app(known_database[0], STALL_LIMITS=limits)
    task_filter = TaskFilter(stalled=True, stall_limits=limits)
    assert every_id(app.test_client(), task_filter) == expected(tasks, task_filter)
    assert expected(tasks, task_filter) != expected(tasks, TaskFilter(stalled=True))


# -- the page --------------------------------------------------------------------------------


def test_rows_of_stalled_tasks_say_so_beside_their_status(client, tasks):
    task_filter = TaskFilter(statuses=("running",), tags=("exp-2",), limit=100)
    response, page = get_page(client, "/", task_filter.to_args())
    body = response.get_data(as_text=True)
    by_id = {str(task["id"]): task for task in tasks}
    assert page.row_ids
    for task_id in page.row_ids:
        task = by_id[task_id]
        assert page.has_id(f"stalled-{task_id}") == stalled(task, TaskFilter())
    assert "Stalled — last heard" in body


def test_the_stalled_chip_counts_and_toggles_the_filter(client, tasks):
    response, page = get_page(client, "/", [("task_type", "training")])
    chip = page.by_id("chip-stalled-true")
    count = len(expected(tasks, TaskFilter(task_types=("training",), stalled=True)))
    assert f'<span class="chip-count">{count}</span>' in response.get_data(as_text=True)
    assert "stalled=true" in chip["href"] and "task_type=training" in chip["href"]
    _, page = get_page(client, chip["href"])
    assert "stalled=true" not in page.by_id("chip-stalled-true")["href"]
    assert "checked" in page.by_id("stalled")


def test_the_stalled_checkbox_filters_the_page(client, tasks):
    response, page = get_page(client, "/", [("stalled", "true"), ("limit", "100")])
    assert response.status_code == 200
    assert page.row_ids == expected(tasks, TaskFilter(stalled=True))[:100]
    assert all(page.has_id(f"stalled-{task_id}") for task_id in page.row_ids)


def test_task_page_of_a_stalled_task_says_when_it_was_last_heard(client, tasks):
    task = next(
        t
        for t in tasks
        if t["task_type"] == "training" and t["updated_at"] == NOW - timedelta(minutes=121)
    )
    response, page = get_page(client, f"/task/{task['id']}")
    assert page.has_id(f"stalled-{task['id']}")
    assert "Stalled — last heard 2 h ago" in response.get_data(as_text=True)


# -- heartbeats and fail-stalled -------------------------------------------------------------


class Clock:
    """A clock the test moves."""

    def __init__(self):
        self.now = NOW - timedelta(hours=3)

    def __call__(self):
        return self.now


def running_tasks(recorder: Recorder, count: int, task_type: str = "evaluation") -> list[uuid.UUID]:
    rng = random.Random(5)
    ids = []
    for _ in range(count):
        task_id = recorder.create(task_type, **type_fields(task_type, rng, finished_ok=False))
        recorder.start(task_type, task_id)
        ids.append(task_id)
    return ids


def status_of(engine: sa.Engine, task_type: str, task_id: uuid.UUID) -> tuple[str, str | None]:
    table = MODEL_FOR_TYPE[task_type].__table__
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(table.c.status, table.c.error_msg).where(table.c.id == task_id)
        ).one()
    return row.status, row.error_msg


def test_a_heartbeat_keeps_a_task_from_stalling(scratch_app, scratch_engine):
    clock = Clock()
    recorder = Recorder(scratch_engine, clock, actor="evaluator")
    quiet, beating = running_tasks(recorder, 2)
    clock.now = NOW - timedelta(minutes=5)
    recorder.heartbeat("evaluation", beating)
    ids = every_id(scratch_app.test_client(), TaskFilter(stalled=True))
    assert ids == [str(quiet)]


def test_a_cancel_request_keeps_a_stalled_task_stalled_and_when_it_was_heard(
    scratch_app, scratch_engine
):
    """A person asking to stop a task is not its module reporting: the stall stays."""
    clock = Clock()
    recorder = Recorder(scratch_engine, clock, actor="evaluator")
    (quiet,) = running_tasks(recorder, 1)
    heard = clock.now
    cancel_task(scratch_engine, quiet, NOW, "alice@example.com")
    client = scratch_app.test_client()
    (item,) = client.get("/tasks", query_string={"stalled": "true"}).get_json()["items"]
    assert item["id"] == str(quiet) and item["cancel_requested_at"] is not None
    assert item["updated_at"] == format_timestamp(heard)
    assert "last heard 3 h ago" in client.get(f"/task/{quiet}").get_data(as_text=True)


def test_fail_stalled_fails_them_as_system_with_the_reason(scratch_app, scratch_engine):
    clock = Clock()
    recorder = Recorder(scratch_engine, clock, actor="evaluator")
    old, fresh = running_tasks(recorder, 2)
    clock.now = NOW - timedelta(minutes=1)
    recorder.report_progress("evaluation", fresh, 0.1)
    result = invoke(scratch_app.test_cli_runner(), "fail-stalled")
    assert f"failed evaluation {old}" in result.output
    assert "Failed 1 stalled tasks." in result.output
    assert status_of(scratch_engine, "evaluation", old) == ("failed", STALLED_NOTE)
    assert status_of(scratch_engine, "evaluation", fresh) == ("running", None)
    with scratch_engine.connect() as connection:
        last = task_events(connection, old)[-1]
    assert (last.kind, last.actor, last.note, last.at) == ("failed", "system", STALLED_NOTE, NOW)


def test_fail_stalled_dry_run_changes_nothing(scratch_app, scratch_engine):
    clock = Clock()
    (task_id,) = running_tasks(Recorder(scratch_engine, clock), 1)
    result = invoke(scratch_app.test_cli_runner(), "fail-stalled", "--dry-run")
    assert f"would fail evaluation {task_id}" in result.output
    assert "1 stalled tasks would be failed (dry run)." in result.output
    assert status_of(scratch_engine, "evaluation", task_id) == ("running", None)


def test_fail_stalled_older_than_overrides_every_type_s_limit(scratch_app, scratch_engine):
    clock = Clock()
    (task_id,) = running_tasks(Recorder(scratch_engine, clock), 1)  # heard 3 h ago
    runner = scratch_app.test_cli_runner()
    assert "Failed 0" in invoke(runner, "fail-stalled", "--older-than", "4h").output
    assert "Failed 1" in invoke(runner, "fail-stalled", "--older-than", "2h").output
    assert status_of(scratch_engine, "evaluation", task_id)[0] == "failed"


def test_fail_stalled_refuses_a_bad_duration(scratch_app):
    result = scratch_app.test_cli_runner().invoke(args=["fail-stalled", "--older-than", "2 hours"])
    assert result.exit_code == 2
    assert "90m, 2h or 3d" in result.output


def test_a_task_heard_between_finding_and_failing_is_left_running(scratch_engine):
    """The compare-and-set asks again that the task is still unheard."""
    clock = Clock()
    recorder = Recorder(scratch_engine, clock)
    (task_id,) = running_tasks(recorder, 1)
    clock.now = NOW
    heard_before = StallLimits().heard_before(NOW)
    recorder.heartbeat("evaluation", task_id)
    system = Recorder(scratch_engine, lambda: NOW, actor="system")
    assert not system.fail_stalled("evaluation", task_id, heard_before["evaluation"])
    assert status_of(scratch_engine, "evaluation", task_id)[0] == "running"


def test_fail_stalled_racing_itself_fails_each_task_once(scratch_engine, engine_kind):
    """Several servers run it from cron at once: each task is failed, and recorded, once."""
    clock = Clock()
    recorder = Recorder(scratch_engine, clock)
    ids = running_tasks(recorder, 30)
    heard_before = StallLimits().heard_before(NOW)
    runs = 3
    barrier = threading.Barrier(runs)
    results: list = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(fail_stalled(scratch_engine, heard_before, clock=lambda: NOW))
        except BaseException as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    failed = [key for result in results for key in result.failed]
    assert sorted(failed) == sorted(("evaluation", task_id) for task_id in ids)
    with scratch_engine.connect() as connection:
        for task_id in ids:
            kinds = [event.kind for event in task_events(connection, task_id)]
            assert kinds == ["created", "started", "failed"]
