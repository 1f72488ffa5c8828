"""The words tables of PostgreSQL and MariaDB hold each task's created_at in their key.

A chart of a search read every match of the window from the task tables: on PostgreSQL a
bitmap of the week's 66,876 tasks of a table ANDed with the trigram index's 33,138 matches
of `llama`, and each match's row then read and its text tested: 48 to 72 ms for the week's
chart at a million tasks. With created_at in the words tables' key, the chart is a range of
that key per status, read from the index alone (app/query/histogram.py).

- PostgreSQL and MariaDB: each `<table>_words` is made again as `(word, status, created_at,
  id)`, its primary key in that order, filled from the words there and their tasks'
  created_at. The triggers keep created_at too, and an update that changes a task's
  created_at replaces its words. One task's words are still one step into the key: the
  task's status, created_at and id are all known wherever a task is tested
  (app/query/search.py).
- SQLite: unchanged.

Downgrading makes the tables as revisions 0012 and 0013 left them.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)
MARIADB = ("mysql", "mariadb")
KEY = ("word", "status", "created_at", "id")
EARLIER_KEY = ("word", "status", "id")


def revision_module(name: str) -> ModuleType:
    """An earlier revision, whose way of splitting a task's text into terms is kept."""
    from app.schema import script_directory

    return script_directory().get_revision(name).module


def copied_terms(table: str, with_created: bool) -> str:
    """The SELECT of a words table's rows for the table made again: beside each term its
    task's created_at, read from the task table, or not."""
    words = f"{table}_words"
    if not with_created:
        return f"SELECT word, status, id FROM {words}"
    return (
        "SELECT words.word, words.status, tasks.created_at, words.id "
        f"FROM {words} AS words JOIN {table} AS tasks ON tasks.id = words.id"
    )


# -- PostgreSQL ------------------------------------------------------------------------------


def postgresql_keep_function(table: str, with_created: bool) -> str:
    """Revision 0013's trigger function, with created_at kept beside each term or not."""
    words = f"{table}_words"
    terms_of = revision_module("0013").TERMS_OF
    old_terms, new_terms = (terms_of.format(text=f"{row}.search_text") for row in ("OLD", "NEW"))
    old_created = "created_at = OLD.created_at AND " if with_created else ""
    columns = ", ".join(KEY if with_created else EARLIER_KEY)
    values = "NEW.status, NEW.created_at, NEW.id" if with_created else "NEW.status, NEW.id"
    return f"""
CREATE OR REPLACE FUNCTION {words}_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM {words}
        WHERE status = OLD.status AND {old_created}id = OLD.id AND word IN ({old_terms});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO {words} ({columns})
        SELECT found.term, {values} FROM ({new_terms}) AS found
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$"""


def postgresql_statements(table: str, with_created: bool) -> list[str]:
    """A PostgreSQL words table made again with (or without) created_at in its key."""
    words, rebuilt = f"{table}_words", f"{table}_words_rebuilt"
    key = KEY if with_created else EARLIER_KEY
    created_column = "created_at TIMESTAMPTZ NOT NULL, " if with_created else ""
    changed = "OLD.status IS DISTINCT FROM NEW.status OR OLD.search_text <> NEW.search_text"
    changed += " OR OLD.id <> NEW.id"
    if with_created:
        changed += " OR OLD.created_at <> NEW.created_at"
    return [
        # Writes to the task table wait until the upgrade commits, so that none is left out.
        f"LOCK TABLE {table} IN SHARE MODE",
        f"CREATE TABLE {rebuilt} (word TEXT NOT NULL, status VARCHAR(16) NOT NULL, "
        f"{created_column}id UUID NOT NULL)",
        f"INSERT INTO {rebuilt} ({', '.join(key)}) {copied_terms(table, with_created)}",
        f"DROP TABLE {words}",
        f"ALTER TABLE {rebuilt} RENAME TO {words}",
        f"ALTER TABLE {words} ADD CONSTRAINT pk_{words} PRIMARY KEY ({', '.join(key)})",
        postgresql_keep_function(table, with_created),
        f"DROP TRIGGER {words}_update ON {table}",
        f"CREATE TRIGGER {words}_update AFTER UPDATE ON {table} "
        f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {words}_keep()",
        f"ANALYZE {words}",
    ]


# -- MariaDB ---------------------------------------------------------------------------------


