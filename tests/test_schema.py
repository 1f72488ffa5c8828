"""Revisions on every engine: from empty to the newest, adopting tables made before revisions,
down and up again, and no drift between the models and the newest revision."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from oracle import facets, hourly_counts, insert_tasks, known_tasks
from test_cli import all_tasks, invoke

from app.error_groups import error_group
from app.filters import TaskFilter
from app.models import MODEL_FOR_TYPE, Base
from app.query.rollup import HOURLY_COUNTS
from app.schema import (
    FIRST_REVISION,
    compare_with,
    drop_schema,
    revision_metadata,
    schema_state,
    script_directory,
)
from app.search import parse_search

TASK_TABLES = {model.__tablename__ for model in MODEL_FOR_TYPE.values()}


@pytest.fixture
def empty_engine(scratch_engine: sa.Engine) -> sa.Engine:
    """The scratch database with no tables and no revision."""
    drop_schema(scratch_engine)
    return scratch_engine


@pytest.fixture
def runner(scratch_app):
    return scratch_app.test_cli_runner()


def state(engine: sa.Engine):
    with engine.connect() as connection:
        return schema_state(connection)


def made_before_revisions(engine: sa.Engine) -> None:
    """Tables as `init-db` made them before revisions: the first revision's DDL, no version."""
    revision_metadata(FIRST_REVISION, engine.dialect).create_all(engine)


def drift(engine: sa.Engine) -> list[Any]:
    """Alembic's autogenerate comparison of the database with the models."""
    with engine.connect() as connection:
        return compare_with(connection, Base.metadata)


def index_columns(engine: sa.Engine, table: str) -> dict[str, list[str]]:
    """The table's indexes as the database has them, by name."""
    return {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes(table)}


def test_init_db_upgrades_an_empty_database_to_the_newest_revision(runner, empty_engine):
    result = invoke(runner, "init-db")
    assert state(empty_engine).at_head
    assert set(sa.inspect(empty_engine).get_table_names()) >= TASK_TABLES
    assert "Tables ready at revision" in result.output


def test_the_newest_revision_and_the_models_have_no_drift(runner, empty_engine):
    invoke(runner, "init-db")
    assert drift(empty_engine) == []


def test_init_db_adopts_tables_made_before_revisions_with_their_rows(runner, empty_engine):
    made_before_revisions(empty_engine)
    tasks = known_tasks()[:60]
    insert_tasks(empty_engine, tasks)
    before = all_tasks(empty_engine)
    result = invoke(runner, "init-db")
    assert f"Adopted the existing task tables as revision {FIRST_REVISION}" in result.output
    assert state(empty_engine).at_head
    kept = [
        {name: task[name] for name in old}
        for task, old in zip(all_tasks(empty_engine), before, strict=True)
    ]
    assert kept == before


def test_init_db_on_the_newest_revision_changes_nothing(runner, empty_engine):
    invoke(runner, "init-db")
    result = invoke(runner, "init-db")
    assert "Upgraded" not in result.output
    assert "Adopted" not in result.output


def test_downgrade_one_step_and_upgrade_again(runner, empty_engine):
    invoke(runner, "init-db")
    head = state(empty_engine).head
    invoke(runner, "db", "downgrade")
    assert state(empty_engine).current != head
    invoke(runner, "db", "upgrade")
    assert state(empty_engine).at_head
    assert drift(empty_engine) == []


def refused(runner) -> str:
    """Run init-db, expect it to refuse, and give its message."""
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 1, result.output
    assert "match no known revision" in result.output
    return result.output


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """How many rows each task table holds, read without the models' columns."""
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in TASK_TABLES
        }


def test_tables_missing_a_column_are_refused_and_kept(runner, empty_engine):
    made_before_revisions(empty_engine)
    insert_tasks(empty_engine, known_tasks()[:40])
    with empty_engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE training_task DROP COLUMN output_model")
    before = row_counts(empty_engine)
    assert "column training_task.output_model is missing" in refused(runner)
    assert state(empty_engine).current is None
    assert row_counts(empty_engine) == before


def test_tables_missing_an_index_are_refused(runner, empty_engine):
    metadata = revision_metadata(FIRST_REVISION, empty_engine.dialect)
    metadata.create_all(empty_engine)
    indexes = metadata.tables["upload_task"].indexes
    next(index for index in indexes if index.name == "ix_upload_task_status_created").drop(
        empty_engine
    )
    wanted = "index ix_upload_task_status_created on upload_task (status, created_at, id, "
    assert wanted in refused(runner)


def test_some_of_the_tables_alone_are_refused(runner, empty_engine):
    revision_metadata(FIRST_REVISION, empty_engine.dialect).tables["upload_task"].create(
        empty_engine
    )
    assert "table synthesis_task is missing" in refused(runner)


