"""Tasks counted per type, status and hour of creation, kept by the database: what the chart
reads (app/query/rollup.py) instead of every task of its window.

`task_hourly_count` holds one row per (task_type, status, hour), `hour` being the whole hours
from 1970-01-01 UTC to the hour of `created_at`, and `tasks` how many tasks of that type and
status were created in it. Triggers on the five task tables keep it: an insert adds one to
its task's row, a delete takes one away, and an update that changes `status` or
`created_at` moves one from the old row to the new. Tasks a module writes in plain SQL are
counted like the recorder's.

Each change is one upsert of a difference (+1 or -1): PostgreSQL's `INSERT … ON CONFLICT DO
UPDATE`, MariaDB's `ON DUPLICATE KEY UPDATE`, SQLite's `ON CONFLICT`. Two transactions
counting into the same row wait for each other on that row and lose nothing. A row that
falls to zero stays (readers add up, and a zero adds nothing): deleting it would race with
the next task of the same hour.

The models do not declare the table: nothing but these triggers writes it, and a bulk load
into empty tables drops it with the triggers and makes both again, counting the loaded rows
with one `INSERT … SELECT … GROUP BY` per table (`create_unmodelled`, see app/bulk.py). The
revision counts the existing tasks the same way. On PostgreSQL the triggers and the count are
one transaction that holds off writers; MariaDB commits each trigger as it is made, so a
task written during the upgrade may be counted twice: upgrade with the writers stopped.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SUMMARY = "task_hourly_count"
TASK_TYPES = {
    "upload_task": "model_upload",
    "upload_dataset_task": "dataset_upload",
    "training_task": "training",
    "evaluation_task": "evaluation",
    "synthesis_task": "synthesis",
}
MARIADB = ("mysql", "mariadb")
POSTGRESQL_FUNCTION = "task_hourly_count_change"


def summary_table() -> sa.Table:
    """The summary as this revision makes it."""
    return sa.Table(
        SUMMARY,
        sa.MetaData(),
        sa.Column("task_type", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tasks", sa.BigInteger, nullable=False),
    )


def hour_of(moment: str, dialect: str) -> str:
    """Whole hours from 1970-01-01 UTC to a created_at (stored in UTC on every engine)."""
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch FROM {moment}) / 3600) AS INTEGER)"
    if dialect in MARIADB:
        return f"TIMESTAMPDIFF(HOUR, '1970-01-01 00:00:00', {moment})"
    return f"(CAST(strftime('%s', {moment}) AS INTEGER) / 3600)"


def count_into(task_type: str, row: str, difference: int, dialect: str) -> str:
    """Add `difference` to the summary row of a task (`row`: NEW or OLD), making it if new."""
    values = (
        f"INSERT INTO {SUMMARY} (task_type, status, hour, tasks) VALUES "
        f"({task_type}, {row}.status, {hour_of(f'{row}.created_at', dialect)}, {difference})"
    )
    if dialect in MARIADB:
        return f"{values} ON DUPLICATE KEY UPDATE tasks = tasks + VALUES(tasks)"
    return (
        f"{values} ON CONFLICT (task_type, status, hour) "
        f"DO UPDATE SET tasks = {SUMMARY}.tasks + excluded.tasks"
    )


# Whether an update changed what the summary counts a task by (both columns are NOT NULL).
MOVED = "OLD.status <> NEW.status OR OLD.created_at <> NEW.created_at"


def sqlite_triggers(table: str) -> list[str]:
    """An insert, a delete and an update trigger, each one or two upserts."""
    task_type = f"'{TASK_TYPES[table]}'"
    plus, minus = (count_into(task_type, row, n, "sqlite") for row, n in (("new", 1), ("old", -1)))
    return [
        f"CREATE TRIGGER {table}_hourly_insert AFTER INSERT ON {table} BEGIN {plus}; END",
        f"CREATE TRIGGER {table}_hourly_delete AFTER DELETE ON {table} BEGIN {minus}; END",
        f"CREATE TRIGGER {table}_hourly_update AFTER UPDATE OF status, created_at ON {table} "
        f"WHEN {MOVED} BEGIN {minus}; {plus}; END",
    ]


def mariadb_triggers(table: str) -> list[str]:
    """The same on MariaDB, whose update trigger cannot name columns and tests in its body."""
    task_type = f"'{TASK_TYPES[table]}'"
    plus, minus = (count_into(task_type, row, n, "mariadb") for row, n in (("NEW", 1), ("OLD", -1)))
    each_row = f"ON {table} FOR EACH ROW"
    return [
        f"CREATE TRIGGER {table}_hourly_insert AFTER INSERT {each_row} {plus}",
        f"CREATE TRIGGER {table}_hourly_delete AFTER DELETE {each_row} {minus}",
        f"CREATE TRIGGER {table}_hourly_update AFTER UPDATE {each_row} "
        f"BEGIN IF {MOVED} THEN {minus}; {plus}; END IF; END",
    ]


def postgresql_function() -> str:
    """One trigger function for the five tables: the task type is the trigger's argument."""
    task_type = "TG_ARGV[0]"
    plus, minus = (
        count_into(task_type, row, n, "postgresql") for row, n in (("NEW", 1), ("OLD", -1))
    )
    return (
        f"CREATE FUNCTION {POSTGRESQL_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN IF TG_OP <> 'INSERT' THEN {minus}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {plus}; END IF; RETURN NULL; END $$"
    )


