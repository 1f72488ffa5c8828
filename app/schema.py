"""The database schema's revisions: bring a database to the newest one, or say why not.

Every schema change is an Alembic revision in `migrations/` (`flask --app wsgi db …` through
Flask-Migrate). `init-db` is the one command a newcomer runs: it creates a new database at
the newest revision, upgrades one that has revisions, and adopts one made before revisions
existed (the five tables, no version): it compares that schema with the first revision's and
stamps it only when they match, so nothing is ever dropped or guessed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from app.timeouts import without_statement_limit

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
FIRST_REVISION = "0001"


class SchemaMismatch(RuntimeError):
    """A database whose tables match no known revision; it is left as it is."""

    def __init__(self, differences: list[str]):
        self.differences = differences
        listed = "\n".join(f"  - {difference}" for difference in differences)
        super().__init__(
            "The task tables match no known revision of the schema, so they were left as they "
            f"are. What differs from revision {FIRST_REVISION}:\n{listed}"
        )


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revision (None before revisions) and the newest one."""

    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def init_app(app: Flask) -> None:
    """Register Flask-Migrate, so that `flask --app wsgi db …` runs the revisions."""
    from app.models import db

    flask_migrate.Migrate(app, db, directory=str(MIGRATIONS))


def alembic_options(dialect: sa.Dialect) -> dict[str, Any]:
    """How revisions and comparisons run on this engine."""
    return {
        # SQLite alters a table by copying it; Alembic's batch mode does that for revisions.
        "render_as_batch": dialect.name == "sqlite",
        "include_object": is_ours,
        "compare_type": True,
    }


# Kept by a revision beside the models, which cannot declare them (see migrations/versions/
# 0005_search.py): the search column and its index are no drift. SQLite's FTS5 tables and
# the hourly counts (0009_hourly_counts.py) are tables the models do not declare, which the
# comparison leaves alone in any case.
UNMODELLED_COLUMNS = frozenset({"search_text"})
UNMODELLED_INDEX_SUFFIX = "_search"


