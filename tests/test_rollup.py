"""The hourly summary the database keeps (task_hourly_count): equal to what the tables hold
after inserts, status changes, moves and deletes written in plain SQL, after a bulk load, and
when two transactions count into the same hour at once; and the chart drawn from it."""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import statements_run
from oracle import EPOCH, NOW, expected, histogram, hourly_counts, insert_tasks, known_tasks
from test_cli import all_tasks

from app.demo import seed_demo
from app.filters import TaskFilter
from app.models import TASK_TYPES, UTCDateTime, UUIDType
from app.query import counts
from app.query.counts import Total, count_facets, count_tasks
from app.query.rollup import HOURLY_COUNTS
from app.query.shapes import ACTIVE, STATUSES


def summary(engine: sa.Engine) -> dict[tuple[str, str, int], int]:
    """The summary's rows that count tasks (a row may fall to zero and stay)."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(HOURLY_COUNTS))
        return {(r.task_type, r.status, r.hour): r.tasks for r in rows if r.tasks}


def typed(value: object) -> sa.types.TypeEngine:
    """How the tables store a value: UTC instants and ids each engine's way."""
    return UTCDateTime() if isinstance(value, datetime) else UUIDType


def run(engine: sa.Engine, sql: str, **values: object) -> None:
    """One statement in plain SQL, as a module writing the tables directly would send it."""
    params = (sa.bindparam(name, type_=typed(value)) for name, value in values.items())
    with engine.begin() as connection:
        connection.execute(sa.text(sql).bindparams(*params), values)


RAW_INSERT = (
    "INSERT INTO synthesis_task (id, status, created_at, updated_at, generator_model, "
    "output_dataset, target_rows) VALUES (:id, 'queued', :at, :at, 'g', 'o', 10)"
)


def raw_insert(engine: sa.Engine, created: datetime) -> None:
    """A queued synthesis task inserted in plain SQL."""
    run(engine, RAW_INSERT, id=uuid.uuid4(), at=created)


@pytest.fixture
def loaded(empty_engine: sa.Engine) -> sa.Engine:
    """The known tasks in the scratch tables."""
    insert_tasks(empty_engine, known_tasks())
    return empty_engine


def test_inserted_tasks_are_counted_by_type_status_and_hour(loaded):
    assert summary(loaded) == hourly_counts(all_tasks(loaded))


def write_in_sql(loaded: sa.Engine) -> None:
    """Status changes, a move to another hour, deletes, an update that moves nothing and two
    inserts, each in plain SQL."""
    run(
        loaded,
        "UPDATE training_task SET status = 'running', started_at = updated_at "
        "WHERE status = 'queued'",
    )
    run(
        loaded,
        "UPDATE upload_task SET status = 'failed', finished_at = :at_finish, "
        "error_msg = 'lost' WHERE status = 'running'",
        at_finish=NOW,
    )
    run(
        loaded,
        "UPDATE evaluation_task SET created_at = :at_new WHERE status = 'completed'",
        at_new=NOW - timedelta(hours=3, minutes=7),
    )
    run(loaded, "DELETE FROM upload_dataset_task WHERE status IN ('failed', 'cancelled')")
    run(loaded, "UPDATE synthesis_task SET status = status, progress = 0.25")  # moves nothing
    raw_insert(loaded, NOW - timedelta(minutes=1))
    raw_insert(loaded, NOW - timedelta(minutes=59))


def test_changes_written_in_sql_keep_the_summary_equal_to_the_tables(loaded):
    write_in_sql(loaded)
    tasks = all_tasks(loaded)
    assert summary(loaded) == hourly_counts(tasks)
    assert {t["status"] for t in tasks if t["task_type"] == "training"} >= {"running"}


def test_deleting_every_task_leaves_nothing_counted(loaded):
    for table in ("upload_task", "upload_dataset_task", "evaluation_task", "synthesis_task"):
        run(loaded, f"DELETE FROM {table}")
    run(loaded, "DELETE FROM training_task")
    assert summary(loaded) == {}


def test_a_bulk_load_counts_the_loaded_tasks(empty_engine):
    seed_demo(empty_engine, 300, NOW, seed=3)
    tasks = all_tasks(empty_engine)
    assert len(tasks) == 300
    assert summary(empty_engine) == hourly_counts(tasks)


