"""An index on updated_at in every task table: the newest change is then one index step.

The page tells an unchanged view from the newest `updated_at` of each table (see
app/query/versions.py) before it lists or counts anything.

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
        op.create_index(f"ix_{table}_updated", table, ["updated_at"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_updated", table_name=table)
