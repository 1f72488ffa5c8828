"""On SQLite, the tasks whose rowids do not follow their created_at order, kept apart.

A chart of a search over a week read every task of the week and tested each against FTS5's
list of the search's matches: 66,000 tasks a table at a million for `llama`, 90 ms for the
chart. FTS5 reads its lists from one rowid to another in a fraction of that, and tasks are
written in the order they are created, so their rowids nearly always follow created_at.
Nearly is not enough to count by, so the exceptions are kept: with them apart, every other
task of a bar lies between the rowids of the bar's first task and the next bar's
(app/query/created_order.py), and the exceptions are counted one by one.

- SQLite: a table `<table>_out_of_order (task_rowid, created_at)` per task table, with an
  index on created_at, kept by triggers on the task table. A task is out of order when,
  as it is written, a task with a later rowid exists, or one created later than it does; so
  the others' created_at never decreases as their rowids grow. A task whose created_at
  changes is out of order from then on, and a deleted task leaves the table. The tasks
  already there are sorted in one pass: a task created before any task of a lower rowid
  is out of order. Every write of a task then takes two steps into indexes more (the
  highest rowid, the latest created_at), and one more write for an exception.
- PostgreSQL and MariaDB: unchanged.

Downgrading removes the tables and their triggers.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)
TRIGGERS = ("insert", "update", "delete")


def order_statements(table: str) -> list[str]:
    """The table of a task table's exceptions, its triggers, and the tasks already there."""
    kept = f"{table}_out_of_order"
    keep_new = (
        f"INSERT OR REPLACE INTO {kept} (task_rowid, created_at) "
        "VALUES (new.rowid, new.created_at);"
    )
    out_of_order = (
        f"EXISTS (SELECT 1 FROM {table} WHERE rowid > new.rowid) "
        f"OR new.created_at < (SELECT max(created_at) FROM {table})"
    )
    earlier = "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
    return [
        f"CREATE TABLE {kept} (task_rowid INTEGER PRIMARY KEY, created_at DATETIME NOT NULL)",
        f"CREATE INDEX ix_{kept}_created ON {kept} (created_at)",
        f"CREATE TRIGGER {kept}_insert AFTER INSERT ON {table} WHEN {out_of_order} "
        f"BEGIN {keep_new} END",
        f"CREATE TRIGGER {kept}_update AFTER UPDATE OF created_at ON {table} "
        f"WHEN old.created_at IS NOT new.created_at BEGIN {keep_new} END",
        f"CREATE TRIGGER {kept}_delete AFTER DELETE ON {table} "
        f"BEGIN DELETE FROM {kept} WHERE task_rowid = old.rowid; END",
        f"INSERT INTO {kept} (task_rowid, created_at) SELECT rowid, created_at FROM ("
        f"SELECT rowid, created_at, max(created_at) OVER (ORDER BY rowid {earlier}) AS before "
        f"FROM {table}) WHERE created_at < before",
    ]


def create_unmodelled(connection: sa.Connection) -> None:
    """Make each SQLite task table's table of exceptions, filled from its tasks."""
    if connection.dialect.name != "sqlite":
        return
    for table in TABLES:
        for statement in order_statements(table):
            connection.exec_driver_sql(statement)


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the tables of exceptions and their triggers."""
    if connection.dialect.name != "sqlite":
        return
    for table in TABLES:
        kept = f"{table}_out_of_order"
        for suffix in TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {kept}_{suffix}")
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {kept}")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