def postgresql_triggers(table: str) -> list[str]:
    """An insert-or-delete trigger, and one for updates that move a task."""
    call = f"FOR EACH ROW EXECUTE FUNCTION {POSTGRESQL_FUNCTION}('{TASK_TYPES[table]}')"
    return [
        f"CREATE TRIGGER {table}_hourly AFTER INSERT OR DELETE ON {table} {call}",
        f"CREATE TRIGGER {table}_hourly_update AFTER UPDATE OF status, created_at ON {table} "
        f"FOR EACH ROW WHEN ({MOVED}) EXECUTE FUNCTION "
        f"{POSTGRESQL_FUNCTION}('{TASK_TYPES[table]}')",
    ]


def count_existing(table: str, dialect: str) -> str:
    """The summary rows of one table's tasks as they stand, in one grouped pass."""
    return (
        f"INSERT INTO {SUMMARY} (task_type, status, hour, tasks) "
        f"SELECT '{TASK_TYPES[table]}', status, {hour_of('created_at', dialect)}, COUNT(*) "
        f"FROM {table} GROUP BY status, {hour_of('created_at', dialect)}"
    )


def create_unmodelled(connection: sa.Connection) -> None:
    """Make the summary, its triggers, and count the tasks already there.

    The count reads every task once: no statement limit applies meanwhile (for this
    transaction on PostgreSQL; restored afterwards on MariaDB).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    if dialect in MARIADB:
        connection.exec_driver_sql("SET @hourly_limit = @@SESSION.max_statement_time")
        connection.exec_driver_sql("SET SESSION max_statement_time = 0")
    summary_table().create(connection)
    if dialect == "postgresql":
        connection.exec_driver_sql(postgresql_function())
    for table in TASK_TYPES:
        if dialect == "postgresql":
            triggers = postgresql_triggers(table)
        elif dialect in MARIADB:
            triggers = mariadb_triggers(table)
        else:
            triggers = sqlite_triggers(table)
        for statement in triggers:
            connection.exec_driver_sql(statement)
    for table in TASK_TYPES:
        connection.exec_driver_sql(count_existing(table, dialect))
    if dialect in MARIADB:
        connection.exec_driver_sql("SET SESSION max_statement_time = @hourly_limit")


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the triggers and the summary wherever they are (a table may be gone already)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # The triggers depend on the function and go with it.
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {POSTGRESQL_FUNCTION}() CASCADE")
    else:
        for table in TASK_TYPES:
            for event in ("insert", "delete", "update"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_hourly_{event}")
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {SUMMARY}")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
