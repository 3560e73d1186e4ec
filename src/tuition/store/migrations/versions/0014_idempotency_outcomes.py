"""idempotency outcomes: a holder token and the outcome committed with the operation

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("outcome_id", sa.String(length=64), nullable=True))
        batch_op.drop_constraint(op.f("ck_idempotency_keys_state"), type_="check")
        batch_op.create_check_constraint("state", "state IN ('running', 'committed', 'done')")


def downgrade() -> None:
    # A committed record has no stored answer the old code could replay: forget it.
    op.execute("DELETE FROM idempotency_keys WHERE state = 'committed'")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_idempotency_keys_state"), type_="check")
        batch_op.create_check_constraint("state", "state IN ('running', 'done')")
        batch_op.drop_column("outcome_id")
        batch_op.drop_column("holder")
