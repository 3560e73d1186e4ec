-- What bench/sql/flow_limit.sql needs to exist: one creator, one product, and the ledger
-- accounts a sandbox payment posts to (16 balance shards for the two house accounts, as
-- store/ledger.py spreads them). Run once on a freshly migrated database.
INSERT INTO creators (id, name, default_revenue_share, created_at, updated_at)
VALUES ('cr_bench', 'Bench', '0.7', now(), now());
INSERT INTO products (id, creator_id, kind, title, description, revenue_share, status,
                      metadata, created_at, updated_at)
VALUES ('prd_bench', 'cr_bench', 'course', 'Bench course', '', '0.7', 'active', '{}',
        now(), now());
INSERT INTO ledger_accounts (key, kind, type, currency, qualifier, created_at) VALUES
  ('channel_clearing:CNY:sandbox', 'channel_clearing', 'asset', 'CNY', 'sandbox', now()),
  ('platform_revenue:CNY', 'platform_revenue', 'revenue', 'CNY', '', now()),
  ('creator_pending:CNY:cr_bench', 'creator_pending', 'liability', 'CNY', 'cr_bench', now());
INSERT INTO ledger_balances (account_key, shard, balance)
SELECT key, shard, 0
FROM ledger_accounts, generate_series(0, 15) AS shard
WHERE key IN ('channel_clearing:CNY:sandbox', 'platform_revenue:CNY');
INSERT INTO ledger_balances (account_key, shard, balance)
VALUES ('creator_pending:CNY:cr_bench', 0, 0);
