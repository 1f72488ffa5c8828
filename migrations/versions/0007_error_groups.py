"""A failed task's error group: a column, the index the errors panel reads, and the keys of
the tasks that failed before it.

`error_group` is the error message with its variable parts taken out (app/error_groups.py).
The index leads with the status, so the failed tasks of each group are one range, in
created_at order. The tasks already failed get their keys here, a thousand at a time, from
the same function the recorder uses.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from app.error_groups import ERROR_GROUP_MAX_LENGTH, backfill_error_groups

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)
ERROR_GROUP = sa.String(ERROR_GROUP_MAX_LENGTH).with_variant(
    mysql.VARCHAR(ERROR_GROUP_MAX_LENGTH, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)
INDEXED = ["status", "error_group", "created_at", "id", "finished_at"]


def the_tables() -> list[sa.Table]:
    """The columns the backfill reads and writes, as they are at this revision."""
    metadata = sa.MetaData()
    return [
        sa.Table(
            name,
            metadata,
            sa.Column("id", sa.Uuid().with_variant(sa.Uuid(native_uuid=False), "mysql", "mariadb")),
            sa.Column("status", sa.String(16)),
            sa.Column("error_msg", sa.Text),
            sa.Column("error_group", ERROR_GROUP),
        )
        for name in TABLES
    ]


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("error_group", ERROR_GROUP))
        op.create_index(f"ix_{table}_status_error_group", table, INDEXED)
    backfill_error_groups(op.get_bind(), the_tables())


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_status_error_group", table_name=table)
        # SQLite drops a column in place since 3.35, once no index holds it.
        op.drop_column(table, "error_group")
