"""The five tables on every engine: the contract's columns, UTC instants, exact tags, id order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import database, make_app, reset_tables
from flask import Flask
from oracle import NOW, insert_tasks, known_tasks, make_task

from app.models import (
    COMMON_COLUMNS,
    MODEL_FOR_TYPE,
    TASK_TYPES,
    EvaluationTask,
    UploadTask,
    connect_for_reading,
    db,
    sql_constant,
)

TABLES = {
    "model_upload": "upload_task",
    "dataset_upload": "upload_dataset_task",
    "training": "training_task",
    "evaluation": "evaluation_task",
    "synthesis": "synthesis_task",
}


def a_task(task_type: str = "training", **changes: Any) -> dict[str, Any]:
    rng = random.Random(len(changes))
    return make_task(task_type, "running", NOW - timedelta(hours=1), rng=rng) | changes


def read(engine: sa.Engine, task_type: str, *where: Any, order_by: Any = None) -> list[Any]:
    table = MODEL_FOR_TYPE[task_type].__table__
    statement = sa.select(table).where(*where).order_by(order_by)
    with engine.connect() as connection:
        return list(connection.execute(statement))


def test_tables_have_the_contract_names():
    assert {t: MODEL_FOR_TYPE[t].__tablename__ for t in TASK_TYPES} == TABLES


def test_every_table_has_the_shared_columns(empty_engine):
    inspector = sa.inspect(empty_engine)
    for table in TABLES.values():
        columns = {column["name"]: column for column in inspector.get_columns(table)}
        assert set(COMMON_COLUMNS) <= set(columns), table
        not_null = {name for name in COMMON_COLUMNS if not columns[name]["nullable"]}
        assert not_null == {"id", "status", "created_at", "updated_at"}, table


def test_every_table_is_indexed_for_the_listing_order(empty_engine):
    inspector = sa.inspect(empty_engine)
    for table in TABLES.values():
        indexed = [index["column_names"] for index in inspector.get_indexes(table)]
        for leading in ([], ["status"], ["tag"]):
            walk = [*leading, "created_at", "id"]
            assert any(columns[: len(walk)] == walk for columns in indexed), (table, walk)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 28, 9, 14, 3, 123_456, tzinfo=UTC),
        datetime(2026, 11, 28, 14, 44, 3, 999_999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=timezone(-timedelta(hours=8))),
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ],
)
def test_timestamps_round_trip_as_utc_with_microseconds(empty_engine, moment):
    task = a_task(created_at=moment, updated_at=moment, started_at=moment)
    insert_tasks(empty_engine, [task])
    (row,) = read(empty_engine, "training")
    for column in ("created_at", "updated_at", "started_at"):
        assert getattr(row, column) == moment
        assert getattr(row, column).utcoffset() == timedelta(0)


def test_timestamps_compare_as_instants_in_queries(empty_engine):
    moment = datetime(2026, 11, 28, 9, 0, 0, 500_000, tzinfo=UTC)
    insert_tasks(empty_engine, [a_task(created_at=moment)])
    model = MODEL_FOR_TYPE["training"]
    same_instant_elsewhere = moment.astimezone(timezone(timedelta(hours=-3)))
    assert len(read(empty_engine, "training", model.created_at == same_instant_elsewhere)) == 1
    just_after = moment + timedelta(microseconds=1)
    assert read(empty_engine, "training", model.created_at >= just_after) == []


def test_naive_timestamps_are_refused(empty_engine):
    with pytest.raises(sa.exc.StatementError, match="time zone"):
        insert_tasks(empty_engine, [a_task(created_at=datetime(2026, 11, 28, 9, 0))])


TAG_VARIANTS = ["exp-1", "Exp-1", "EXP-1", "exp-1 ", " exp-1", "exp-1  ", "ëxp-1", "exp-1\u00a0"]


@pytest.mark.parametrize("tag", TAG_VARIANTS)
def test_tags_match_exactly(empty_engine, tag):
    rng = random.Random(5)
    tasks = [
        make_task("evaluation", "queued", NOW - timedelta(minutes=n), tag=variant, rng=rng)
        for n, variant in enumerate(TAG_VARIANTS)
    ]
    insert_tasks(empty_engine, tasks)
    rows = read(empty_engine, "evaluation", EvaluationTask.tag == tag)
    assert [row.tag for row in rows] == [tag]


@pytest.mark.parametrize("tag", ["exp-1 ", "ünïcode-✓", "rocket-🚀", "<b>bold</b>", "x" * 128])
def test_tags_round_trip_unchanged(empty_engine, tag):
    insert_tasks(empty_engine, [a_task(tag=tag)])
    (row,) = read(empty_engine, "training")
    assert row.tag == tag


def test_ids_order_like_their_hex_digits(empty_engine):
    """Ties on created_at are broken by id, so every engine must order ids the same way."""
    ids = [
        uuid.UUID(int=1),
        uuid.UUID(int=0xA),
        uuid.UUID(int=0x9 << 120),
        uuid.UUID(int=0xA << 120),
        uuid.UUID(int=0xF << 124),
        uuid.UUID(int=0xFF << 60),
        uuid.uuid4(),
        uuid.uuid4(),
    ]
    insert_tasks(empty_engine, [a_task("synthesis", id=task_id) for task_id in ids])
    model = MODEL_FOR_TYPE["synthesis"]
    rows = read(empty_engine, "synthesis", order_by=model.id)
    assert [row.id for row in rows] == sorted(ids, key=lambda task_id: task_id.hex)


def test_ids_round_trip_as_uuids(empty_engine):
    task = a_task("dataset_upload")
    insert_tasks(empty_engine, [task])
    model = MODEL_FOR_TYPE["dataset_upload"]
    (row,) = read(empty_engine, "dataset_upload", model.id == task["id"])
    assert row.id == task["id"]
    assert isinstance(row.id, uuid.UUID)


def test_metrics_round_trip_as_json(empty_engine):
    metrics = {"accuracy": 0.8125, "f1": 0.1 + 0.2, "loss": 1e-9}
    insert_tasks(empty_engine, [a_task("evaluation", metrics=metrics)])
    (row,) = read(empty_engine, "evaluation")
    assert row.metrics == metrics


@pytest.mark.parametrize("progress", [0.0, 0.1 + 0.2, 1 / 3, 1.0])
def test_progress_round_trips_exactly(empty_engine, progress):
    insert_tasks(empty_engine, [a_task(progress=progress)])
    (row,) = read(empty_engine, "training")
    assert row.progress == progress


def test_detail_columns_are_only_the_types_own():
    names = [column.name for column in UploadTask.detail_columns()]
    assert names == ["source", "model_name", "source_uri", "revision", "size_bytes"]


@pytest.fixture(scope="module")
def postgresql_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app over known tasks in a fresh PostgreSQL database."""
    for url in database("postgresql", tmp_path_factory):
        engine = sa.create_engine(url)
        reset_tables(engine)
        insert_tasks(engine, known_tasks())
        engine.dispose()
        # One pooled connection, so that what a request prepared is seen afterwards.
        app = make_app(url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
        yield app
        with app.app_context():
            db.engine.dispose()


def prepared_after_window_pages(app: Flask) -> list[tuple[int, int]]:
    """(generic_plans, custom_plans) of each statement prepared by eight window pages."""
    client = app.test_client()
    for _ in range(8):
        assert client.get("/tasks?within_hours=24&limit=2").status_code == 200
    with app.app_context(), connect_for_reading() as connection:
        # The pool holds one connection (see postgresql_app): the one the requests used.
        statement = "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
        return [tuple(row) for row in connection.exec_driver_sql(statement)]


def test_postgresql_keeps_a_pages_prepared_statements_from_request_to_request(postgresql_app):
    """A request ends in no ROLLBACK, which would make psycopg drop what it prepared."""
    assert len(prepared_after_window_pages(postgresql_app)) >= 2  # the page and its count


@pytest.mark.parametrize("value", ["it's", "back\\slash", True, 1.5])
def test_sql_constants_refuse_what_could_end_their_quotes(value):
    with pytest.raises(ValueError, match="SQL constant"):
        sql_constant(value)


def test_sql_constants_are_written_into_the_statement(empty_engine):
    statement = sa.select(sql_constant(" from ").label("text"), sql_constant(2).label("number"))
    assert not statement.compile(dialect=empty_engine.dialect).params
    with empty_engine.connect() as connection:
        assert connection.execute(statement).one() == (" from ", 2)


def test_postgresql_plans_a_windows_statements_once(postgresql_app):
    """Left to choose, PostgreSQL would plan a time window's statements anew on every run."""
    plans = prepared_after_window_pages(postgresql_app)
    assert plans
    assert all(generic > 0 and custom == 0 for generic, custom in plans)
