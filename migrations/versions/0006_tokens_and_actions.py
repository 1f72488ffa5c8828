"""API tokens, and what cancelling and retrying a task need in every task table.

`cancel_requested_at` marks a running task an operator asked to stop (its module confirms);
`retry_of` links a retry to the task it retries, unique so a task is retried once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
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
UUID = sa.Uuid().with_variant(sa.Uuid(native_uuid=False), *MARIADB)
INSTANT = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MARIADB)


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("cancel_requested_at", INSTANT))
        op.add_column(table, sa.Column("retry_of", UUID))
        op.create_index(f"ix_{table}_retry_of", table, ["retry_of"], unique=True)
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("last_used_at", INSTANT),
        sa.Column("revoked_at", INSTANT),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.UniqueConstraint("name", name="uq_api_token_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_token_token_hash"),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'reporter')", name="ck_api_token_role"),
    )


def downgrade() -> None:
    op.drop_table("api_token")
    for table in TABLES:
        op.drop_index(f"ix_{table}_retry_of", table_name=table)
        op.drop_column(table, "retry_of")
        op.drop_column(table, "cancel_requested_at")
