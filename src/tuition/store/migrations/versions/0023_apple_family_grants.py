"""App Store family sharing: grants without an order, named by their App Store transaction

Revision ID: 0023
Revises: 0021
Create Date: 2026-12-01 17:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A family member's access comes with no order (no money moved for it): the grant
    # is named by the family-shared App Store transaction instead.
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=sa.String(length=40), nullable=True)
    with op.batch_alter_table("apple_transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entitlement_id", sa.String(length=40), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_apple_transactions_entitlement_id"), ["entitlement_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("apple_transactions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_apple_transactions_entitlement_id"), type_="unique")
        batch_op.drop_column("entitlement_id")
    op.execute("DELETE FROM entitlements WHERE order_id IS NULL")
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=sa.String(length=40), nullable=False)