def test_two_transactions_counting_into_one_hour_lose_nothing(empty_engine):
    created = NOW - timedelta(minutes=30)
    errors: list[Exception] = []

    def insert_meanwhile() -> None:
        try:
            raw_insert(empty_engine, created)
        except Exception as error:  # the test reports it
            errors.append(error)

    with empty_engine.connect() as first:
        with first.begin():
            values = {"id": uuid.uuid4(), "at": created}
            params = (sa.bindparam(name, type_=typed(value)) for name, value in values.items())
            first.execute(sa.text(RAW_INSERT).bindparams(*params), values)
            # The second waits for the first's lock on the summary row (SQLite's: the file's).
            second = threading.Thread(target=insert_meanwhile)
            second.start()
            second.join(timeout=0.3)
        second.join(timeout=30)
    assert not second.is_alive() and not errors
    hour = (created - EPOCH) // timedelta(hours=1)
    assert summary(empty_engine) == {("synthesis", "queued", hour): 2}


def test_the_chart_after_sql_writes_matches_the_oracle(scratch_app, scratch_engine):
    insert_tasks(scratch_engine, known_tasks())
    run(scratch_engine, "DELETE FROM training_task WHERE status = 'completed'")
    run(
        scratch_engine,
        "UPDATE evaluation_task SET status = 'running', finished_at = NULL, "
        "started_at = created_at WHERE status = 'cancelled'",
    )
    raw_insert(scratch_engine, NOW - timedelta(days=2, minutes=13))
    tasks = all_tasks(scratch_engine)
    client = scratch_app.test_client()
    for task_filter, args in (
        (TaskFilter(), {}),
        (TaskFilter(within_hours=48), {"within_hours": "48"}),
    ):
        answer = client.get("/tasks/histogram", query_string=args).get_json()
        assert answer == histogram(tasks, task_filter)


# -- counts of types and statuses alone ------------------------------------------------------

SUMMARY_COUNTED = [
    TaskFilter(),
    TaskFilter(statuses=("failed",)),
    TaskFilter(statuses=("queued", "running")),
    TaskFilter(task_types=("training",)),
    TaskFilter(task_types=("model_upload", "synthesis"), statuses=("completed", "queued")),
]


def summary_or_live(statement: str) -> bool:
    """Whether a statement reads the summary, or the tables' ranges of queued and running
    tasks alone (whose hours in the summary fall to zero as they move on)."""
    tests = " ".join(re.findall(r"status (?:= '\w+'|IN \([^)]*\))", statement))
    statuses = re.findall(r"'(\w+)'", tests)
    return "task_hourly_count" in statement or (bool(statuses) and set(statuses) <= set(ACTIVE))


@pytest.mark.parametrize("first_hours", [1, 64])
def test_counts_of_types_and_statuses_are_the_summarys_after_sql_writes(
    loaded, monkeypatch, first_hours
):
    """The capped total and every chip against the oracle, each read from the summary (and
    the queued and running tasks' ranges; the stalled chip needs the rows), after writes in
    SQL that leave the queued training tasks' hours at zero. With one hour read first, a
    count takes several rounds. (Counts past the threshold, from the summary's partial sums,
    are held against exact counts in tests/test_query_plans.py; the threshold itself is
    written into cached statements, so it is not patched here.)"""
    monkeypatch.setattr(counts, "SUMMARY_FIRST_HOURS", first_hours)
    write_in_sql(loaded)
    tasks = all_tasks(loaded)

    def exact(task_filter: TaskFilter) -> Total:
        return Total(len(expected(tasks, task_filter)), "eq")

    with loaded.connect() as connection:
        for task_filter in SUMMARY_COUNTED:
            with statements_run(loaded) as sent:
                assert count_tasks(connection, task_filter, NOW) == exact(task_filter)
            assert sent and all(map(summary_or_live, sent)), sent
            if task_filter.statuses and set(task_filter.statuses) <= set(ACTIVE):
                assert not any("task_hourly_count" in statement for statement in sent)
            chips = count_facets(connection, task_filter, NOW)
            by_status = {s: exact(replace(task_filter, statuses=(s,))) for s in STATUSES}
            by_type = {t: exact(replace(task_filter, task_types=(t,))) for t in TASK_TYPES}
            assert (chips.status, chips.task_type) == (by_status, by_type)
            assert chips.total == exact(task_filter)


def test_a_count_with_time_in_it_reads_the_tables(loaded):
    """The summary's hours know nothing of a time window's finished tasks, nor of a bound
    inside an hour."""
    for task_filter in (TaskFilter(within_hours=24), TaskFilter(created_after=NOW)):
        with statements_run(loaded) as sent, loaded.connect() as connection:
            count_tasks(connection, task_filter, NOW)
        assert not any("task_hourly_count" in statement for statement in sent)