def is_ours(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """Compare only what the models declare: a shared database may hold other tables, and
    the search objects are made by their revision (`unmodelled_hooks`)."""
    if kind == "table" and reflected and compare_to is None:
        return False
    if kind == "column" and name in UNMODELLED_COLUMNS:
        return False
    return not (kind == "index" and name and name.endswith(UNMODELLED_INDEX_SUFFIX))


@functools.cache
def script_directory() -> ScriptDirectory:
    """The project's revisions, read once: they do not change while the app runs, and
    /readyz asks for the newest on every probe."""
    return ScriptDirectory(str(MIGRATIONS))


def schema_state(connection: sa.Connection) -> SchemaState:
    """The database's revision beside the newest one."""
    current = MigrationContext.configure(connection).get_current_revision()
    head = script_directory().get_current_head()
    assert head is not None, f"no revisions in {MIGRATIONS}"
    return SchemaState(current=current, head=head)


def unmodelled_hooks(name: str) -> list[Callable[[sa.Connection], None]]:
    """Each revision's `name` function (create_unmodelled, drop_unmodelled), oldest first.

    A revision that makes objects the models cannot declare defines them, so that a
    database made from the models at once gets them too.
    """
    revisions = reversed(list(script_directory().walk_revisions()))
    return [hook for rev in revisions if (hook := getattr(rev.module, name, None)) is not None]


def revision_metadata(revision: str, dialect: sa.Dialect) -> sa.MetaData:
    """The tables as a revision that describes them in full (`task_metadata`) makes them."""
    module = script_directory().get_revision(revision).module
    return module.task_metadata(dialect.name)


def compare_with(connection: sa.Connection, metadata: sa.MetaData) -> list[tuple[Any, ...]]:
    """Alembic's autogenerate comparison of the database's tables with `metadata`."""
    context = MigrationContext.configure(connection, opts=alembic_options(connection.dialect))
    return list(flatten(compare_metadata(context, metadata)))


def schema_differences(connection: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """What the database's tables have that `metadata` lacks, and the reverse, in words.

    An index the database has and `metadata` does not declare is not a difference: an
    operator may have added one for a query of their own, and it harms nothing.
    """
    return [
        describe(difference)
        for difference in compare_with(connection, metadata)
        if difference[0] != "remove_index"
    ]


def flatten(differences: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Alembic groups a column's changes in a list; yield them one by one."""
    for difference in differences:
        if isinstance(difference, list):
            yield from difference
        else:
            yield difference


def describe(difference: tuple[Any, ...]) -> str:
    """One difference in words, from the database's side."""
    kind = difference[0]
    if kind == "add_table":
        return f"table {difference[1].name} is missing"
    if kind == "remove_table":
        return f"table {difference[1].name} is not part of the schema"
    if kind == "add_column":
        return f"column {difference[2]}.{difference[3].name} is missing"
    if kind == "remove_column":
        return f"column {difference[2]}.{difference[3].name} is not part of the schema"
    if kind == "add_index":
        index = difference[1]
        columns = ", ".join(column.name for column in index.columns)
        return f"index {index.name} on {index.table.name} ({columns}) is missing"
    if kind == "modify_type":
        _, _, table, column, _, found, wanted = difference
        return f"column {table}.{column} is {found}, not {wanted}"
    if kind == "modify_nullable":
        _, _, table, column, _, found, wanted = difference
        return f"column {table}.{column} is {'' if found else 'NOT '}NULL, not as declared"
    return " ".join(str(part) for part in difference)


def has_task_tables(connection: sa.Connection, metadata: sa.MetaData) -> bool:
    """Whether any of the declared tables already exists."""
    present = set(sa.inspect(connection).get_table_names())
    return bool(present & set(metadata.tables))


def adopt_unversioned(engine: sa.Engine) -> bool:
    """Stamp the first revision on tables made before revisions; False when there are none.

    Raises SchemaMismatch, changing nothing, when the tables are not the first revision's.
    """
    with engine.connect() as connection:
        if schema_state(connection).current is not None:
            return False
        metadata = revision_metadata(FIRST_REVISION, connection.dialect)
        if not has_task_tables(connection, metadata):
            return False
        if differences := schema_differences(connection, metadata):
            raise SchemaMismatch(differences)
    flask_migrate.stamp(directory=str(MIGRATIONS), revision=FIRST_REVISION)
    return True


def drop_schema(engine: sa.Engine) -> None:
    """Drop the task tables and the revision: a scratch database (tests, the bench) anew."""
    from app.models import Base

    with engine.begin() as connection:
        for drop in reversed(unmodelled_hooks("drop_unmodelled")):
            drop(connection)
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


def create_at_head(engine: sa.Engine) -> None:
    """Create the tables from the models and stamp the newest revision, in one step.

    What an upgrade from empty makes (tests/test_schema.py holds the two equal), for
    scratch databases that are made many times over (tests, screenshots).
    """
    from app.models import Base

    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        for create in unmodelled_hooks("create_unmodelled"):
            create(connection)
        MigrationContext.configure(connection).stamp(script_directory(), "heads")


def group_new_errors(engine: sa.Engine) -> int:
    """Key the errors of failed tasks that have none: tasks a module failed in plain SQL.

    The recorder keys every task it fails; a module that writes the tables directly leaves
    `error_group` empty, and its tasks join the errors panel at the next `init-db`.
    """
    from app.error_groups import backfill_error_groups
    from app.models import MODEL_FOR_TYPE

    tables = [model.__table__ for model in MODEL_FOR_TYPE.values()]
    with engine.begin() as connection:
        return backfill_error_groups(connection, tables)


def upgrade_database() -> list[str]:
    """Bring the app's database to the newest revision; say what was done.

    Runs in an app context, on the primary database. A revision may build an index over
    millions of rows: no statement limit applies while it runs.
    """
    from app.models import db

    done = []
    if adopt_unversioned(db.engine):
        done.append(f"Adopted the existing task tables as revision {FIRST_REVISION}")
    with db.engine.connect() as connection:
        before = schema_state(connection)
    if not before.at_head:
        with without_statement_limit(db.engine):
            flask_migrate.upgrade(directory=str(MIGRATIONS))
            refresh_statistics(db.engine)
        done.append(f"Upgraded from {before.current or 'an empty database'} to {before.head}")
    if grouped := group_new_errors(db.engine):
        done.append(f"Grouped the errors of {grouped} tasks failed outside the recorder")
    url = db.engine.url.render_as_string(hide_password=True)
    done.append(f"Tables ready at revision {before.head} in {url}")
    return done


def refresh_statistics(engine: sa.Engine) -> None:
    """Let the planner see the tables as they are now, so it picks the indexes at once.

    After a load, and after a revision: SQLite has no statistics for a new index until
    ANALYZE, and may then prefer an older one; on PostgreSQL, VACUUM also marks the pages
    a revision rewrote as all-visible, which index-only scans rely on (the words tables of
    revision 0011 too). The events are read too: `actor=` looks up an actor's tasks, and
    tests per row, on task_event's index.
    """
    from app.models import MODEL_FOR_TYPE, TaskEvent

    tables = [model.__tablename__ for model in MODEL_FOR_TYPE.values()]
    tables.append(TaskEvent.__tablename__)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if engine.dialect.name == "postgresql":
            present = set(sa.inspect(connection).get_table_names())
            words = [f"{model.__tablename__}_words" for model in MODEL_FOR_TYPE.values()]
            tables += [table for table in words if table in present]
            connection.exec_driver_sql(f"VACUUM ANALYZE {', '.join(tables)}")
        elif engine.dialect.name in {"mysql", "mariadb"}:
            connection.exec_driver_sql(f"ANALYZE TABLE {', '.join(tables)}")
        else:
            connection.exec_driver_sql("ANALYZE")
