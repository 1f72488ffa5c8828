"""Every change of a task on record (task_event), and running tasks found by when last heard.

`task_event` names its task by type and id with no foreign key, so that deleting a task keeps
its events. The index on (status, updated_at) of every task table finds the running tasks
not heard from since a moment (a stalled task) as one range, at any table size.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
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
KINDS = (
    "'created', 'started', 'progress', 'cancel_requested', 'cancelled', 'completed', "
    "'failed', 'retried'"
)
UUID = sa.Uuid().with_variant(sa.Uuid(native_uuid=False), *MARIADB)
INSTANT = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MARIADB)
ACTOR = sa.String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_nopad_bin"), *MARIADB)
EVENT_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "task_event",
        sa.Column("id", EVENT_ID, primary_key=True, autoincrement=True),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("task_id", UUID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", ACTOR, nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("note", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_task_event"),
        sa.CheckConstraint(f"kind IN ({KINDS})", name="ck_task_event_kind"),
    )
    op.create_index("ix_task_event_task", "task_event", ["task_id", "at", "id"])
    op.create_index("ix_task_event_actor", "task_event", ["actor", "task_type", "task_id"])
    for table in TABLES:
        op.create_index(f"ix_{table}_status_updated", table, ["status", "updated_at"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_status_updated", table_name=table)
    op.drop_table("task_event")
