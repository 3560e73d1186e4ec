"""App Store transactions, wallet shortfalls and bank transfer receipts

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 16:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apple_transactions",
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("original_transaction_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("app_store_product_id", sa.String(length=200), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("family_shared", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('received', 'credited', 'refunded', 'revoked')",
            name=op.f("ck_apple_transactions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_apple_transactions_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_apple_transactions")),
        sa.UniqueConstraint("order_id", name=op.f("uq_apple_transactions_order_id")),
    )
    with op.batch_alter_table("apple_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_apple_transactions_original_transaction_id"),
            ["original_transaction_id"],
            unique=False,
        )
    op.create_table(
        "wallet_shortfalls",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("value_currency", sa.String(length=3), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("cause_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_wallet_shortfalls_positive")),
        sa.CheckConstraint("value >= 0", name=op.f("ck_wallet_shortfalls_value_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_shortfalls")),
        sa.UniqueConstraint("cause_id", name=op.f("uq_wallet_shortfalls_cause_id")),
    )
    with op.batch_alter_table("wallet_shortfalls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wallet_shortfalls_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "bank_transfer_receipts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("bank_serial", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("received_on", sa.String(length=10), nullable=False),
        sa.Column("payer", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("recorded_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_bank_transfer_receipts_positive")),
        sa.CheckConstraint(
            "source IN ('manual', 'statement')", name=op.f("ck_bank_transfer_receipts_source")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_bank_transfer_receipts_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_transfer_receipts")),
        sa.UniqueConstraint("bank_serial", name=op.f("uq_bank_transfer_receipts_bank_serial")),
    )
    with op.batch_alter_table("bank_transfer_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bank_transfer_receipts_payment_id"), ["payment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bank_transfer_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bank_transfer_receipts_payment_id"))
    op.drop_table("bank_transfer_receipts")
    with op.batch_alter_table("wallet_shortfalls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_shortfalls_customer_id"))
    op.drop_table("wallet_shortfalls")
    with op.batch_alter_table("apple_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apple_transactions_original_transaction_id"))
    op.drop_table("apple_transactions")
