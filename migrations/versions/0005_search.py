"""Search indexes that the database keeps: what `q` reads (app/query/search.py).

Each task table's searchable words are those of its summary's fields, its error message
and its tag. Each engine keeps them in the index it is good at, updated by the database
itself, so tasks a module writes in plain SQL are found like the recorder's:

- SQLite: an FTS5 table `<table>_search` over those columns (external content: the words
  are indexed, the text stays in the task table), kept by triggers on insert, delete and
  an update of those columns. The index refers to a task by its rowid; a `VACUUM` (which
  may renumber rowids) or a later revision that copies the table (Alembic's batch mode)
  must end with `INSERT INTO <table>_search(<table>_search) VALUES ('rebuild')`.
- PostgreSQL: a generated column `search_text` holding the words in lower case (ICU's
  idea of letters and digits), each field between spaces and the fields apart (` , `), and
  a trigram GIN index on it (pg_trgm), which serves `LIKE '% word %'`.
- MariaDB: the same generated column (PCRE's \\p{L}\\p{N}) with a FULLTEXT index, built
  without stopwords; words shorter than the server's `innodb_ft_min_token_size` are
  checked by `LIKE` alone.

The models do not declare these objects (SQLAlchemy's models cannot say "an FTS5 table on
SQLite, a column elsewhere"); `create_unmodelled` makes them beside the models' tables for
`app.schema.create_at_head`, and app.schema leaves them out of the drift comparison.
The definitions are written out here so that this revision stays what it is.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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
MARIADB = ("mysql", "mariadb")


def columns(table: str) -> tuple[str, ...]:
    """The searchable columns of a table."""
    return SEARCHED[table] + SHARED


def words_expression(table: str, dialect: str) -> str:
    """The generated column's expression: ` w1 w2 , w3 , … ` in lower case."""
    if dialect == "postgresql":
        fields = [
            f"lower(regexp_replace(coalesce({column}, '') COLLATE \"und-x-icu\", "
            "'[^[:alnum:]]+', ' ', 'g'))"
            for column in columns(table)
        ]
        return "' ' || " + " || ' , ' || ".join(fields) + " || ' '"
    fields = [
        f"REGEXP_REPLACE(LOWER(COALESCE({column}, '') COLLATE utf8mb4_bin), "
        "'[^\\\\p{L}\\\\p{N}]+', ' ')"
        for column in columns(table)
    ]
    return "CONCAT(' ', " + ", ' , ', ".join(fields) + ", ' ')"


def sqlite_statements(table: str) -> list[str]:
    """The FTS5 table over a task table, its triggers, and the indexing of existing rows."""
    cols = columns(table)
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


def server_statements(table: str, dialect: str) -> list[str]:
    """The generated column and its index on PostgreSQL or MariaDB."""
    expression = words_expression(table, dialect)
    if dialect == "postgresql":
        return [
            f"ALTER TABLE {table} ADD COLUMN search_text TEXT "
            f"GENERATED ALWAYS AS ({expression}) STORED",
            f"CREATE INDEX ix_{table}_search ON {table} USING gin (search_text gin_trgm_ops)",
        ]
    return [
        f"ALTER TABLE {table} ADD COLUMN search_text MEDIUMTEXT COLLATE utf8mb4_bin "
        f"GENERATED ALWAYS AS ({expression}) STORED",
        f"CREATE FULLTEXT INDEX ix_{table}_search ON {table} (search_text)",
    ]


def create_unmodelled(connection: sa.Connection) -> None:
    """Make the search objects on tables that have none yet.

    Filling a column or an index for every existing task takes longer than a request's
    statement limit, which the app's connections carry: it is lifted meanwhile (for this
    transaction on PostgreSQL; restored afterwards on MariaDB).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    if dialect in MARIADB:
        connection.exec_driver_sql("SET @search_limit = @@SESSION.max_statement_time")
        connection.exec_driver_sql("SET SESSION max_statement_time = 0")
        # Every word is indexed: the default stopwords hold "on", "from", "the", "with"…
        connection.exec_driver_sql("SET SESSION innodb_ft_enable_stopword = OFF")
    for table in SEARCHED:
        statements = (
            sqlite_statements(table) if dialect == "sqlite" else server_statements(table, dialect)
        )
        for statement in statements:
            connection.exec_driver_sql(statement)
    if dialect in MARIADB:
        connection.exec_driver_sql("SET SESSION max_statement_time = @search_limit")


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the search objects wherever they are (a table may be gone already)."""
    dialect = connection.dialect.name
    present = set(sa.inspect(connection).get_table_names())
    for table in SEARCHED:
        if dialect == "sqlite":
            for suffix in ("insert", "delete", "update"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_search_{suffix}")
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}_search")
        elif table in present:
            index = f"DROP INDEX IF EXISTS ix_{table}_search"
            if dialect in MARIADB:
                index += f" ON {table}"
            connection.exec_driver_sql(index)
            connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_text")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
