"""The commands: `init-db` creates the tables, `seed-demo` fills them with tasks that keep the
recorder's rules."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import make_app, reset_tables
from oracle import NOW, STATUSES, insert_tasks, known_tasks, matches

from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, TASK_TYPES, TERMINAL_STATUSES
from app.schema import drop_schema

TERMINAL = {s.value for s in TERMINAL_STATUSES}
SEEDED_TASKS = 1000


@pytest.fixture
def scratch_runner(scratch_app):
    """A CLI runner for an app over empty scratch tables."""
    return scratch_app.test_cli_runner()


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def all_tasks(engine: sa.Engine, leave_out: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every row of the five tables as the database has them, each with its task type,
    without the columns `leave_out` names."""
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        tasks = []
        for task_type, model in MODEL_FOR_TYPE.items():
            present = {column["name"] for column in inspector.get_columns(model.__tablename__)}
            kept = present - set(leave_out)
            columns = [column for column in model.__table__.c if column.name in kept]
            rows = connection.execute(sa.select(*columns).order_by(model.__table__.c.id))
            tasks += [{"task_type": task_type, **row._mapping} for row in rows]
        return tasks


def invoke(runner, *args: str):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result


# -- init-db ---------------------------------------------------------------------------------


def test_init_db_creates_the_five_tables(scratch_runner, scratch_engine):
    drop_schema(scratch_engine)
    result = invoke(scratch_runner, "init-db")
    assert table_names(scratch_engine) >= {model.__tablename__ for model in MODEL_FOR_TYPE.values()}
    assert "Tables ready" in result.output


def test_init_db_keeps_existing_tasks(scratch_runner, scratch_engine):
    tasks = known_tasks()[:20]
    insert_tasks(scratch_engine, tasks)
    invoke(scratch_runner, "init-db")
    assert len(all_tasks(scratch_engine)) == len(tasks)


# -- seed-demo -------------------------------------------------------------------------------


def test_seed_demo_adds_that_many_tasks(scratch_runner, scratch_engine):
    result = invoke(scratch_runner, "seed-demo", "--tasks", "37")
    assert len(all_tasks(scratch_engine)) == 37
    assert "Added 37 demo tasks." in result.output


def test_seed_demo_shares_tasks_among_the_five_tables(scratch_runner, scratch_engine):
    invoke(scratch_runner, "seed-demo", "--tasks", "12")
    per_type = Counter(task["task_type"] for task in all_tasks(scratch_engine))
    assert sorted(per_type.values()) == [2, 2, 2, 3, 3]


def test_seed_demo_creates_missing_tables(scratch_runner, scratch_engine):
    drop_schema(scratch_engine)
    invoke(scratch_runner, "seed-demo", "--tasks", "5")
    assert len(all_tasks(scratch_engine)) == 5


def test_seed_demo_adds_to_existing_tasks(scratch_runner, scratch_engine):
    invoke(scratch_runner, "seed-demo", "--tasks", "10")
    invoke(scratch_runner, "seed-demo", "--tasks", "5")
    assert len(all_tasks(scratch_engine)) == 15


def test_if_empty_seeds_an_empty_database(scratch_runner, scratch_engine):
    invoke(scratch_runner, "seed-demo", "--if-empty", "--tasks", "10")
    assert len(all_tasks(scratch_engine)) == 10


def test_if_empty_leaves_existing_tasks_alone(scratch_runner, scratch_engine):
    invoke(scratch_runner, "seed-demo", "--tasks", "10")
    result = invoke(scratch_runner, "seed-demo", "--if-empty", "--tasks", "50")
    assert len(all_tasks(scratch_engine)) == 10
    assert "10 tasks already there" in result.output


def test_same_seed_gives_the_same_tasks(scratch_runner, scratch_engine):
    invoke(scratch_runner, "seed-demo", "--tasks", "25", "--seed", "4")
    first = all_tasks(scratch_engine)
    reset_tables(scratch_engine)
    invoke(scratch_runner, "seed-demo", "--tasks", "25", "--seed", "4")
    assert all_tasks(scratch_engine) == first


