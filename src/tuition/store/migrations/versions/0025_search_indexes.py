"""Indexes on lower() of the columns the console's search reads in any case

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 20:15:00.000000

The start of a customer id or a payee's name (``LIKE 'abc%'``) and a gateway number in
any case (``=``). PostgreSQL's ``text_pattern_ops`` answers a prefix LIKE whatever the
database's collation; SQLite's plain expression index answers the range its queries
use instead (store/console_lists.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, prefix search): a prefix search needs text_pattern_ops on PostgreSQL.
INDEXED = [
    ("orders", "customer_id", True),
    ("payments", "customer_id", True),
    ("payments", "channel_trade_no", False),
    ("refunds", "customer_id", True),
    ("refunds", "channel_refund_no", False),
    ("wallet_balances", "customer_id", True),
    ("subscriptions", "customer_id", True),
    ("agreements", "agreement_no", False),
    ("invoice_requests", "customer_id", True),
    ("invoice_requests", "invoice_number", False),
    ("payees", "name", True),
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, column, prefix in INDEXED:
        ops = " text_pattern_ops" if prefix and postgresql else ""
        op.create_index(
            f"ix_{table}_{column}_lower", table, [sa.text(f"lower({column}){ops}")], unique=False
        )


def downgrade() -> None:
    for table, column, _prefix in reversed(INDEXED):
        op.drop_index(f"ix_{table}_{column}_lower", table_name=table)
