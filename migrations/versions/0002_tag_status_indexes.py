"""Counts by tag and status read one index range each: (tag, status, finished_at, created_at).

A capped count of one type, one status and one tag stops after 10,001 entries only if its
matches lie together; on the (tag, created_at, …) index a rare status meant reading every
entry of the tag.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = (
    "upload_task",
    "upload_dataset_task",
    "training_task",
    "evaluation_task",
    "synthesis_task",
)


def upgrade() -> None:
    for table in TABLES:
        op.create_index(
            f"ix_{table}_tag_status", table, ["tag", "status", "finished_at", "created_at"]
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_tag_status", table_name=table)