@pytest.mark.parametrize("count", ["0", "-3", "many"])
def test_seed_demo_refuses_a_bad_count(scratch_runner, scratch_engine, count):
    result = scratch_runner.invoke(args=["seed-demo", "--tasks", count])
    assert result.exit_code == 2
    assert all_tasks(scratch_engine) == []


# -- what seed-demo makes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(scratch_url: str) -> list[dict[str, Any]]:
    """A thousand demo tasks, made by the command and read back once per engine."""
    app = make_app(scratch_url)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    reset_tables(engine)
    invoke(app.test_cli_runner(), "seed-demo", "--tasks", str(SEEDED_TASKS), "--seed", "5")
    tasks = all_tasks(engine)
    engine.dispose()
    return tasks


def test_seeded_count(seeded):
    assert len(seeded) == SEEDED_TASKS


def test_seeded_tasks_are_finished_exactly_when_terminal(seeded):
    assert all((task["finished_at"] is not None) == (task["status"] in TERMINAL) for task in seeded)


def test_seeded_queued_tasks_have_not_started(seeded):
    queued = [task for task in seeded if task["status"] == "queued"]
    assert all(task["started_at"] is None and task["progress"] is None for task in queued)


def test_seeded_running_tasks_have_started_and_report_progress(seeded):
    running = [task for task in seeded if task["status"] == "running"]
    assert all(task["started_at"] is not None for task in running)
    assert all(task["progress"] is not None and 0 <= task["progress"] < 1 for task in running)


def test_seeded_timestamps_are_in_order(seeded):
    for task in seeded:
        moments = [task["created_at"], task["started_at"], task["finished_at"]]
        reached = [moment for moment in moments if moment is not None]
        assert reached == sorted(reached), task
        assert task["updated_at"] == reached[-1], task


def test_seeded_tasks_are_not_in_the_future(seeded):
    columns = ["created_at", "updated_at", "started_at", "finished_at"]
    assert all(task[name] is None or task[name] <= NOW for task in seeded for name in columns)


def test_seeded_progress_is_in_range(seeded):
    assert all(task["progress"] is None or 0 <= task["progress"] <= 1 for task in seeded)


def test_seeded_completed_tasks_are_done(seeded):
    completed = [task for task in seeded if task["status"] == "completed"]
    assert completed
    assert all(task["progress"] == 1.0 for task in completed)


def test_seeded_failed_tasks_say_why_and_no_others_do(seeded):
    assert all((task["error_msg"] is not None) == (task["status"] == "failed") for task in seeded)


def test_seeded_tasks_have_every_type_and_status(seeded):
    assert {task["task_type"] for task in seeded} == set(TASK_TYPES)
    assert {task["status"] for task in seeded} == set(STATUSES)


def test_seeded_tasks_mix_tags(seeded):
    tags = Counter(task["tag"] for task in seeded)
    assert tags[None] > 0
    assert len(tags) > 10


def test_seeded_tasks_spread_over_weeks(seeded):
    created = [task["created_at"] for task in seeded]
    assert min(created) < NOW - timedelta(weeks=4)
    assert max(created) > NOW - timedelta(hours=1)


def test_seeded_tasks_include_recent_activity(seeded):
    last_day = [task for task in seeded if matches(task, TaskFilter(within_hours=24))]
    assert sum(task["status"] in {"queued", "running"} for task in last_day) >= 5
    assert sum(task["status"] in TERMINAL for task in last_day) >= 5


@pytest.mark.parametrize("engine_kind", ["postgresql"], indirect=True)
def test_seeded_postgresql_tables_are_all_visible_to_index_only_scans(scratch_url, seeded):
    engine = sa.create_engine(scratch_url)
    with engine.connect() as connection:
        pages = connection.execute(
            sa.text(
                "SELECT relname, relpages, relallvisible FROM pg_class "
                "WHERE relname IN :tables AND relkind = 'r'"
            ).bindparams(sa.bindparam("tables", expanding=True)),
            {"tables": [model.__tablename__ for model in MODEL_FOR_TYPE.values()]},
        ).all()
    engine.dispose()
    assert len(pages) == len(MODEL_FOR_TYPE)
    assert all(visible == total > 0 for _, total, visible in pages), pages
