"""Idempotency keys: the reporting API answers a repeated write with its first answer.

One row per owner (the token's or person's name) and `Idempotency-Key`, claimed before the
write is performed and holding its answer after; `created_at` is indexed so that keys older
than a day are purged as one range (app/idempotency.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MARIADB = ("mysql", "mariadb")
INSTANT = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MARIADB)


def exact_text(length: int) -> sa.types.TypeEngine:
    """Text matched exactly on every engine (MariaDB's default collation ignores case)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_nopad_bin"), *MARIADB
    )


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("owner", exact_text(300), nullable=False),
        sa.Column("key", exact_text(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("content_type", sa.String(100)),
        sa.Column("location", sa.String(500)),
        sa.Column("body", sa.Text().with_variant(mysql.MEDIUMTEXT(), *MARIADB)),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("owner", "key", name="pk_idempotency_key"),
    )
    op.create_index("ix_idempotency_key_created_at", "idempotency_key", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_key_created_at", table_name="idempotency_key")
    op.drop_table("idempotency_key")
