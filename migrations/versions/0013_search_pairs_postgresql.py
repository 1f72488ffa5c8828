"""PostgreSQL's words tables also hold each pair of neighbouring words, as MariaDB's do.

A phrase of two words (`"support tickets"`) was counted from the task tables: the words
tables of revision 0011 tell that a task holds both words, not that they follow each other.
With each pair of neighbouring words of a field beside the words, `w1 w2` (a space no word
holds), a phrase of two words is one entry of the (word, status, id) key, and one of more
words is tested on the text of the few tasks that hold its first pair.

- PostgreSQL: the trigger function of each words table (revision 0011) keeps the pairs too,
  and the pairs of the tasks already there are added. Terms over 200 characters, longer
  than any of `q`, are left out.
- SQLite and MariaDB: unchanged.

Downgrading removes the pairs and restores revision 0011's function.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)
# search_text is ` w1 w2 , w3 , … `: split at each space, its tokens are words, commas and
# the empty strings around a field's own spaces. Each word is a term, and so is each word
# followed by a word, as `w1 w2`.
TERMS_OF = """SELECT DISTINCT term FROM (
    SELECT token, lead(token) OVER (ORDER BY position) AS next
    FROM regexp_split_to_table({text}, ' ') WITH ORDINALITY AS split(token, position)
) AS adjacent, LATERAL (VALUES (token), (token || ' ' || next)) AS terms(term)
WHERE token NOT IN ('', ',') AND term IS NOT NULL AND length(term) <= 200
    AND (term = token OR next NOT IN ('', ','))"""
# Revision 0011's words alone, restored on downgrade.
WORDS_OF = (
    "SELECT DISTINCT term FROM regexp_split_to_table({text}, '[ ,]+') AS term "
    "WHERE term <> '' AND length(term) <= 200"
)


def keep_function(table: str, terms_of: str) -> str:
    """The trigger function that keeps a table's terms in step with its rows."""
    words = f"{table}_words"
    old_terms = terms_of.format(text="OLD.search_text")
    new_terms = terms_of.format(text="NEW.search_text")
    return f"""
CREATE OR REPLACE FUNCTION {words}_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM {words}
        WHERE status = OLD.status AND id = OLD.id AND word IN ({old_terms});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO {words} (word, status, id)
        SELECT found.term, NEW.status, NEW.id FROM ({new_terms}) AS found
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$"""


def add_pairs(table: str) -> str:
    """The pairs of the tasks already there (their words are there since revision 0011)."""
    terms = TERMS_OF.format(text=f"{table}.search_text")
    return (
        f"INSERT INTO {table}_words (word, status, id) "
        f"SELECT found.term, {table}.status, {table}.id FROM {table}, "
        f"LATERAL ({terms}) AS found WHERE strpos(found.term, ' ') > 0 "
        "ON CONFLICT DO NOTHING"
    )


def create_unmodelled(connection: sa.Connection) -> None:
    """Keep and add the pairs of each PostgreSQL task table, without the statement limit."""
    if connection.dialect.name != "postgresql":
        return
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    for table in TABLES:
        connection.exec_driver_sql(keep_function(table, TERMS_OF))
        connection.exec_driver_sql(add_pairs(table))
        connection.exec_driver_sql(f"ANALYZE {table}_words")


def drop_unmodelled(connection: sa.Connection) -> None:
    """Remove the pairs and keep the words alone again (a table may be gone already)."""
    if connection.dialect.name != "postgresql":
        return
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    present = set(sa.inspect(connection).get_table_names())
    for table in TABLES:
        if f"{table}_words" in present:
            connection.exec_driver_sql(keep_function(table, WORDS_OF))
            connection.exec_driver_sql(f"DELETE FROM {table}_words WHERE strpos(word, ' ') > 0")


def upgrade() -> None:
    create_unmodelled(op.get_bind())


def downgrade() -> None:
    drop_unmodelled(op.get_bind())
