"""The status beside the words in SQLite's search index, so that a search's counts by status
read the index alone.

A count of the tasks that match `q` and have a given status (each chip of the page, each
status of `/tasks/counts`) otherwise reads the row of every match to learn its status: a
third of a second for a common word at a million tasks. With the status in the index, FTS5
answers `llama AND status:failed` from its own doclists, in a millisecond or two per table
(app/query/search.py).

- SQLite: each FTS5 table `<table>_search` gets a last column, `status`. FTS5 cannot add a
  column, so the table is made anew (same name, same external content) and filled from the
  task table with 'rebuild'. Its update trigger fires on a change of status too, so a task
  that a module moves from running to failed in plain SQL is counted under its new status.
  Each status change then also replaces the task's entry in the index: about a tenth more
  to write (814 to 867 µs against 723 to 778 for one status update in a transaction of its
  own, at a million tasks).
  Words are matched in the other columns only, so a search for "failed" finds the word in a
  message, not every failed task.
- PostgreSQL and MariaDB: unchanged.

Downgrading makes the tables as revision 0005 made them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Each table's searchable columns: its summary's fields, then the error and the tag.
SEARCHED = {
    "upload_task": ("model_name", "source"),
    "upload_dataset_task": ("dataset_name", "source"),
    "training_task": ("base_model", "dataset_name", "method"),
    "evaluation_task": ("model_name", "benchmark"),
    "synthesis_task": ("output_dataset", "generator_model"),
}
SHARED = ("error_msg", "tag")
# The column that holds the task's status; never searched for words.
STATUS = "status"
TRIGGERS = ("insert", "delete", "update")


def indexed_columns(table: str) -> tuple[str, ...]:
    """The columns of a table's search index: the searchable ones, then the status."""
    return SEARCHED[table] + SHARED + (STATUS,)


def drop_search_index(connection: sa.Connection, table: str) -> None:
    """Remove a table's search index and the triggers that keep it."""
    for suffix in TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_search_{suffix}")
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}_search")


def search_index_statements(table: str) -> list[str]:
    """The FTS5 table with the status, its triggers, and the indexing of existing rows."""
    cols = indexed_columns(table)
    listed = ", ".join(cols)
    new = ", ".join(f"new.{column}" for column in cols)
    old = ", ".join(f"old.{column}" for column in cols)
    search = f"{table}_search"
    insert_new = f"INSERT INTO {search}(rowid, {listed}) VALUES (new.rowid, {new});"
    delete_old = (
        f"INSERT INTO {search}({search}, rowid, {listed}) VALUES ('delete', old.rowid, {old});"
    )
    return [
        f"CREATE VIRTUAL TABLE {search} USING fts5({listed}, content='{table}', "
        "content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
        f"CREATE TRIGGER {search}_insert AFTER INSERT ON {table} BEGIN {insert_new} END",
        f"CREATE TRIGGER {search}_delete AFTER DELETE ON {table} BEGIN {delete_old} END",
        f"CREATE TRIGGER {search}_update AFTER UPDATE OF {listed} ON {table} "
        f"BEGIN {delete_old} {insert_new} END",
        f"INSERT INTO {search}({search}) VALUES ('rebuild')",
    ]


def create_unmodelled(connection: sa.Connection) -> None:
    """Make each SQLite search index anew, with the status."""
    if connection.dialect.name != "sqlite":
        return
    for table in SEARCHED:
        drop_search_index(connection, table)
        for statement in search_index_statements(table):
            connection.exec_driver_sql(statement)


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the search indexes this revision made (revision 0005 drops its own the same way)."""
    if connection.dialect.name != "sqlite":
        return
    for table in SEARCHED:
        drop_search_index(connection, table)


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    connection = op.get_bind()
    drop_unmodelled(connection)
    if connection.dialect.name == "sqlite":
        from app.schema import script_directory

        script_directory().get_revision("0005").module.create_unmodelled(connection)
