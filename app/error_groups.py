"""The grouping key of an error message: the message with its variable parts taken out.

"row 18342: expected 3 columns, found 5" and "row 7: expected 3 columns, found 4" are the
same error; their key is "row <n>: expected <n> columns, found <n>". The recorder writes the
key beside the message when a task fails, the revision that added the column wrote it for
the tasks that had failed before, and `init-db` writes it for tasks failed in plain SQL
since (see `backfill_error_groups`). The key is kept, not computed when read, so that the
most common errors are a GROUP BY on an indexed column.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa

# Longest key kept: an index holds it, and two messages this alike are one error.
ERROR_GROUP_MAX_LENGTH = 255
BACKFILL_BATCH = 1000

# Applied in order: a uuid before its hex runs, a path before the numbers in it.
VARIABLE_PARTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\"[^\"\n]*\"|'[^'\n]*'|`[^`\n]*`"), "<value>"),
    (
        re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|~?/)[\w.~-]+(?:[\\/][\w.~-]+)+/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"(?<![\w<])[-+]?\d+(?:[.,:]\d+)*(?:e[-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def error_group(message: str | None) -> str | None:
    """The message with numbers, ids, hex, paths, URLs and quoted values taken out; None
    for no message."""
    if message is None:
        return None
    key = message
    for pattern, placeholder in VARIABLE_PARTS:
        key = pattern.sub(placeholder, key)
    return key.strip()[:ERROR_GROUP_MAX_LENGTH] or "(empty message)"


def backfill_error_groups(
    connection: sa.Connection,
    tables: list[sa.Table],
    *,
    group: Callable[[str | None], str | None] = error_group,
    batch: int = BACKFILL_BATCH,
) -> int:
    """Write the key of every failed task that has none; return how many were written.

    A batch at a time (read a thousand ids and messages, write their keys), so that a
    table of millions of failed tasks is never read into memory at once. Each batch reads
    the (status, error_group) index's range of failed tasks without a key.
    """
    written = 0
    for table in tables:
        columns = table.c
        missing = sa.select(columns.id, columns.error_msg).where(
            columns.status == "failed", columns.error_group.is_(None)
        )
        update = (
            sa.update(table)
            .where(columns.id == sa.bindparam("task_id"))
            .values(error_group=sa.bindparam("key"))
        )
        while rows := connection.execute(missing.limit(batch)).all():
            keys = [{"task_id": row.id, "key": group(row.error_msg or "")} for row in rows]
            connection.execute(update, keys)
            written += len(keys)
    return written