def test_an_index_of_the_operators_own_is_kept(runner, empty_engine):
    made_before_revisions(empty_engine)
    table = sa.Table("upload_task", sa.MetaData(), autoload_with=empty_engine)
    sa.Index("ix_upload_task_progress", table.c.progress).create(empty_engine)
    invoke(runner, "init-db")
    assert index_columns(empty_engine, "upload_task")["ix_upload_task_progress"] == ["progress"]


def test_other_tables_in_the_database_are_left_alone(runner, empty_engine):
    other = sa.Table("other_app_jobs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    other.create(empty_engine)
    try:
        made_before_revisions(empty_engine)
        invoke(runner, "init-db")
        assert sa.inspect(empty_engine).has_table("other_app_jobs")
    finally:
        other.drop(empty_engine)


# -- error groups ----------------------------------------------------------------------------

ERROR_GROUP_REVISION = "0007"


def failed_keys(engine: sa.Engine) -> dict[str, tuple[str, str | None]]:
    """Each failed task's message and error group, by id."""
    return {
        str(task["id"]): (task["error_msg"], task["error_group"])
        for task in all_tasks(engine)
        if task["status"] == "failed"
    }


def test_the_revision_groups_the_errors_of_tasks_failed_before_it(runner, empty_engine):
    invoke(runner, "init-db")
    before = script_directory().get_revision(ERROR_GROUP_REVISION).down_revision
    invoke(runner, "db", "downgrade", before)
    assert "error_group" not in {
        c["name"] for c in sa.inspect(empty_engine).get_columns("upload_task")
    }
    insert_tasks(empty_engine, known_tasks())
    invoke(runner, "db", "upgrade")
    keys = failed_keys(empty_engine)
    assert len(keys) > 20
    assert all(group == error_group(message) for message, group in keys.values())
    assert drift(empty_engine) == []


def test_init_db_groups_the_errors_of_tasks_failed_in_plain_sql(runner, empty_engine):
    invoke(runner, "init-db")
    failed = [{**task, "error_group": None} for task in known_tasks() if task["status"] == "failed"]
    insert_tasks(empty_engine, failed)
    result = invoke(runner, "init-db")
    assert f"Grouped the errors of {len(failed)} tasks failed outside the recorder" in result.output
    keys = failed_keys(empty_engine)
    assert len(keys) == len(failed)
    assert all(group == error_group(message) for message, group in keys.values())
    again = invoke(runner, "init-db")
    assert "Grouped" not in again.output


# -- hourly counts ---------------------------------------------------------------------------

HOURLY_REVISION = "0009"


def hourly_summary(engine: sa.Engine) -> dict[tuple[str, str, int], int]:
    """The hourly summary's rows that count tasks."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(HOURLY_COUNTS))
        return {(r.task_type, r.status, r.hour): r.tasks for r in rows if r.tasks}


def test_the_revision_counts_the_tasks_already_there_and_goes_away_on_downgrade(
    runner, empty_engine
):
    invoke(runner, "init-db")
    before = script_directory().get_revision(HOURLY_REVISION).down_revision
    invoke(runner, "db", "downgrade", before)
    assert not sa.inspect(empty_engine).has_table(HOURLY_COUNTS.name)
    insert_tasks(empty_engine, known_tasks())
    invoke(runner, "db", "upgrade")
    assert hourly_summary(empty_engine) == hourly_counts(all_tasks(empty_engine))
    assert drift(empty_engine) == []


# SQLite's status in its search index; PostgreSQL's words tables, MariaDB's, then pairs.
SEARCH_INDEX_REVISIONS = ["0010", "0011", "0012", "0013"]


def searched_by_status(scratch_app, q: str) -> dict[str, Any]:
    """The capped counts by status of a search, as the API answers them."""
    client = scratch_app.test_client()
    return client.get("/tasks/counts", query_string={"q": q}).get_json()["status"]


@pytest.mark.parametrize("revision", SEARCH_INDEX_REVISIONS)
@pytest.mark.parametrize("q", ["llama", "traceback", '"support tickets"'])
def test_a_search_index_revision_indexes_the_tasks_already_there_and_goes_away_on_downgrade(
    scratch_app, runner, empty_engine, revision, q
):
    """The index gains the words and status of every task present (SQLite's FTS5 index in
    0010, PostgreSQL's words tables in 0011, MariaDB's in 0012, PostgreSQL's pairs of words
    in 0013), and the counts read from it
    match the oracle; down again, the search before the revision counts the same."""
    invoke(runner, "init-db")
    before = script_directory().get_revision(revision).down_revision
    invoke(runner, "db", "downgrade", before)
    tasks = known_tasks()
    insert_tasks(empty_engine, tasks)
    invoke(runner, "db", "upgrade")
    by_status = searched_by_status(scratch_app, q)
    assert by_status == facets(tasks, TaskFilter(search=parse_search(q)))["status"]
    assert any(total["value"] for total in by_status.values())
    invoke(runner, "db", "downgrade", before)
    assert searched_by_status(scratch_app, q) == by_status
    invoke(runner, "db", "upgrade")
    assert drift(empty_engine) == []
