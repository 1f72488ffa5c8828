"""A table of words per task table on MariaDB, as PostgreSQL has since revision 0011.

MariaDB's FULLTEXT index hands over every match of a word before a row is read, and each
match's row is then read for its status and created_at: at a million tasks a search's chips
took two to three seconds for a common word, and its first page about two. A B-tree of each
task's words beside its status answers a count of single words from a range of its key,
and tells of any one task whether it holds a word in one step into that key.

- MariaDB: `<table>_words (word, status, id)`, its primary key in that order, the words in
  a binary collation (as `search_text` holds them), kept by triggers on the task table: an
  insert adds the task's words, a delete removes them, an update that changes the words,
  the status or the id replaces them. The words are those of the generated column
  `search_text` (revision 0005), split at its spaces with `JSON_TABLE`: they are letters
  and digits only, so each is a JSON string as it stands. Beside each word the table holds
  each pair of neighbouring words of a field, `w1 w2` (a space no word holds): a phrase of
  two words is one such entry, and one of more words a task can hold only if it holds each
  of its pairs. Terms over 200 characters, longer than any of `q`, are left out (as words
  are on PostgreSQL).
  MariaDB fires no trigger on `TRUNCATE`: a module that empties a task table with it must
  empty its words table too (README, "Search").
  The words tables replace the FULLTEXT index of revision 0005, which is dropped: its
  updates cost every write, and no statement reads it any more.
- SQLite and PostgreSQL: unchanged.

Downgrading removes the tables and their triggers, and builds the FULLTEXT index again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
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
# search_text is ` w1 w2 , w3 , … `: split at each space (as a JSON array: the words are
# letters and digits only), its tokens are words, commas and the empty strings around a
# field's own spaces. Each word is a term, and so is each word followed by a word, `w1 w2`.
# LEAD pairs the neighbours in one sort of the tokens: regular expressions that joined them
# took three times as long for a message of 10,000 characters, and grew faster than it.
TOKENS = (
    "JSON_TABLE(CONCAT('[\"', REPLACE({text}, ' ', '\",\"'), '\"]'), '$[*]' COLUMNS "
    "(position FOR ORDINALITY, token TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))"
)


def terms_of(text: str, source: str = "") -> str:
    """A derived table of the distinct terms of `text`: OLD's or NEW's, or a column of the
    table `source`, whose rows' status and id are then ahead of each term."""
    inner, keys, tables, partition = "", "", "", ""
    if source:
        inner, keys = f"{source}.status, {source}.id, ", "status, id, "
        tables, partition = f"{source}, ", f"PARTITION BY {source}.id "
    return f"""(SELECT DISTINCT {keys}term FROM (
    SELECT {keys}IF(kinds.kind = 1, adjacent.token,
        CONCAT(adjacent.token, ' ', adjacent.next)) AS term
    FROM (
        SELECT {inner}split.token,
            LEAD(split.token) OVER ({partition}ORDER BY split.position) AS next
        FROM {tables}{TOKENS.format(text=text)} AS split
    ) AS adjacent
    JOIN (SELECT 1 AS kind UNION ALL SELECT 2) AS kinds
    WHERE adjacent.token NOT IN ('', ',') AND (kinds.kind = 1 OR adjacent.next NOT IN ('', ','))
) AS every WHERE CHAR_LENGTH(term) <= 200)"""


def add_words(words: str) -> str:
    """Insert the terms of NEW under its status and id."""
    return (
        f"INSERT INTO {words} (word, status, id) "
        f"SELECT found.term, NEW.status, NEW.id FROM {terms_of('NEW.search_text')} AS found "
        "ON DUPLICATE KEY UPDATE word = VALUES(word)"
    )


def fill_words(table: str) -> str:
    """Insert the terms of a table's tasks, in key order, which fills a table many times
    faster than in the order they come."""
    found = terms_of(f"{table}.search_text", table)
    return (
        f"INSERT INTO {table}_words (word, status, id) "
        f"SELECT found.term, found.status, found.id FROM {found} AS found ORDER BY 1, 2, 3 "
        "ON DUPLICATE KEY UPDATE word = VALUES(word)"
    )


def remove_words(words: str) -> str:
    """Delete the terms of OLD: one step into the key for each (a join led by the terms)."""
    return (
        f"DELETE kept FROM {words} AS kept JOIN {terms_of('OLD.search_text')} AS found "
        "ON kept.word = found.term WHERE kept.status = OLD.status AND kept.id = OLD.id"
    )


def words_statements(table: str) -> list[str]:
    """The words table, its triggers, and the words of the tasks already there."""
    words = f"{table}_words"
    unchanged = (
        "OLD.status <=> NEW.status AND OLD.search_text <=> NEW.search_text AND OLD.id <=> NEW.id"
    )
    return [
        f"CREATE TABLE {words} ("
        "word VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
        "status VARCHAR(16) NOT NULL, id CHAR(32) NOT NULL, "
        "PRIMARY KEY (word, status, id))",
        f"CREATE TRIGGER {words}_insert AFTER INSERT ON {table} FOR EACH ROW {add_words(words)}",
        f"CREATE TRIGGER {words}_delete AFTER DELETE ON {table} FOR EACH ROW {remove_words(words)}",
        f"CREATE TRIGGER {words}_update AFTER UPDATE ON {table} FOR EACH ROW "
        f"IF NOT ({unchanged}) THEN {remove_words(words)}; {add_words(words)}; END IF",
        fill_words(table),
        f"ANALYZE TABLE {words}",
    ]


def create_unmodelled(connection: sa.Connection) -> None:
    """Make each MariaDB task table's words table, filled from its tasks.

    Filling takes longer than a request's statement limit, which the app's connections
    carry: it is lifted meanwhile, and restored afterwards.
    """
    if connection.dialect.name not in MARIADB:
        return
    connection.exec_driver_sql("SET @words_limit = @@SESSION.max_statement_time")
    connection.exec_driver_sql("SET SESSION max_statement_time = 0")
    for table in TABLES:
        for statement in words_statements(table):
            connection.exec_driver_sql(statement)
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS ix_{table}_search ON {table}")
    connection.exec_driver_sql("SET SESSION max_statement_time = @words_limit")


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the words tables and their triggers (a task table may be gone)."""
    if connection.dialect.name not in MARIADB:
        return
    for table in TABLES:
        words = f"{table}_words"
        for suffix in ("insert", "delete", "update"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {words}_{suffix}")
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {words}")


def restore_fulltext(connection: sa.Connection) -> None:
    """Build revision 0005's FULLTEXT index again, without stopwords as it was made."""
    if connection.dialect.name not in MARIADB:
        return
    connection.exec_driver_sql("SET @words_limit = @@SESSION.max_statement_time")
    connection.exec_driver_sql("SET SESSION max_statement_time = 0")
    connection.exec_driver_sql("SET SESSION innodb_ft_enable_stopword = OFF")
    for table in TABLES:
        connection.exec_driver_sql(
            f"CREATE FULLTEXT INDEX ix_{table}_search ON {table} (search_text)"
        )
    connection.exec_driver_sql("SET SESSION max_statement_time = @words_limit")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
    restore_fulltext(op.get_bind())
