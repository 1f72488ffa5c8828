"""The (status, updated_at) index of every task table also holds created_at.

A count of stalled tasks reads the running tasks' range of (status, updated_at) up to the
moment each type's limit puts (app/stalled.py). With a "Created between…" bound beside it,
each task in that range was looked up in its table to read its created_at: at a million
tasks the stalled chip of `created_after` took 13 to 28 ms on SQLite and PostgreSQL and over
200 ms on MariaDB, whose rows are read through a buffer pool that holds few of them. With
created_at in the index, the range alone answers.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)


def rebuild(columns: list[str]) -> None:
    """Each table's `ix_<table>_status_updated` made again over these columns."""
    for table in TABLES:
        name = f"ix_{table}_status_updated"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)


def upgrade() -> None:
    rebuild(["status", "updated_at", "created_at"])


def downgrade() -> None:
    rebuild(["status", "updated_at"])
