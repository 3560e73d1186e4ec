"""coins, prices per surface and split tender

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:40:00

Top-ups booked before this revision (a creator sale: creator payable and platform
revenue credited, no wallet) are not rewritten: ``tuition wallet correct-topups``
posts a correcting entry for each (see docs/wallet.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "product_surface_prices",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("surface", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_product_surface_prices_positive")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_surface_prices_product_id_products"),
        ),
        sa.PrimaryKeyConstraint(
            "product_id", "surface", "currency", name=op.f("pk_product_surface_prices")
        ),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("topup_coins", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("topup_bonus_coins", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("surface", sa.String(length=32), server_default="web", nullable=False)
        )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wallet_part_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_payments_wallet_part_id", ["wallet_part_id"], unique=False)
    with op.batch_alter_table("wallet_lots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value_currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("value", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("value_remaining", sa.BigInteger(), nullable=True))
        batch_op.drop_constraint(op.f("ck_wallet_lots_kind"), type_="check")
        batch_op.create_check_constraint(
            "kind", "kind IN ('topup', 'bonus', 'refund', 'adjustment')"
        )
        batch_op.create_check_constraint(
            "value",
            "(value IS NULL AND value_remaining IS NULL AND value_currency IS NULL) OR "
            "(value >= 0 AND value_remaining >= 0 AND value_remaining <= value "
            "AND value_currency IS NOT NULL)",
        )
    with op.batch_alter_table("wallet_transactions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_wallet_transactions_cause"), type_="check")
        batch_op.create_check_constraint(
            "cause", "cause IN ('topup', 'order', 'refund', 'adjustment', 'release')"
        )


def downgrade() -> None:
    with op.batch_alter_table("wallet_transactions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_wallet_transactions_cause"), type_="check")
        batch_op.create_check_constraint(
            "cause", "cause IN ('topup', 'order', 'refund', 'adjustment')"
        )
    with op.batch_alter_table("wallet_lots", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_wallet_lots_value"), type_="check")
        batch_op.drop_constraint(op.f("ck_wallet_lots_kind"), type_="check")
        batch_op.create_check_constraint("kind", "kind IN ('topup', 'refund', 'adjustment')")
        batch_op.drop_column("value_remaining")
        batch_op.drop_column("value")
        batch_op.drop_column("value_currency")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_wallet_part_id")
        batch_op.drop_column("wallet_part_id")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("surface")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("topup_bonus_coins")
        batch_op.drop_column("topup_coins")
    op.drop_table("product_surface_prices")
