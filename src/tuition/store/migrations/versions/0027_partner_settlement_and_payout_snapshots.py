"""Partner-sold orders and their settlement in the partner's currency; payout accounts
kept with each payout and snapshotted on a payout run's items at approval; the referral
code and partner a subscription was sold with

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-01 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0027"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's batch mode rebuilds ``orders`` and ``subscriptions`` (a foreign key cannot be
# added in place) and cannot carry over an expression index: the lower() search indexes
# of migration 0025 on them are made again after each rebuild.
REBUILT_LOWER = [("orders", "customer_id"), ("subscriptions", "customer_id")]


def _restore_lower_indexes() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL alters the tables in place: nothing is lost
    for table, column in REBUILT_LOWER:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_{table}_{column}_lower ON {table} (lower({column}))"
        )


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_orders_partner_id_payees"), "payees", ["partner_id"], ["id"]
        )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("referral_code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("partner_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_subscriptions_partner_id_payees"), "payees", ["partner_id"], ["id"]
        )
    _restore_lower_indexes()
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payout_account", sa.String(length=200), nullable=True))
    with op.batch_alter_table("payout_run_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payout_method", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("payout_account", sa.String(length=200), nullable=True))
    op.create_table(
        "order_partner_shares",
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("line_index", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.String(length=40), nullable=False),
        sa.Column("rate", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_order_partner_shares_amount")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_partner_shares_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["payees.id"], name=op.f("fk_order_partner_shares_partner_id_payees")
        ),
        sa.PrimaryKeyConstraint("order_id", "line_index", name=op.f("pk_order_partner_shares")),
    )
    op.create_table(
        "partner_settlements",
        sa.Column("earning_id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("payee_id", sa.String(length=40), nullable=False),
        sa.Column("from_currency", sa.String(length=3), nullable=False),
        sa.Column("from_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("clawed_from", sa.BigInteger(), nullable=False),
        sa.Column("clawed", sa.BigInteger(), nullable=False),
        sa.Column("rate", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("rate_source", sa.String(length=200), nullable=False),
        sa.Column("rate_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "from_amount >= 0 AND amount >= 0 AND clawed_from >= 0 AND clawed_from <= from_amount "
            "AND clawed >= 0 AND clawed <= amount",
            name=op.f("ck_partner_settlements_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["earning_id"], ["earnings.id"], name=op.f("fk_partner_settlements_earning_id_earnings")
        ),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["payees.id"], name=op.f("fk_partner_settlements_payee_id_payees")
        ),
        sa.PrimaryKeyConstraint("earning_id", name=op.f("pk_partner_settlements")),
    )
    with op.batch_alter_table("partner_settlements", schema=None) as batch_op:
        batch_op.create_index("ix_partner_settlements_payment_id", ["payment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("partner_settlements", schema=None) as batch_op:
        batch_op.drop_index("ix_partner_settlements_payment_id")
    op.drop_table("partner_settlements")
    op.drop_table("order_partner_shares")
    with op.batch_alter_table("payout_run_items", schema=None) as batch_op:
        batch_op.drop_column("payout_account")
        batch_op.drop_column("payout_method")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_column("payout_account")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_subscriptions_partner_id_payees"), type_="foreignkey"
        )
        batch_op.drop_column("partner_id")
        batch_op.drop_column("referral_code")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_orders_partner_id_payees"), type_="foreignkey")
        batch_op.drop_column("partner_id")
    _restore_lower_indexes()
