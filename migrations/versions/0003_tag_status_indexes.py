"""An index on (tag, status, created_at) in every task table: counts with a tag stay capped.

Counted by status, a tag's tasks were read whole from the (tag, created_at) index: the cost
followed the tag's size, and with a time window an engine could read the window's
finished tasks of every tag and look each one up. Led by tag and status, a count of one
status reads one range and stops one row past the threshold, like the counts without a
tag (app/query/counts.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)
COLUMNS = ["tag", "status", "created_at", "id", "finished_at"]


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_tag_status", table, COLUMNS)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_tag_status", table_name=table)