def mariadb_triggers(table: str, with_created: bool) -> list[str]:
    """Revision 0012's triggers, with created_at kept beside each term or not."""
    words = f"{table}_words"
    terms_of = revision_module("0012").terms_of
    columns = ", ".join(KEY if with_created else EARLIER_KEY)
    values = "NEW.status, NEW.created_at, NEW.id" if with_created else "NEW.status, NEW.id"
    add = (
        f"INSERT INTO {words} ({columns}) "
        f"SELECT found.term, {values} FROM {terms_of('NEW.search_text')} AS found "
        "ON DUPLICATE KEY UPDATE word = VALUES(word)"
    )
    old_created = " AND kept.created_at = OLD.created_at" if with_created else ""
    remove = (
        f"DELETE kept FROM {words} AS kept JOIN {terms_of('OLD.search_text')} AS found "
        f"ON kept.word = found.term WHERE kept.status = OLD.status{old_created} "
        "AND kept.id = OLD.id"
    )
    unchanged = (
        "OLD.status <=> NEW.status AND OLD.search_text <=> NEW.search_text AND OLD.id <=> NEW.id"
    )
    if with_created:
        unchanged += " AND OLD.created_at <=> NEW.created_at"
    return [
        f"CREATE TRIGGER {words}_insert AFTER INSERT ON {table} FOR EACH ROW {add}",
        f"CREATE TRIGGER {words}_delete AFTER DELETE ON {table} FOR EACH ROW {remove}",
        f"CREATE TRIGGER {words}_update AFTER UPDATE ON {table} FOR EACH ROW "
        f"IF NOT ({unchanged}) THEN {remove}; {add}; END IF",
    ]


def mariadb_statements(table: str, with_created: bool) -> list[str]:
    """A MariaDB words table made again with (or without) created_at in its key, filled in
    key order, which fills a table many times faster than in the order rows come.

    MariaDB commits each statement that changes a table's definition, so the new table is
    swapped in by one RENAME, and a run cut short can be run again: the words table is
    there at every step. Tasks written while it runs are not all seen: stop the writers.
    """
    words, rebuilt, old = f"{table}_words", f"{table}_words_rebuilt", f"{table}_words_old"
    key = KEY if with_created else EARLIER_KEY
    created_column = "created_at DATETIME(6) NOT NULL, " if with_created else ""
    order = ", ".join(str(position + 1) for position in range(len(key)))
    return [
        f"DROP TABLE IF EXISTS {rebuilt}, {old}",
        f"CREATE TABLE {rebuilt} ("
        "word VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
        f"status VARCHAR(16) NOT NULL, {created_column}id CHAR(32) NOT NULL, "
        f"PRIMARY KEY ({', '.join(key)}))",
        f"INSERT INTO {rebuilt} ({', '.join(key)}) {copied_terms(table, with_created)} "
        f"ORDER BY {order}",
        *(f"DROP TRIGGER IF EXISTS {words}_{suffix}" for suffix in ("insert", "delete", "update")),
        f"RENAME TABLE {words} TO {old}, {rebuilt} TO {words}",
        f"DROP TABLE {old}",
        *mariadb_triggers(table, with_created),
        f"ANALYZE TABLE {words}",
    ]


# -- both ------------------------------------------------------------------------------------


def remake_words_tables(connection: sa.Connection, with_created: bool) -> None:
    """Make every words table again, without the statement limit the app's connections
    carry (filling takes longer), restored afterwards on MariaDB."""
    name = connection.dialect.name
    if name == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        statements = postgresql_statements
    elif name in MARIADB:
        connection.exec_driver_sql("SET @words_limit = @@SESSION.max_statement_time")
        connection.exec_driver_sql("SET SESSION max_statement_time = 0")
        statements = mariadb_statements
    else:
        return
    present = set(sa.inspect(connection).get_table_names())
    try:
        for table in TABLES:
            if f"{table}_words" in present:
                for statement in statements(table, with_created):
                    connection.exec_driver_sql(statement)
    finally:
        if name in MARIADB:
            connection.exec_driver_sql("SET SESSION max_statement_time = @words_limit")


def create_unmodelled(connection: sa.Connection) -> None:
    """Give the words tables created_at (they are made by revisions 0011 to 0013)."""
    remake_words_tables(connection, with_created=True)


def upgrade() -> None:
    remake_words_tables(op.get_bind(), with_created=True)


def downgrade() -> None:
    remake_words_tables(op.get_bind(), with_created=False)
