"""reconciliation: runs against the gateways' bills and their cases

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("business_day", sa.String(length=10), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("bill_digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('clean', 'differences')", name=op.f("ck_reconciliation_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint(
            "channel", "account", "business_day", "attempt", name="uq_reconciliation_runs_day"
        ),
    )
    op.create_index(
        "ix_reconciliation_runs_business_day",
        "reconciliation_runs",
        ["business_day", "channel"],
        unique=False,
    )
    op.create_table(
        "reconciliation_cases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("last_run_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("business_day", sa.String(length=10), nullable=False),
        sa.Column("case_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=10), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_ours", sa.BigInteger(), nullable=True),
        sa.Column("amount_gateway", sa.BigInteger(), nullable=True),
        sa.Column("fee_ours", sa.BigInteger(), nullable=True),
        sa.Column("fee_gateway", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("resolution", sa.String(length=40), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("journal_source", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", tuition.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'resolved', 'accepted')",
            name=op.f("ck_reconciliation_cases_status"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_cases_run_id_reconciliation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_cases")),
        sa.UniqueConstraint("channel", "account", "case_key", name="uq_reconciliation_cases_key"),
    )
    op.create_index(
        op.f("ix_reconciliation_cases_run_id"), "reconciliation_cases", ["run_id"], unique=False
    )
    op.create_index(
        "ix_reconciliation_cases_business_day",
        "reconciliation_cases",
        ["business_day", "status"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliation_cases_business_day", table_name="reconciliation_cases")
    op.drop_index(op.f("ix_reconciliation_cases_run_id"), table_name="reconciliation_cases")
    op.drop_table("reconciliation_cases")
    op.drop_index("ix_reconciliation_runs_business_day", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
