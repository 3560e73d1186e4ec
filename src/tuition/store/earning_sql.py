"""The statement that records a paid payment's earnings on PostgreSQL in one round trip
(see :meth:`tuition.store.earnings.EarningsRepository.hold_earnings`)."""

from __future__ import annotations

from sqlalchemy import column, text

from tuition.store.direct import Direct
from tuition.store.types import UTCDateTime

# The creators' payees, the hold (its release time from the products' refund windows),
# the earnings and the release job. Foreign keys are checked at the end of the
# statement, after every CTE ran, as for the ledger's posting statement. Every
# parameter is cast: asyncpg must deduce one type for each.
HOLD_SQL = Direct(
    text(
        """
WITH args AS (
    SELECT CAST(:payment_id AS VARCHAR) AS payment_id,
           CAST(:order_id AS VARCHAR) AS order_id,
           CAST(:currency AS VARCHAR) AS currency,
           CAST(:paid_at AS TIMESTAMPTZ) AS paid_at,
           CAST(:at AS TIMESTAMPTZ) AS at,
           CAST(:default_days AS INTEGER) AS default_days
),
window_days AS (
    SELECT coalesce(
        CAST(:hold_days AS INTEGER),
        max(coalesce(CAST(p.refund_policy ->> 'window_days' AS INTEGER), a.default_days)),
        min(a.default_days)
    ) AS days
    FROM args AS a
    LEFT JOIN products AS p ON p.id = ANY(CAST(:product_ids AS VARCHAR[]))
),
new_payees AS (
    INSERT INTO payees (id, kind, name, tax_profile, payout_method, payout_account,
                        created_at, updated_at)
    SELECT c.id, 'creator', c.name, 'individual', NULL, NULL, a.at, a.at
    FROM creators AS c, args AS a
    WHERE c.id = ANY(CAST(:creator_ids AS VARCHAR[]))
    ORDER BY c.id
    ON CONFLICT DO NOTHING
    RETURNING 1
),
new_hold AS (
    INSERT INTO earning_holds (payment_id, order_id, currency, status, paid_at, release_at,
                               released_at, clawbacks, created_at, updated_at)
    SELECT a.payment_id, a.order_id, a.currency, 'pending', a.paid_at,
           a.paid_at + make_interval(days => w.days), NULL, 0, a.at, a.at
    FROM args AS a, window_days AS w
    WHERE (SELECT count(*) FROM new_payees) >= 0
    ON CONFLICT DO NOTHING
    RETURNING payment_id, release_at
),
new_earnings AS (
    INSERT INTO earnings (id, payee_id, role, payment_id, order_id, line_index, product_id,
                          currency, base_amount, rate, amount, clawed_pending,
                          clawed_available, created_at)
    SELECT e.id, e.payee_id, e.role, h.payment_id, a.order_id, e.line_index,
           e.product_id, a.currency, e.base_amount, e.rate, e.amount, 0, 0, a.at
    FROM new_hold AS h, args AS a, unnest(
        CAST(:ids AS VARCHAR[]), CAST(:payee_ids AS VARCHAR[]), CAST(:roles AS VARCHAR[]),
        CAST(:line_indexes AS INTEGER[]), CAST(:line_products AS VARCHAR[]),
        CAST(:base_amounts AS BIGINT[]), CAST(:rates AS VARCHAR[]), CAST(:amounts AS BIGINT[])
    ) AS e(id, payee_id, role, line_index, product_id, base_amount, rate, amount)
),
new_job AS (
    INSERT INTO jobs (kind, key, status, attempts, run_at, created_at, updated_at)
    SELECT CAST(:job_kind AS VARCHAR), CAST(:job_key AS VARCHAR), 'queued', 0,
           h.release_at, a.at, a.at
    FROM new_hold AS h, args AS a
    ON CONFLICT DO NOTHING
)
SELECT release_at FROM new_hold
"""
    ).columns(column("release_at", UTCDateTime))
)
