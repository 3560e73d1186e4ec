-- The least SQL one payment flow needs on Tuition's schema: pgbench runs it to measure
-- what this PostgreSQL can do per second (the "flow limit"), and the harness reports
-- Tuition's flows/s against it. One script run = one flow:
--   1. create the order and its line (one transaction);
--   2. create the payment (one statement);
--   3. apply the gateway's notification: record it, claim it exactly once, mark the
--      payment and the order paid, grant the entitlement, post one balanced journal
--      entry (gross to clearing, creator share to pending, the rest to revenue) with its
--      shard balances, and queue the webhook event (one transaction).
-- tests/integration/test_bench_flow_limit.py runs it once on a migrated schema, so a
-- schema change that breaks it fails a test. Setup: flow_limit_setup.sql.
-- pgbench takes every :word for a variable, inside literals too: so no literal here has a
-- colon before a letter ('channel_clearing:' || 'CNY:' || 'sandbox').
\set r random(1, 9000000000000000000)
\set shard random(0, 15)
BEGIN;
INSERT INTO orders (id, customer_id, currency, status, subtotal, discount_total, tax_total,
                    surcharge, total, amount_refunded, surface, pricing, metadata, expires_at,
                    created_at, updated_at)
VALUES ('ord_b' || CAST(:r AS text), 'u_' || CAST(:client_id AS text), 'CNY', 'pending_payment', 9900, 0, 0, 0, 9900, 0,
        'web', '{}', '{}', now() + interval '15 minutes', now(), now());
INSERT INTO order_lines (order_id, line_index, product_id, kind, title, creator_id,
                         revenue_share, quantity, unit_price, list_amount, promotion_discount,
                         coupon_discount, tax, surcharge, total, components)
VALUES ('ord_b' || CAST(:r AS text), 0, 'prd_bench', 'course', 'Bench course', 'cr_bench', '0.7', 1, 9900,
        9900, 0, 0, 0, 0, 9900, '[]');
COMMIT;
INSERT INTO payments (id, order_id, customer_id, channel, method, app_id, status, amount,
                      currency, amount_refunded, next_action, created_at, updated_at)
VALUES ('pay_b' || CAST(:r AS text), 'ord_b' || CAST(:r AS text), 'u_' || CAST(:client_id AS text), 'sandbox', 'page', 'bench',
        'pending', 9900, 'CNY', 0, '{"type": "redirect"}', now(), now());
BEGIN;
INSERT INTO notifications (id, channel, received_at, headers, body, verdict, payment_id,
                           event, trade_no)
VALUES ('ntf_b' || CAST(:r AS text), 'sandbox', now(), '{}', '{"event": "payment.succeeded"}', 'applied',
        'pay_b' || CAST(:r AS text), 'payment.succeeded', 'T' || CAST(:r AS text));
INSERT INTO notification_effects (channel, trade_no, event, notification_id)
VALUES ('sandbox', 'T' || CAST(:r AS text), 'payment.succeeded', 'ntf_b' || CAST(:r AS text));
UPDATE payments SET status = 'succeeded', fee = 59, channel_trade_no = 'T' || CAST(:r AS text),
                    succeeded_at = now(), updated_at = now()
WHERE id = 'pay_b' || CAST(:r AS text) AND status = 'pending';
UPDATE orders SET status = 'paid', paid_at = now(), updated_at = now()
WHERE id = 'ord_b' || CAST(:r AS text) AND status = 'pending_payment';
INSERT INTO entitlements (id, customer_id, product_id, order_id, line_index, granted_at)
VALUES ('ent_b' || CAST(:r AS text), 'u_' || CAST(:client_id AS text), 'prd_bench', 'ord_b' || CAST(:r AS text), 0, now());
INSERT INTO journal_entries (id, source, description, occurred_at, created_at)
VALUES ('je_b' || CAST(:r AS text), 'payment:' || 'pay_b' || CAST(:r AS text), 'payment', now(), now());
INSERT INTO postings (entry_seq, line, account_key, amount)
SELECT seq, line, account_key, amount
FROM journal_entries,
     (VALUES (0, 'channel_clearing:' || 'CNY:' || 'sandbox', 9900),
             (1, 'creator_pending:' || 'CNY:' || 'cr_bench', -6930),
             (2, 'platform_revenue:' || 'CNY', -2970)) AS p (line, account_key, amount)
WHERE id = 'je_b' || CAST(:r AS text);
UPDATE ledger_balances SET balance = balance + 9900
WHERE account_key = 'channel_clearing:' || 'CNY:' || 'sandbox' AND shard = :shard;
UPDATE ledger_balances SET balance = balance - 6930
WHERE account_key = 'creator_pending:' || 'CNY:' || 'cr_bench' AND shard = 0;
UPDATE ledger_balances SET balance = balance - 2970
WHERE account_key = 'platform_revenue:' || 'CNY' AND shard = :shard;
INSERT INTO outbox_events (id, type, object_id, data, created_at)
VALUES ('evt_b' || CAST(:r AS text), 'order.paid', 'ord_b' || CAST(:r AS text), '{}', now());
COMMIT;
