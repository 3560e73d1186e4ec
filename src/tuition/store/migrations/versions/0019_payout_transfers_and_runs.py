"""payouts: WeChat Pay transfer confirmation packages; payout runs and their items

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transfer_package", sa.String(length=1000), nullable=True))
    op.create_table(
        "payout_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("schedule", sa.String(length=8), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("proposed_by", sa.String(length=254), nullable=False),
        sa.Column("approved_by", sa.String(length=254), nullable=True),
        sa.Column("approved_at", tuition.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "schedule IN ('weekly', 'monthly')", name=op.f("ck_payout_runs_schedule")
        ),
        sa.CheckConstraint(
            "status IN ('proposed', 'approved')", name=op.f("ck_payout_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_runs")),
        sa.UniqueConstraint("schedule", "period", name=op.f("uq_payout_runs_schedule")),
    )
    op.create_table(
        "payout_run_items",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("payee_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_estimate", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("payout_id", sa.String(length=40), nullable=True),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('proposed', 'created', 'skipped')",
            name=op.f("ck_payout_run_items_status"),
        ),
        sa.CheckConstraint(
            "amount > 0 AND tax_estimate >= 0", name=op.f("ck_payout_run_items_amounts")
        ),
        sa.ForeignKeyConstraint(
            ["payee_id"], ["payees.id"], name=op.f("fk_payout_run_items_payee_id_payees")
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name=op.f("fk_payout_run_items_payout_id_payouts")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["payout_runs.id"], name=op.f("fk_payout_run_items_run_id_payout_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "payee_id", "currency", name=op.f("pk_payout_run_items")),
    )


def downgrade() -> None:
    op.drop_table("payout_run_items")
    op.drop_table("payout_runs")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_column("transfer_package")
