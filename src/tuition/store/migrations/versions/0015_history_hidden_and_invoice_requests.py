"""the buyer's records: hidden history entries and invoice requests

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "history_hidden",
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("entry_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("hidden_by", sa.String(length=254), nullable=False),
        sa.Column("hidden_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("unhidden_by", sa.String(length=254), nullable=True),
        sa.Column("unhidden_at", tuition.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "entry_id", name=op.f("pk_history_hidden")),
    )
    op.create_table(
        "invoice_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("open_order_id", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("tax_id", sa.String(length=18), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("invoice_number", sa.String(length=40), nullable=True),
        sa.Column("issued_on", sa.String(length=10), nullable=True),
        sa.Column("issued_amount", sa.BigInteger(), nullable=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=True),
        sa.Column("pdf_sha256", sa.String(length=64), nullable=True),
        sa.Column("reject_reason", sa.String(length=500), nullable=True),
        sa.Column("decided_by", sa.String(length=254), nullable=True),
        sa.Column("decided_at", tuition.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_invoice_requests_amount")),
        sa.CheckConstraint(
            "status IN ('requested', 'issued', 'rejected')", name=op.f("ck_invoice_requests_status")
        ),
        sa.CheckConstraint(
            "type IN ('personal', 'company')", name=op.f("ck_invoice_requests_type")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_invoice_requests_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_requests")),
        sa.UniqueConstraint("open_order_id", name=op.f("uq_invoice_requests_open_order_id")),
    )
    with op.batch_alter_table("invoice_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_requests_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(
            "ix_invoice_requests_status_created_at", ["status", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("invoice_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_requests_status_created_at")
        batch_op.drop_index(batch_op.f("ix_invoice_requests_order_id"))
    op.drop_table("invoice_requests")
    op.drop_table("history_hidden")
