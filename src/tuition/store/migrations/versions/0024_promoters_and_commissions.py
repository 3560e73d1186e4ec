"""Promoters, product commissions, orders' referral codes and splits, partner agreements

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("referral_code", sa.String(length=64), nullable=True))
    op.create_table(
        "promoters",
        sa.Column("payee_id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("recruited_by", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["payees.id"], name=op.f("fk_promoters_payee_id_payees")
        ),
        sa.ForeignKeyConstraint(
            ["recruited_by"],
            ["promoters.payee_id"],
            name=op.f("fk_promoters_recruited_by_promoters"),
        ),
        sa.PrimaryKeyConstraint("payee_id", name=op.f("pk_promoters")),
        sa.UniqueConstraint("code", name=op.f("uq_promoters_code")),
    )
    with op.batch_alter_table("promoters", schema=None) as batch_op:
        batch_op.create_index("ix_promoters_recruited_by", ["recruited_by"], unique=False)
    op.create_table(
        "product_commissions",
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("level1", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("level2", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("bearer", sa.String(length=12), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "bearer IN ('platform', 'creator')", name=op.f("ck_product_commissions_bearer")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_product_commissions_product_id_products")
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_product_commissions")),
    )
    op.create_table(
        "order_commissions",
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("line_index", sa.Integer(), nullable=False),
        sa.Column("referral_code", sa.String(length=64), nullable=False),
        sa.Column("bearer", sa.String(length=12), nullable=False),
        sa.Column("creator_amount", sa.BigInteger(), nullable=False),
        sa.Column("level1_id", sa.String(length=40), nullable=False),
        sa.Column("level1_rate", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("level1_amount", sa.BigInteger(), nullable=False),
        sa.Column("level2_id", sa.String(length=40), nullable=True),
        sa.Column("level2_rate", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("level2_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "creator_amount >= 0 AND level1_amount >= 0 AND level2_amount >= 0 "
            "AND (level2_id IS NOT NULL OR level2_amount = 0)",
            name=op.f("ck_order_commissions_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_commissions_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["level1_id"], ["payees.id"], name=op.f("fk_order_commissions_level1_id_payees")
        ),
        sa.ForeignKeyConstraint(
            ["level2_id"], ["payees.id"], name=op.f("fk_order_commissions_level2_id_payees")
        ),
        sa.PrimaryKeyConstraint("order_id", "line_index", name=op.f("pk_order_commissions")),
    )
    with op.batch_alter_table("order_commissions", schema=None) as batch_op:
        batch_op.create_index("ix_order_commissions_level1_id", ["level1_id"], unique=False)
    op.create_table(
        "partners",
        sa.Column("payee_id", sa.String(length=40), nullable=False),
        sa.Column("share", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["payees.id"], name=op.f("fk_partners_payee_id_payees")
        ),
        sa.PrimaryKeyConstraint("payee_id", name=op.f("pk_partners")),
    )


def downgrade() -> None:
    op.drop_table("partners")
    with op.batch_alter_table("order_commissions", schema=None) as batch_op:
        batch_op.drop_index("ix_order_commissions_level1_id")
    op.drop_table("order_commissions")
    op.drop_table("product_commissions")
    with op.batch_alter_table("promoters", schema=None) as batch_op:
        batch_op.drop_index("ix_promoters_recruited_by")
    op.drop_table("promoters")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("referral_code")
