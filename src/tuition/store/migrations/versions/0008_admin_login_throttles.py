"""admin login throttles

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_login_throttles",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_ends", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_admin_login_throttles")),
    )
    with op.batch_alter_table("admin_login_throttles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_admin_login_throttles_subject"), ["subject"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_admin_login_throttles_window_ends"), ["window_ends"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("admin_login_throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_login_throttles_window_ends"))
        batch_op.drop_index(batch_op.f("ix_admin_login_throttles_subject"))
    op.drop_table("admin_login_throttles")
