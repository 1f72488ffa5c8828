"""A table of words per task table on PostgreSQL, so that a search is counted without the
task tables.

The trigram index of revision 0005 finds candidates for `LIKE '% word %'`, but every count
then reads each candidate's row to test it and learn its status: 80 ms for the 33,138
training tasks with `llama` at a million tasks, and a search's chips are ten such counts.
FTS5 on SQLite answers them from its own doclists (revision 0010); this revision gives
PostgreSQL the same: each task's distinct words beside its status, in a B-tree that a count
reads alone (an index-only scan).

- PostgreSQL: `<table>_words (word, status, id)`, its primary key in that order, kept by
  triggers on the task table: an insert adds the task's words, a delete removes them, an
  update that changes the words, the status or the id replaces them, and a TRUNCATE empties
  the words table too. Tasks written by any module in
  plain SQL are therefore counted, under their status of the moment. The words are those of
  the generated column `search_text`, split where it puts spaces and commas.
- SQLite and MariaDB: unchanged.

Downgrading removes the tables, their triggers and their functions.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)
# search_text is ` w1 w2 , w3 , … `: words between spaces, fields between commas. A B-tree
# key of more than about 2,700 bytes would refuse the task's row, so words over 200
# characters are left out; a search with such a word is counted from the task tables
# (WORDS_TABLE_LENGTHS in app/query/search.py).
SPLIT = "regexp_split_to_table({text}, '[ ,]+') AS word"
KEPT = "word <> '' AND length(word) <= 200"
WORDS_OF = f"SELECT DISTINCT word FROM {SPLIT} WHERE {KEPT}"


def keep_words_function(table: str) -> str:
    """The trigger function that keeps a table's words in step with its rows."""
    words = f"{table}_words"
    old_words = WORDS_OF.format(text="OLD.search_text")
    new_words = WORDS_OF.format(text="NEW.search_text")
    return f"""
CREATE FUNCTION {words}_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM {words}
        WHERE status = OLD.status AND id = OLD.id AND word IN ({old_words});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO {words} (word, status, id)
        SELECT word, NEW.status, NEW.id FROM ({new_words}) AS words
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$"""


def words_statements(table: str) -> list[str]:
    """The words table, its triggers, and the words of the tasks already there."""
    words = f"{table}_words"
    changed = (
        "OLD.status IS DISTINCT FROM NEW.status OR OLD.search_text <> NEW.search_text "
        "OR OLD.id <> NEW.id"
    )
    return [
        f"CREATE TABLE {words} (word TEXT NOT NULL, status VARCHAR(16) NOT NULL, "
        f"id UUID NOT NULL, CONSTRAINT pk_{words} PRIMARY KEY (word, status, id))",
        keep_words_function(table),
        f"CREATE TRIGGER {words}_insert AFTER INSERT ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {words}_keep()",
        f"CREATE TRIGGER {words}_delete AFTER DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {words}_keep()",
        f"CREATE TRIGGER {words}_update AFTER UPDATE ON {table} "
        f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {words}_keep()",
        f"CREATE FUNCTION {words}_clear() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN TRUNCATE {words}; RETURN NULL; END $$",
        f"CREATE TRIGGER {words}_truncate AFTER TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {words}_clear()",
        f"INSERT INTO {words} (word, status, id) SELECT DISTINCT word, status, id "
        f"FROM {table}, {SPLIT.format(text='search_text')} WHERE {KEPT}",
        f"ANALYZE {words}",
    ]


def create_unmodelled(connection: sa.Connection) -> None:
    """Make each PostgreSQL task table's words table, filled from its tasks.

    Filling takes longer than a request's statement limit, which the app's connections
    carry: it is lifted for this transaction.
    """
    if connection.dialect.name != "postgresql":
        return
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    for table in TABLES:
        for statement in words_statements(table):
            connection.exec_driver_sql(statement)


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the words tables, their triggers and functions (a task table may be gone)."""
    if connection.dialect.name != "postgresql":
        return
    present = set(sa.inspect(connection).get_table_names())
    for table in TABLES:
        words = f"{table}_words"
        if table in present:
            for suffix in ("insert", "delete", "update", "truncate"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {words}_{suffix} ON {table}")
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {words}_keep()")
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {words}_clear()")
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {words}")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
