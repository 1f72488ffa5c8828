"""Loading many task rows at once, the fastest way each engine offers.

Ten million demo tasks must take minutes, not hours. Rows go in large transactions: through
`COPY … FROM STDIN` on PostgreSQL, and as multi-row INSERTs elsewhere (PyMySQL writes an
executemany as one INSERT of many rows; SQLite runs it in one prepared statement). Into empty
tables, the secondary indexes are dropped first and built once at the end, which sorts each
index once instead of updating it row by row. The search objects and the hourly counts a
revision keeps beside the models (app.schema.unmodelled_hooks) are dropped and made again
the same way: the counts with their triggers, filled from the loaded rows in one grouped
pass per table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from app.models import MODEL_FOR_TYPE, TaskModel
from app.schema import script_directory, unmodelled_hooks

Loader = Callable[[TaskModel, Iterable[dict[str, Any]]], None]
# The revision that keeps each actor's tasks from task_event by triggers.
ACTOR_TASKS_REVISION = "0017"
# Rows per transaction, and per INSERT statement where the engine takes many at once.
TRANSACTION_ROWS = 100_000
STATEMENT_ROWS = 5_000


def is_empty(engine: sa.Engine) -> bool:
    """Whether none of the five tables holds a row."""
    with engine.connect() as connection:
        return all(
            connection.execute(sa.select(sa.literal(1)).select_from(model).limit(1)).first() is None
            for model in MODEL_FOR_TYPE.values()
        )


def droppable_indexes(model: TaskModel) -> list[sa.Index]:
    """The table's declared secondary indexes, but those a foreign key needs (MariaDB)."""
    foreign = {column.name for key in model.__table__.foreign_keys for column in [key.parent]}
    return [
        index
        for index in model.__table__.indexes
        if not {column.name for column in index.columns} & foreign
    ]


@contextmanager
def indexes_built_at_the_end(engine: sa.Engine) -> Iterator[None]:
    """Into empty tables, drop the secondary indexes and build them once the rows are in."""
    if not is_empty(engine):
        yield
        return
    indexes = [index for model in MODEL_FOR_TYPE.values() for index in droppable_indexes(model)]
    for index in indexes:
        index.drop(engine)
    with engine.begin() as connection:
        for drop in reversed(unmodelled_hooks("drop_unmodelled")):
            drop(connection)
    try:
        yield
    finally:
        for index in indexes:
            index.create(engine)
        with engine.begin() as connection:
            for create in unmodelled_hooks("create_unmodelled"):
                create(connection)


@contextmanager
def actor_tasks_made_after(engine: sa.Engine) -> Iterator[None]:
    """Events written in bulk: each actor's counts and rows (revision 0017) are dropped
    first and made again from the events at the end, one grouped pass per table, rather
    than by their triggers one event at a time."""
    revision = script_directory().get_revision(ACTOR_TASKS_REVISION).module
    with engine.begin() as connection:
        revision.drop_unmodelled(connection)
    yield
    with engine.begin() as connection:
        revision.create_unmodelled(connection)


def chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in lists of at most `size`."""
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def insert_rows(
    engine: sa.Engine, on_progress: Callable[[int], None]
) -> Callable[[TaskModel, Iterable[dict[str, Any]]], None]:
    """A loader that inserts many rows per statement, many statements per transaction."""

    def load(model: TaskModel, rows: Iterable[dict[str, Any]]) -> None:
        statement = sa.insert(model.__table__)
        for transaction in chunks(rows, TRANSACTION_ROWS):
            with engine.begin() as connection:
                for part in chunks(transaction, STATEMENT_ROWS):
                    connection.execute(statement, part)
                    on_progress(len(part))

    return load


def copy_rows(
    engine: sa.Engine, on_progress: Callable[[int], None]
) -> Callable[[TaskModel, Iterable[dict[str, Any]]], None]:
    """A loader that streams rows into PostgreSQL with COPY, one transaction per batch."""

    def load(model: TaskModel, rows: Iterable[dict[str, Any]]) -> None:
        columns = [c.name for c in model.__table__.columns if c.computed is None]
        json_columns = {c.name for c in model.__table__.columns if isinstance(c.type, sa.JSON)}
        copy = f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN"
        for transaction in chunks(rows, TRANSACTION_ROWS):
            raw = engine.raw_connection()
            try:
                with raw.cursor() as cursor, cursor.copy(copy) as stream:
                    for row in transaction:
                        stream.write_row(
                            [
                                json.dumps(value)
                                if name in json_columns and value is not None
                                else value
                                for name, value in ((name, row.get(name)) for name in columns)
                            ]
                        )
                raw.commit()
            finally:
                raw.close()
            on_progress(len(transaction))

    return load


def bulk_loader(engine: sa.Engine, on_progress: Callable[[int], None]) -> Loader:
    """The fastest loader for the engine."""
    if engine.dialect.name == "postgresql":
        return copy_rows(engine, on_progress)
    return insert_rows(engine, on_progress)
