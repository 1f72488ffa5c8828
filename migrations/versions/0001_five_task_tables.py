"""The five task tables, their rules, their generated column and the indexes listings walk.

This is the schema that `init-db` made before the project had revisions; `init-db` adopts a
database made that way by comparing it with `task_metadata` below and stamping this
revision. The definitions are written out here, not imported from app.models, so that this
revision stays what it was when the models change.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "'queued', 'running', 'completed', 'failed', 'cancelled'"
TERMINAL = "'completed', 'failed', 'cancelled'"
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}
MARIADB = ("mysql", "mariadb")
UUID = sa.Uuid().with_variant(sa.Uuid(native_uuid=False), *MARIADB)
INSTANT = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MARIADB)
TAG = sa.String(128).with_variant(mysql.VARCHAR(128, collation="utf8mb4_nopad_bin"), *MARIADB)
# Seconds from created_at to finished_at, as each engine computes it in a generated column.
SECONDS_TO_FINISH = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM finished_at - created_at) AS DOUBLE PRECISION)",
    "sqlite": "(julianday(finished_at) - julianday(created_at)) * 86400.0",
    "mysql": "TIMESTAMPDIFF(SECOND, created_at, finished_at)",
    "mariadb": "TIMESTAMPDIFF(SECOND, created_at, finished_at)",
}


def shared_columns(dialect: str) -> list[sa.SchemaItem]:
    """The columns every task table starts with."""
    return [
        sa.Column("id", UUID, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tag", TAG),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.Column("started_at", INSTANT),
        sa.Column("finished_at", INSTANT),
        sa.Column("progress", sa.Double),
        sa.Column("error_msg", sa.Text),
        sa.Column(
            "seconds_to_finish", sa.Double, sa.Computed(SECONDS_TO_FINISH[dialect], persisted=True)
        ),
    ]


def shared_rules(table: str) -> list[sa.SchemaItem]:
    """The checks and indexes every task table has."""
    return [
        sa.CheckConstraint(f"status IN ({STATUSES})", name="status"),
        sa.CheckConstraint(
            f"(status IN ({TERMINAL})) = (finished_at IS NOT NULL)", name="finished_when_terminal"
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        sa.Index(f"ix_{table}_created", "created_at", "id", "status", "finished_at"),
        sa.Index(f"ix_{table}_status_created", "status", "created_at", "id", "finished_at"),
        sa.Index(f"ix_{table}_tag_created", "tag", "created_at", "id", "status", "finished_at"),
        sa.Index(f"ix_{table}_status_finished", "status", "finished_at"),
        sa.Index(f"ix_{table}_status_seconds", "status", "seconds_to_finish"),
    ]


def task_table(metadata: sa.MetaData, name: str, dialect: str, *own: sa.SchemaItem) -> sa.Table:
    """One task table: the shared columns, its own columns, the shared rules."""
    return sa.Table(name, metadata, *shared_columns(dialect), *own, *shared_rules(name))


def task_metadata(dialect: str) -> sa.MetaData:
    """The five tables as this revision makes them on `dialect`."""
    metadata = sa.MetaData(naming_convention=NAMING)
    task_table(
        metadata,
        "upload_task",
        dialect,
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("source_uri", sa.String(500), nullable=False),
        sa.Column("revision", sa.String(100)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.CheckConstraint("source IN ('huggingface', 'github', 'local')", name="source"),
    )
    task_table(
        metadata,
        "upload_dataset_task",
        dialect,
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("dataset_name", sa.String(200), nullable=False),
        sa.Column("source_uri", sa.String(500), nullable=False),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("size_bytes", sa.BigInteger),
        sa.CheckConstraint("source IN ('huggingface', 'local')", name="source"),
    )
    task_table(
        metadata,
        "training_task",
        dialect,
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("dataset_name", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("epochs", sa.Integer, nullable=False),
        sa.Column("output_model", sa.String(200)),
        sa.Column("dataset_task_id", UUID, sa.ForeignKey("upload_dataset_task.id"), index=True),
        sa.CheckConstraint("method IN ('full', 'lora', 'qlora')", name="method"),
        sa.CheckConstraint("epochs >= 1", name="epochs"),
    )
    task_table(
        metadata,
        "evaluation_task",
        dialect,
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("dataset_name", sa.String(200), nullable=False),
        sa.Column("benchmark", sa.String(100), nullable=False),
        sa.Column("metrics", sa.JSON),
        sa.Column("training_task_id", UUID, sa.ForeignKey("training_task.id"), index=True),
    )
    task_table(
        metadata,
        "synthesis_task",
        dialect,
        sa.Column("generator_model", sa.String(200), nullable=False),
        sa.Column("source_dataset", sa.String(200)),
        sa.Column("output_dataset", sa.String(200), nullable=False),
        sa.Column("target_rows", sa.Integer, nullable=False),
        sa.Column("generated_rows", sa.Integer),
        sa.CheckConstraint("target_rows >= 1", name="target_rows"),
    )
    return metadata


def upgrade() -> None:
    bind = op.get_bind()
    task_metadata(bind.dialect.name).create_all(bind)


def downgrade() -> None:
    bind = op.get_bind()
    task_metadata(bind.dialect.name).drop_all(bind)
