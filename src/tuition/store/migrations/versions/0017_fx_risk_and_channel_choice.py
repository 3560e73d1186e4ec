"""exchange rates; risk rules, counters, decisions, attempts, reviews; channel breakers

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tuition.store.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fx_rates",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("as_of", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("base <> quote", name=op.f("ck_fx_rates_pair")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fx_rates")),
    )
    with op.batch_alter_table("fx_rates", schema=None) as batch_op:
        batch_op.create_index("ix_fx_rates_pair_as_of", ["base", "quote", "as_of"], unique=False)

    op.create_table(
        "risk_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("score", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "action IS NULL OR action IN ('review', 'block')", name=op.f("ck_risk_rules_action")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_rules")),
    )
    op.create_table(
        "risk_counters",
        sa.Column("rule_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("window_start", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "rule_id", "subject", "window_start", name=op.f("pk_risk_counters")
        ),
    )
    op.create_table(
        "risk_decisions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("score", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("client", sa.JSON(), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('allow', 'review')", name=op.f("ck_risk_decisions_decision")
        ),
        sa.CheckConstraint(
            "stage IN ('order', 'payment', 'refund')", name=op.f("ck_risk_decisions_stage")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_decisions")),
    )
    with op.batch_alter_table("risk_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_decisions_order_id"), ["order_id"], unique=False)
        batch_op.create_index("ix_risk_decisions_created_at", ["created_at"], unique=False)
    op.create_table(
        "risk_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("score", tuition.store.types.DecimalText(length=40), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("client", sa.JSON(), nullable=False),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_attempts")),
    )
    with op.batch_alter_table("risk_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_risk_attempts_created_at", ["created_at"], unique=False)
    op.create_table(
        "risk_reviews",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("open_order_id", sa.String(length=40), nullable=True),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(length=254), nullable=True),
        sa.Column("decided_at", tuition.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'approved', 'rejected')", name=op.f("ck_risk_reviews_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_reviews")),
        sa.UniqueConstraint("open_order_id", name=op.f("uq_risk_reviews_open_order_id")),
    )
    with op.batch_alter_table("risk_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_reviews_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            "ix_risk_reviews_status_created_at", ["status", "created_at"], unique=False
        )
    op.create_table(
        "channel_breakers",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_until", tuition.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_failure", sa.String(length=200), nullable=True),
        sa.Column("updated_at", tuition.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_breakers")),
    )


def downgrade() -> None:
    op.drop_table("channel_breakers")
    for table in ("risk_reviews", "risk_attempts", "risk_decisions", "risk_counters"):
        op.drop_table(table)
    op.drop_table("risk_rules")
    with op.batch_alter_table("fx_rates", schema=None) as batch_op:
        batch_op.drop_index("ix_fx_rates_pair_as_of")
    op.drop_table("fx_rates")
