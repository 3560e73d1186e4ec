"""The whole schema, as SQLAlchemy Core tables. Alembic migrations are generated from it.

Money columns are BIGINT minor units beside a 3-letter currency; rates are exact decimal
text; times are aware UTC. Nothing here is ever deleted by the application except
expired idempotency records.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)

from tuition.store.types import DecimalText, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(40)

# --- access -----------------------------------------------------------------------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("prefix", String(24), nullable=False),
    # SHA-256 of the whole key: keys are 256-bit random, so a slow hash adds nothing.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # A restricted key's scopes, comma-separated (domain/api_scopes.py); NULL: a full key.
    Column("scopes", String(200)),
    CheckConstraint("mode IN ('test', 'live')", name="mode"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("api_key_id", ID, ForeignKey("api_keys.id"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(500), nullable=False),
    Column("state", String(12), nullable=False),
    Column("response_status", Integer),
    Column("response_body", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    # Who holds the key now (a random token per claim): the operation's commit and the
    # stored answer are fenced by it, so a run whose lease was taken over writes nothing.
    Column("holder", String(32)),
    # The object the operation created or changed, named in its own transaction
    # ('committed'), so a retry after a lost answer re-renders it.
    Column("outcome_id", String(64)),
    UniqueConstraint("api_key_id", "key", name="uq_idempotency_keys_api_key_id_key"),
    CheckConstraint("state IN ('running', 'committed', 'done')", name="state"),
)
Index("ix_idempotency_keys_expires_at", idempotency_keys.c.expires_at)

# --- catalog ----------------------------------------------------------------------------

creators = Table(
    "creators",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("default_revenue_share", DecimalText, nullable=False),
    Column("external_id", String(200), unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("id", ID, primary_key=True),
    Column("creator_id", ID, ForeignKey("creators.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(300), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("revenue_share", DecimalText, nullable=False),
    Column("status", String(12), nullable=False),
    Column("period", String(12)),
    Column("topup_credit", BigInteger),
    # A coin pack credits coins (and bonus coins, worth nothing) instead of money.
    Column("topup_coins", BigInteger),
    Column("topup_bonus_coins", BigInteger),
    # {"starts_at", "ends_at", "percent_off" | "amount_off"}: read whole with the product.
    Column("promotion", JSON),
    # {"window_days", "consumption", "max_progress", "revoke_on_partial"}; NULL = the
    # platform's default (TUITION_REFUND_POLICY). See domain/refunds.py.
    Column("refund_policy", JSON),
    Column("metadata", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "kind IN ('course', 'article', 'column', 'bundle', 'membership', 'consultation', 'topup')",
        name="kind",
    ),
    CheckConstraint("status IN ('active', 'archived')", name="status"),
)
Index("ix_products_kind_status", products.c.kind, products.c.status)

product_prices = Table(
    "product_prices",
    metadata,
    Column("product_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="positive"),
)

# Prices that differ by where the buyer pays (an iOS price list, say): an order made on
# that surface takes them over ``product_prices``.
product_surface_prices = Table(
    "product_surface_prices",
    metadata,
    Column("product_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("surface", String(32), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="positive"),
)

bundle_components = Table(
    "bundle_components",
    metadata,
    Column("bundle_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("component_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("position", Integer, nullable=False),
)

tax_rates = Table(
    "tax_rates",
    metadata,
    Column("region", String(32), primary_key=True),
    Column("rate", DecimalText, nullable=False),
    Column("inclusive", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

coupons = Table(
    "coupons",
    metadata,
    Column("id", ID, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("percent_off", DecimalText),
    Column("amount_off", JSON),
    Column("min_spend", JSON),
    Column("applies_to_products", JSON, nullable=False),
    Column("applies_to_kinds", JSON, nullable=False),
    Column("starts_at", UTCDateTime),
    Column("ends_at", UTCDateTime),
    Column("max_redemptions", Integer),
    Column("max_per_customer", Integer),
    Column("stacks_with_promotions", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
    # Counted by conditional UPDATE (times_redeemed < max_redemptions), never read-then-write.
    Column("times_redeemed", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('percent', 'amount')", name="kind"),
    CheckConstraint("times_redeemed >= 0", name="redeemed_non_negative"),
)

coupon_customer_usage = Table(
    "coupon_customer_usage",
    metadata,
    Column("coupon_id", ID, ForeignKey("coupons.id"), primary_key=True),
    Column("customer_id", String(200), primary_key=True),
    Column("times_redeemed", Integer, nullable=False),
)

coupon_redemptions = Table(
    "coupon_redemptions",
    metadata,
    Column("order_id", ID, ForeignKey("orders.id"), primary_key=True),
    Column("coupon_id", ID, ForeignKey("coupons.id"), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False),
    Column("redeemed_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime),
)

# --- orders -----------------------------------------------------------------------------

orders = Table(
    "orders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("subtotal", BigInteger, nullable=False),
    Column("discount_total", BigInteger, nullable=False),
    Column("tax_total", BigInteger, nullable=False),
    Column("surcharge", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("amount_refunded", BigInteger, nullable=False, default=0),
    Column("coupon_code", String(64)),
    Column("tax_region", String(32)),
    Column("surface", String(32), nullable=False, server_default="web"),
    # Who pays, as far as a channel needs to know: {"wechat_openid": …} (JSAPI).
    Column("payer", JSON),
    Column("pricing", JSON, nullable=False),
    Column("return_url", String(2000)),
    Column("metadata", JSON, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # A promoter's referral code the order was placed with (order_commissions: its split).
    Column("referral_code", String(64)),
    # The partner platform that sold the order (order_partner_shares: its share per line).
    Column("partner_id", ID, ForeignKey("payees.id")),
    CheckConstraint(
        "status IN ('pending_payment', 'paid', 'partially_refunded', 'refunded', "
        "'cancelled', 'expired')",
        name="status",
    ),
    CheckConstraint(
        "total >= 0 AND amount_refunded >= 0 AND amount_refunded <= total", name="amounts"
    ),
)
Index("ix_orders_customer_id_id", orders.c.customer_id, orders.c.id)
Index("ix_orders_status_expires_at", orders.c.status, orders.c.expires_at)
Index("ix_orders_created_at", orders.c.created_at)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", ID, ForeignKey("orders.id"), primary_key=True),
    Column("line_index", Integer, primary_key=True),
    Column("product_id", ID, ForeignKey("products.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("title", String(300), nullable=False),
    Column("creator_id", ID, ForeignKey("creators.id"), nullable=False),
    # The creator's share as agreed when the order was priced, for the ledger later.
    Column("revenue_share", DecimalText, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("list_amount", BigInteger, nullable=False),
    Column("promotion_discount", BigInteger, nullable=False),
    Column("coupon_discount", BigInteger, nullable=False),
    Column("tax", BigInteger, nullable=False),
    Column("surcharge", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("components", JSON, nullable=False),
    # Held by pending and succeeded refunds (a conditional UPDATE is the guard), and
    # refunded for good; 0 <= amount_refunded <= refund_reserved <= total.
    Column("refund_reserved", BigInteger, nullable=False, server_default="0"),
    Column("amount_refunded", BigInteger, nullable=False, server_default="0"),
    CheckConstraint(
        "amount_refunded >= 0 AND amount_refunded <= refund_reserved AND refund_reserved <= total",
        name="refunds",
    ),
)

entitlements = Table(
    "entitlements",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("product_id", ID, ForeignKey("products.id"), nullable=False),
    # None for a family member's App Store grant: no order, no money (services/apple.py).
    Column("order_id", ID, ForeignKey("orders.id")),
    Column("line_index", Integer, nullable=False),
    Column("source_product_id", ID, ForeignKey("products.id")),
    Column("granted_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    # Granting twice for one order line is a no-op, whoever retries.
    UniqueConstraint("order_id", "line_index", "product_id", name="uq_entitlements_grant"),
)
Index(
    "ix_entitlements_customer_id_product_id", entitlements.c.customer_id, entitlements.c.product_id
)

# --- payments ---------------------------------------------------------------------------

payments = Table(
    "payments",
    metadata,
    Column("id", ID, primary_key=True),  # also the channel's out_trade_no
    Column("order_id", ID, ForeignKey("orders.id"), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("method", String(32), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("status", String(12), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fee", BigInteger),
    Column("amount_refunded", BigInteger, nullable=False, default=0),
    # What pending and succeeded refunds hold of the amount: the over-refund guard.
    Column("refund_reserved", BigInteger, nullable=False, server_default="0"),
    Column("channel_trade_no", String(64)),
    Column("next_action", JSON),
    Column("failure_code", String(64)),
    Column("failure_message", String(500)),
    # Set when this payment succeeded for an order another payment had already paid.
    Column("duplicate_of", ID),
    # Split tender: the balance part of this channel payment (a ``wallet`` payment held
    # while this one is open, committed when it succeeds, released when it ends).
    Column("wallet_part_id", ID),
    Column("succeeded_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "status IN ('created', 'pending', 'succeeded', 'failed', 'closed')", name="status"
    ),
    CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount", name="refunded"),
    CheckConstraint(
        "refund_reserved >= amount_refunded AND refund_reserved <= amount", name="reserved"
    ),
)
Index("ix_payments_status_created_at", payments.c.status, payments.c.created_at)
Index("ix_payments_customer_id_id", payments.c.customer_id, payments.c.id)
Index("ix_payments_created_at", payments.c.created_at)
Index("ix_payments_wallet_part_id", payments.c.wallet_part_id)

refunds = Table(
    "refunds",
    metadata,
    Column("id", ID, primary_key=True),  # also the channel's out_refund_no
    Column("payment_id", ID, ForeignKey("payments.id"), nullable=False, index=True),
    Column("order_id", ID, ForeignKey("orders.id"), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False, server_default=""),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(12), nullable=False),
    Column("reason", String(64), nullable=False),
    # original (back through the payment's channel) or wallet.
    Column("destination", String(12), nullable=False, server_default="original"),
    Column("channel_refund_no", String(64)),
    Column("failure_code", String(64)),
    Column("failure_message", String(500)),
    # What the channel gave back of its fee, posted with the refund.
    Column("fee_returned", BigInteger),
    # Who asked: "api_key:key_…", "admin:<email>" or "system" (automatic refunds).
    Column("requested_by", String(254), nullable=False, server_default="system"),
    # Set when the refund rules were overridden, naming who did it.
    Column("override_by", String(254)),
    Column("retry_of", ID),
    Column("metadata", JSON),
    Column("submitted_at", UTCDateTime),
    Column("succeeded_at", UTCDateTime),
    Column("failed_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    CheckConstraint("amount > 0", name="positive"),
    CheckConstraint("destination IN ('original', 'wallet')", name="destination"),
)
Index("ix_refunds_customer_id_id", refunds.c.customer_id, refunds.c.id)
Index("ix_refunds_status_id", refunds.c.status, refunds.c.id)
Index("ix_refunds_created_at", refunds.c.created_at)
# A failed refund is retried once: a second retry (a double click) finds this taken.
Index("ix_refunds_retry_of", refunds.c.retry_of, unique=True)

# How a refund of an order is split over its lines, and each line's part over the parties
# the payment credited (creator, tax, platform): fixed when the refund is created, so the
# ledger entry posted when it succeeds takes back exactly these parts.
refund_lines = Table(
    "refund_lines",
    metadata,
    Column("refund_id", ID, ForeignKey("refunds.id"), primary_key=True),
    Column("line_index", Integer, primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("creator_id", ID, nullable=False),
    Column("creator_amount", BigInteger, nullable=False),
    Column("tax_amount", BigInteger, nullable=False),
    Column("platform_amount", BigInteger, nullable=False),
    # A top-up line's credit, taken back from the buyer's (unspent) wallet lot.
    Column("wallet_amount", BigInteger, nullable=False, server_default="0"),
    # Whether this refund ends the buyer's access to what the line bought.
    Column("revokes_access", Boolean, nullable=False),
    CheckConstraint(
        "amount > 0 AND amount = creator_amount + tax_amount + platform_amount + wallet_amount",
        name="parts",
    ),
)

# The platform's report of how much of a product a customer has consumed (0..1): the
# consumption refund rules read it.
consumption = Table(
    "consumption",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("product_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("progress", DecimalText, nullable=False),
    Column("lessons_consumed", Integer),
    Column("lessons_total", Integer),
    Column("updated_at", UTCDateTime, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", Text, nullable=False),
    Column("verdict", String(12), nullable=False),
    Column("reason", String(500)),
    Column("payment_id", ID, index=True),
    Column("refund_id", ID),
    Column("event", String(64)),
    Column("trade_no", String(64)),
    CheckConstraint("verdict IN ('applied', 'duplicate', 'ignored', 'rejected')", name="verdict"),
)
# The console's notifications log pages by arrival, newest first.
Index("ix_notifications_received_at", notifications.c.received_at)

# One row per notification that changed something: the UNIQUE key makes a redelivered
# or racing copy of the same notification a no-op, whoever commits first.
notification_effects = Table(
    "notification_effects",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("trade_no", String(64), primary_key=True),
    Column("event", String(64), primary_key=True),
    Column("notification_id", ID, nullable=False),
)

# --- wallets ----------------------------------------------------------------------------

# A customer's balance per currency: changed only by conditional UPDATEs, so it never goes
# below zero however many spends race (CHECK as the last guard).
wallet_balances = Table(
    "wallet_balances",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("balance >= 0", name="non_negative"),
)

# What a balance is made of: one lot per credit (a top-up line, a refund, an adjustment),
# spent first in, first out. ``source`` is UNIQUE: a retried top-up credits once.
wallet_lots = Table(
    "wallet_lots",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("source", String(200), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    # Coin lots only: what the coins are worth in money (0 for a bonus lot), and how much
    # of it is not yet recognised as revenue; NULL for a lot of money.
    Column("value_currency", String(3)),
    Column("value", BigInteger),
    Column("value_remaining", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('topup', 'bonus', 'refund', 'adjustment')", name="kind"),
    CheckConstraint("amount > 0 AND remaining >= 0 AND remaining <= amount", name="amounts"),
    CheckConstraint(
        "(value IS NULL AND value_remaining IS NULL AND value_currency IS NULL) OR "
        "(value >= 0 AND value_remaining >= 0 AND value_remaining <= value "
        "AND value_currency IS NOT NULL)",
        name="value",
    ),
)
Index(
    "ix_wallet_lots_customer_id_currency_remaining",
    wallet_lots.c.customer_id,
    wallet_lots.c.currency,
    wallet_lots.c.remaining,
)

# Every credit and debit with the balance after it; UNIQUE by cause, so a retried credit
# or debit is recorded once.
wallet_transactions = Table(
    "wallet_transactions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),  # credit positive, debit negative
    Column("balance_after", BigInteger, nullable=False),
    Column("cause", String(12), nullable=False),
    Column("cause_id", String(200), nullable=False),
    Column("description", String(500), nullable=False),
    # [{"lot_id", "amount"}]: the lots credited or spent.
    Column("lots", JSON, nullable=False),
    Column("created_by", String(254), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("cause", "cause_id", name="uq_wallet_transactions_cause"),
    CheckConstraint("cause IN ('topup', 'order', 'refund', 'adjustment', 'release')", name="cause"),
    CheckConstraint("amount <> 0 AND balance_after >= 0", name="amounts"),
)
Index(
    "ix_wallet_transactions_customer_id_id",
    wallet_transactions.c.customer_id,
    wallet_transactions.c.id,
)

# --- ledger -----------------------------------------------------------------------------

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("type", String(12), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("qualifier", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Balances kept in shards: a posting adds to one shard, so payments touching the same
# house account (revenue, clearing) do not queue on one row. The balance is the sum.
ledger_balances = Table(
    "ledger_balances",
    metadata,
    Column("account_key", String(300), ForeignKey("ledger_accounts.key"), primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("balance", BigInteger, nullable=False),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", ID, nullable=False, unique=True),
    # What caused the entry, e.g. "payment:pay_…"; UNIQUE so a retried posting is a no-op.
    Column("source", String(200), nullable=False, unique=True),
    Column("description", String(500), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The hash chain is sealed after commit by one sealer, in sealing order, so no
    # payment waits on a chain-head lock (see services/ledger.py).
    Column("chain_index", BigInteger, unique=True),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
)

# The admin dashboard sums the journal by day over a recent window.
Index("ix_journal_entries_occurred_at", journal_entries.c.occurred_at)

postings = Table(
    "postings",
    metadata,
    Column(
        "entry_seq",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("journal_entries.seq"),
        primary_key=True,
    ),
    # An entry may post twice to one account (clearing: +gross, -fee); line keeps both.
    Column("line", Integer, primary_key=True),
    Column("account_key", String(300), ForeignKey("ledger_accounts.key"), nullable=False),
    Column("amount", BigInteger, nullable=False),
)
Index("ix_postings_account_key", postings.c.account_key)

ledger_chain_head = Table(
    "ledger_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("chain_index", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# --- events -----------------------------------------------------------------------------

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(64), nullable=False),
    Column("object_id", ID, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("dispatched_at", UTCDateTime),
)
Index("ix_outbox_events_dispatched_at", outbox_events.c.dispatched_at)

# --- webhooks and jobs ------------------------------------------------------------------

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", ID, primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("description", String(500), nullable=False),
    # Event types this endpoint receives; ["*"] for all.
    Column("events", JSON, nullable=False),
    # Needed in clear to sign each delivery; shown to the platform once, at creation.
    Column("secret", String(100), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", ID, ForeignKey("outbox_events.id"), nullable=False),
    Column("endpoint_id", ID, ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime),
    Column("last_error", String(500)),
    Column("delivered_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # One delivery per event and endpoint, however often the relay runs.
    UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
)
Index(
    "ix_webhook_deliveries_status_next_attempt_at",
    webhook_deliveries.c.status,
    webhook_deliveries.c.next_attempt_at,
)
Index("ix_webhook_deliveries_endpoint_id", webhook_deliveries.c.endpoint_id)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "delivery_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("webhook_deliveries.id"),
        nullable=False,
        index=True,
    ),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("response_excerpt", String(500)),
    Column("error", String(500)),
)

jobs = Table(
    "jobs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(40), nullable=False),
    # e.g. "expire_order:ord_…": UNIQUE, so enqueueing the same work twice is a no-op.
    Column("key", String(200), nullable=False, unique=True),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("run_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime),
    Column("last_error", String(500)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('queued', 'done', 'failed')", name="status"),
)
Index("ix_jobs_status_run_at", jobs.c.status, jobs.c.run_at)

# --- admin console ----------------------------------------------------------------------

admin_users = Table(
    "admin_users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),  # argon2
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime),
    Column("last_login_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # owner, finance, support or viewer (domain/operators.py); operators made before
    # roles existed could do everything, so they are owners.
    Column("role", String(20), nullable=False, server_default="owner"),
    # The TOTP secret, encrypted with the platform's signing key (services/two_factor.py);
    # two-factor is on once a first code confirmed it.
    Column("totp_secret", String(200)),
    Column("totp_enabled_at", UTCDateTime),
    # The last TOTP time step accepted: a code is never accepted twice (a conditional
    # UPDATE moves it forward only).
    Column("totp_last_step", BigInteger),
)

admin_sessions = Table(
    "admin_sessions",
    metadata,
    # SHA-256 of the session cookie's random token: a stolen table opens no session.
    Column("token_hash", String(64), primary_key=True),
    Column("admin_id", ID, ForeignKey("admin_users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # A session whose password was right but whose second factor is still to be given
    # (or enrolled, when two-factor is required): it opens nothing else.
    Column("second_factor_pending", Boolean, nullable=False, server_default=false()),
)

# Sign-in attempts per IP, per account and per (IP, account), counted before a password
# is checked (services/admin_throttle.py). Keys are SHA-256 hashes: no email or address
# is kept in clear; ``subject`` (the email's hash) lets a password reset lift its locks.
admin_login_throttles = Table(
    "admin_login_throttles",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("subject", String(64), index=True),
    Column("attempts", Integer, nullable=False),
    Column("window_ends", UTCDateTime, nullable=False, index=True),
)

# --- memberships and subscriptions ------------------------------------------------------

# What a membership unlocks besides itself (domain/access_scope.py); a listed set lives in
# membership_scope_products, so products added to it later are just more rows.
membership_scopes = Table(
    "membership_scopes",
    metadata,
    Column("membership_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("everything", Boolean, nullable=False),
    Column("creator_ids", JSON, nullable=False),
    Column("kinds", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

membership_scope_products = Table(
    "membership_scope_products",
    metadata,
    Column("membership_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("product_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
)

member_prices = Table(
    "member_prices",
    metadata,
    Column("product_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("membership_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("percent_off", DecimalText),
    Column("amounts", JSON),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per customer and membership, taken FOR UPDATE (by an upsert) while a paid
# order extends the membership: two purchases paid at once extend one after the other,
# each from the end the other made, so no paid period is lost.
membership_locks = Table(
    "membership_locks",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("membership_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("touched_at", UTCDateTime, nullable=False),
)

# How a membership is sold as a subscription: a first-period price per currency (首月特惠).
subscription_plans = Table(
    "subscription_plans",
    metadata,
    Column("membership_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("first_period_prices", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("product_id", ID, ForeignKey("products.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(12), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("method", String(32), nullable=False),
    Column("auto_renew", Boolean, nullable=False),
    Column("cancel_at_period_end", Boolean, nullable=False),
    Column("trial_ends_at", UTCDateTime),
    Column("current_period_start", UTCDateTime),
    Column("current_period_end", UTCDateTime),
    # The index of the period now paid for (0 before the first payment).
    Column("period_index", Integer, nullable=False),
    # Left over by a downgrade; taken off the next renewal.
    Column("credit_balance", BigInteger, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("canceled_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The promoter's referral code and the partner platform the subscription was sold
    # with: each of its orders (the first, every renewal) is placed with them.
    Column("referral_code", String(64)),
    Column("partner_id", ID, ForeignKey("payees.id")),
    CheckConstraint(
        "status IN ('trialing', 'active', 'past_due', 'canceled', 'expired')", name="status"
    ),
    CheckConstraint("credit_balance >= 0", name="credit_non_negative"),
)
Index("ix_subscriptions_customer_id_id", subscriptions.c.customer_id, subscriptions.c.id)
# One live subscription per customer and membership: a second would charge twice.
Index(
    "uq_subscriptions_live",
    subscriptions.c.customer_id,
    subscriptions.c.product_id,
    unique=True,
    postgresql_where=subscriptions.c.status.in_(["trialing", "active", "past_due"]),
    sqlite_where=subscriptions.c.status.in_(["trialing", "active", "past_due"]),
)
Index(
    "ix_subscriptions_status_current_period_end",
    subscriptions.c.status,
    subscriptions.c.current_period_end,
)

# One row per order a subscription raises. UNIQUE (subscription, period, kind) is what
# makes a renewal exactly-once: a job run twice, two workers or a restart after a crash
# all find the same row and the same order.
subscription_orders = Table(
    "subscription_orders",
    metadata,
    Column("order_id", ID, ForeignKey("orders.id"), primary_key=True),
    Column("subscription_id", ID, ForeignKey("subscriptions.id"), nullable=False),
    Column("period_index", Integer, nullable=False),
    Column("kind", String(12), nullable=False),
    Column("product_id", ID, ForeignKey("products.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    Column("period_start", UTCDateTime),
    Column("period_end", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime),
    UniqueConstraint(
        "subscription_id", "period_index", "kind", name="uq_subscription_orders_period"
    ),
    CheckConstraint("kind IN ('first', 'renewal', 'change')", name="kind"),
    CheckConstraint("status IN ('pending', 'paid', 'failed', 'void')", name="status"),
)

# --- earnings ---------------------------------------------------------------------------

# Whoever is owed a share: a creator (the payee id is the creator's id, the qualifier of
# its ledger accounts), a promoter or a partner platform. The payout account is kept for
# the transfer and shown masked everywhere (domain/earnings.mask_account).
payees = Table(
    "payees",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(12), nullable=False),
    Column("name", String(200), nullable=False),
    Column("tax_profile", String(12), nullable=False),
    Column("payout_method", String(12)),
    Column("payout_account", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('creator', 'promoter', 'partner')", name="kind"),
    CheckConstraint("tax_profile IN ('individual', 'company')", name="tax_profile"),
    CheckConstraint(
        "payout_method IS NULL OR payout_method IN ('alipay', 'wechatpay', 'bank')",
        name="payout_method",
    ),
)

# One hold per paid payment: the row refunds and the release job both update first, so
# a refund sees either the hold still pending (and takes back from pending) or released
# (and takes back from available), never a half-moved state.
earning_holds = Table(
    "earning_holds",
    metadata,
    Column("payment_id", ID, ForeignKey("payments.id"), primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id"), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("status", String(12), nullable=False),
    Column("paid_at", UTCDateTime, nullable=False),
    Column("release_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime),
    Column("clawbacks", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('pending', 'released')", name="status"),
)
Index("ix_earning_holds_status_release_at", earning_holds.c.status, earning_holds.c.release_at)

# One earning per order line, payee and role (UNIQUE): a payment settled twice records
# nothing twice. ``clawed_pending`` / ``clawed_available`` are what refunds took back
# before and after the hold ended; 0 <= clawed_pending + clawed_available <= amount.
earnings = Table(
    "earnings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("payee_id", ID, ForeignKey("payees.id"), nullable=False),
    Column("role", String(12), nullable=False),
    Column("payment_id", ID, ForeignKey("earning_holds.payment_id"), nullable=False),
    Column("order_id", ID, ForeignKey("orders.id"), nullable=False),
    Column("line_index", Integer, nullable=False),
    Column("product_id", ID, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("base_amount", BigInteger, nullable=False),
    Column("rate", DecimalText, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("clawed_pending", BigInteger, nullable=False, server_default="0"),
    Column("clawed_available", BigInteger, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "payment_id", "line_index", "payee_id", "role", name="uq_earnings_payment_line_payee"
    ),
    CheckConstraint("role IN ('creator', 'promoter_l1', 'promoter_l2', 'partner')", name="role"),
    CheckConstraint(
        "amount > 0 AND clawed_pending >= 0 AND clawed_available >= 0 "
        "AND clawed_pending + clawed_available <= amount",
        name="amounts",
    ),
)
Index("ix_earnings_payee_id_id", earnings.c.payee_id, earnings.c.id)

# --- reconciliation (docs/reconciliation.md) --------------------------------------------

# One row per run of one channel account's business day; a rerun is a new attempt.
reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("account", String(64), nullable=False),
    Column("business_day", String(10), nullable=False),  # YYYY-MM-DD, platform time zone
    Column("attempt", Integer, nullable=False),
    Column("bill_digest", String(64), nullable=False),
    Column("status", String(12), nullable=False),
    Column("report", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "channel", "account", "business_day", "attempt", name="uq_reconciliation_runs_day"
    ),
    CheckConstraint("status IN ('clean', 'differences')", name="status"),
)
Index(
    "ix_reconciliation_runs_business_day",
    reconciliation_runs.c.business_day,
    reconciliation_runs.c.channel,
)

# A difference between a bill and our books; the same difference found again by a rerun
# is the same case (UNIQUE per channel account and key), never a second one.
reconciliation_cases = Table(
    "reconciliation_cases",
    metadata,
    Column("id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("reconciliation_runs.id"), nullable=False, index=True),
    Column("last_run_id", ID, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("account", String(64), nullable=False),
    Column("business_day", String(10), nullable=False),
    Column("case_key", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("subject", String(10), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("payment_id", ID),
    Column("refund_id", ID),
    Column("currency", String(3), nullable=False),
    Column("amount_ours", BigInteger),
    Column("amount_gateway", BigInteger),
    Column("fee_ours", BigInteger),
    Column("fee_gateway", BigInteger),
    Column("detail", String(500), nullable=False),
    Column("status", String(10), nullable=False),
    Column("resolution", String(40)),
    Column("resolved_by", String(200)),
    Column("note", String(500)),
    Column("journal_source", String(200)),
    Column("resolved_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("channel", "account", "case_key", name="uq_reconciliation_cases_key"),
    CheckConstraint("status IN ('open', 'resolved', 'accepted')", name="status"),
)
Index(
    "ix_reconciliation_cases_business_day",
    reconciliation_cases.c.business_day,
    reconciliation_cases.c.status,
)

# What a payee may be paid now, per currency: released earnings less clawbacks after the
# hold and payouts. Changed only by UPDATE in the same transaction as its ledger entry;
# a payout takes from it by a conditional UPDATE (``available >= :amount``), while a
# clawback may take it below zero (carried and netted against later earnings).
payee_balances = Table(
    "payee_balances",
    metadata,
    Column("payee_id", ID, ForeignKey("payees.id"), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A payout's id is the transfer's out_biz_no at the channel: asked twice, it is one
# transfer. ``amount`` is gross; ``tax_withheld`` went to tax payable; the payee gets net.
payouts = Table(
    "payouts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("payee_id", ID, ForeignKey("payees.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("tax_withheld", BigInteger, nullable=False),
    Column("tax_month", String(7), nullable=False),
    Column("method", String(12), nullable=False),
    Column("destination", String(200)),  # masked
    Column("status", String(12), nullable=False),
    Column("reference", String(200)),
    Column("failure_code", String(64)),
    Column("failure_message", String(500)),
    Column("requested_by", String(254), nullable=False),
    # A scheduled run's payout: "{payee}:{currency}:{period}", so a run repeated, or two
    # runs at once, pay a payee once per period.
    Column("run_key", String(80), unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime),
    Column("failed_at", UTCDateTime),
    # WeChat Pay's package_info while a transfer waits for the payee to confirm it.
    Column("transfer_package", String(1000)),
    # The account the money goes to, as it was when the payout was made (a run's: as
    # approved); never shown unmasked. NULL for payouts made before it was kept.
    Column("payout_account", String(200)),
    CheckConstraint(
        "status IN ('pending', 'processing', 'paid', 'failed', 'returned')", name="status"
    ),
    CheckConstraint("method IN ('alipay', 'wechatpay', 'bank')", name="method"),
    CheckConstraint("amount > 0 AND tax_withheld >= 0 AND tax_withheld <= amount", name="amounts"),
)
Index("ix_payouts_payee_id_id", payouts.c.payee_id, payouts.c.id)
Index("ix_payouts_status", payouts.c.status)
Index("ix_payouts_payee_id_tax_month", payouts.c.payee_id, payouts.c.tax_month)

# --- the buyer's records: hidden history entries, invoice requests ----------------------

# An entry of a buyer's history (an order, payment, refund or wallet transaction, by its
# id) hidden from the buyer's own feed; nothing else changes. Unhiding keeps the row
# (hidden false), so who hid and who unhid it, and when, stay on record.
history_hidden = Table(
    "history_hidden",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("entry_id", ID, primary_key=True),
    Column("kind", String(24), nullable=False),
    Column("hidden", Boolean, nullable=False),
    Column("hidden_by", String(254), nullable=False),
    Column("hidden_at", UTCDateTime, nullable=False),
    Column("unhidden_by", String(254)),
    Column("unhidden_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A buyer's request for an invoice (发票) of a paid order, and what finance did with it.
# ``open_order_id`` is the order id while the request is requested or issued and NULL once
# rejected: UNIQUE, so an order has at most one live request however many arrive at once.
invoice_requests = Table(
    "invoice_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, ForeignKey("orders.id"), nullable=False, index=True),
    Column("open_order_id", ID, unique=True),
    Column("customer_id", String(200), nullable=False),
    Column("type", String(10), nullable=False),
    Column("title", String(200), nullable=False),
    Column("tax_id", String(18)),
    Column("email", String(254), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),  # the order's net paid when requested
    Column("status", String(10), nullable=False),
    Column("invoice_number", String(40)),
    Column("issued_on", String(10)),  # the invoice's date, YYYY-MM-DD
    Column("issued_amount", BigInteger),  # the order's net paid when issued
    Column("pdf", LargeBinary),
    Column("pdf_sha256", String(64)),
    Column("reject_reason", String(500)),
    Column("decided_by", String(254)),
    Column("decided_at", UTCDateTime),
    Column("requested_by", String(254), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("type IN ('personal', 'company')", name="type"),
    CheckConstraint("status IN ('requested', 'issued', 'rejected')", name="status"),
    CheckConstraint("amount > 0", name="amount"),
)
Index(
    "ix_invoice_requests_status_created_at",
    invoice_requests.c.status,
    invoice_requests.c.created_at,
)

# App Store transactions credited or granted (channels/apple, services/apple.py): the
# transaction id is the primary key, so one transaction pays one order, whoever posts
# it how often. ``status``: received (claimed), credited (paid through the one paid
# path; a family-shared one: its grant made, with no order), refunded (Apple's REFUND
# booked), revoked (family-shared access ended).
apple_transactions = Table(
    "apple_transactions",
    metadata,
    Column("transaction_id", String(64), primary_key=True),
    Column("original_transaction_id", String(64), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False),
    Column("app_store_product_id", String(200), nullable=False),
    Column("product_id", ID, nullable=False),
    Column("order_id", ID, ForeignKey("orders.id"), unique=True),
    Column("payment_id", ID),
    Column("refund_id", ID),
    Column("family_shared", Boolean, nullable=False),
    Column("status", String(10), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # A family-shared transaction's grant (no order, no payment).
    Column("entitlement_id", ID, unique=True),
    CheckConstraint("status IN ('received', 'credited', 'refunded', 'revoked')", name="status"),
)

# What a wallet owes after a refund that could not be refused (Apple's) took back a
# top-up whose coins were spent: the balance is shown as ``balance - amount`` and the
# shortfall is flagged for an operator. One per refunded top-up line (``cause_id``).
wallet_shortfalls = Table(
    "wallet_shortfalls",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("value_currency", String(3), nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("cause_id", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="positive"),
    CheckConstraint("value >= 0", name="value_non_negative"),
)

# Money finance saw arrive for a bank transfer payment (services/bank_transfers.py), by
# hand or from a bank statement. ``bank_serial`` is the bank's own number for the
# transfer (流水号), UNIQUE: a statement imported twice, or a form posted twice, counts
# each transfer once. A payment is paid when what arrived for it covers its amount.
bank_transfer_receipts = Table(
    "bank_transfer_receipts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("payment_id", ID, ForeignKey("payments.id"), nullable=False, index=True),
    Column("bank_serial", String(100), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("received_on", String(10), nullable=False),  # YYYY-MM-DD, the bank's day
    Column("payer", String(200), nullable=False),
    Column("source", String(10), nullable=False),
    Column("recorded_by", String(254), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="positive"),
    CheckConstraint("source IN ('manual', 'statement')", name="source"),
)

# --- payout runs: proposed, reviewed and approved before money moves -------------------

# One run per schedule and period (UNIQUE): proposing again, by the worker's schedule or
# by hand, finds the run already proposed. Its items are what each payee would get; the
# approval (who, when) is a compare-and-set from proposed, and only then are payouts made.
payout_runs = Table(
    "payout_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("schedule", String(8), nullable=False),
    Column("period", String(10), nullable=False),
    Column("status", String(10), nullable=False),
    Column("proposed_by", String(254), nullable=False),
    Column("approved_by", String(254)),
    Column("approved_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("schedule", "period"),
    CheckConstraint("schedule IN ('weekly', 'monthly')", name="schedule"),
    CheckConstraint("status IN ('proposed', 'approved')", name="status"),
)

# What a run pays one payee in one currency: the amount proposed (all it had available),
# the tax it would withhold then, and, once approved, the payout made for it (a failed
# one retried is replaced by its retry).
payout_run_items = Table(
    "payout_run_items",
    metadata,
    Column("run_id", ID, ForeignKey("payout_runs.id"), primary_key=True),
    Column("payee_id", ID, ForeignKey("payees.id"), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("tax_estimate", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),
    Column("reason", String(500)),
    Column("payout_id", ID, ForeignKey("payouts.id")),
    Column("updated_at", UTCDateTime, nullable=False),
    # The payee's payout details when the run was approved: the item pays there, whatever
    # the payee's details say later.
    Column("payout_method", String(12)),
    Column("payout_account", String(200)),
    CheckConstraint("status IN ('proposed', 'created', 'skipped')", name="status"),
    CheckConstraint("amount > 0 AND tax_estimate >= 0", name="amounts"),
)

# --- debit agreements: renewals charged without the buyer (周期扣款 / 委托代扣) -------------

# A buyer's agreement with a channel letting the merchant debit them each period. The
# id is our agreement number at the gateway (external_agreement_no / out_contract_code);
# ``agreement_no`` is the gateway's, known once signed. Status moves pending → active →
# ended by compare-and-set; ``ended`` is terminal (a new agreement is signed instead).
agreements = Table(
    "agreements",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", String(200), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("subscription_id", ID, ForeignKey("subscriptions.id")),
    Column("status", String(10), nullable=False),
    Column("agreement_no", String(64)),
    Column("signed_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("end_reason", String(40)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("channel", "agreement_no", name="uq_agreements_channel_agreement_no"),
    CheckConstraint("status IN ('pending', 'active', 'ended')", name="status"),
)
Index("ix_agreements_subscription_id", agreements.c.subscription_id)

# One debit of an agreement for one attempt at a renewal order: the row is written
# before the gateway is called and only its writer calls it, so however many workers
# run the renewal pass an attempt charges once; the payment id is the gateway's trade
# number, so a repeat after a lost answer is the same trade.
agreement_charges = Table(
    "agreement_charges",
    metadata,
    Column("order_id", ID, ForeignKey("orders.id"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("agreement_id", ID, ForeignKey("agreements.id"), nullable=False),
    Column("payment_id", ID, nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# --- exchange rates ---------------------------------------------------------------------

# Every rate ever quoted, never updated: ``1 base = rate quote`` from ``as_of`` on. The
# rate at a moment is the row of the pair with the latest ``as_of`` not after it (ties:
# the later recorded). An order records the row it was priced with (docs/fx.md).
fx_rates = Table(
    "fx_rates",
    metadata,
    Column("id", ID, primary_key=True),
    Column("base", String(3), nullable=False),
    Column("quote", String(3), nullable=False),
    Column("rate", DecimalText, nullable=False),
    Column("source", String(100), nullable=False),
    Column("as_of", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("base <> quote", name="pair"),
)
Index("ix_fx_rates_pair_as_of", fx_rates.c.base, fx_rates.c.quote, fx_rates.c.as_of)

# --- risk control -----------------------------------------------------------------------

# Rules as data (docs/risk.md): ``kind`` says how ``params`` are read; ``stages`` when the
# rule runs (order, payment, refund); a triggered rule adds ``score`` and forces at least
# ``action`` (review or block; NULL: the score alone decides).
risk_rules = Table(
    "risk_rules",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("stages", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("score", DecimalText, nullable=False),
    Column("action", String(8)),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("action IS NULL OR action IN ('review', 'block')", name="action"),
)

# Velocity counters: one row per rule, subject (``customer:u_1``, ``ip:1.2.3.4``) and
# fixed window; counted by ``INSERT … ON CONFLICT DO UPDATE SET count = count + 1
# RETURNING count``, so concurrent attempts each see their own exact number.
risk_counters = Table(
    "risk_counters",
    metadata,
    Column("rule_id", ID, primary_key=True),
    Column("subject", String(300), primary_key=True),
    Column("window_start", UTCDateTime, primary_key=True),
    Column("count", Integer, nullable=False),
)

# Every allow or review decision, with its reasons, on the order (and payment or refund)
# it was made for. Blocked attempts write nothing of the kind: see risk_attempts.
risk_decisions = Table(
    "risk_decisions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("stage", String(8), nullable=False),
    Column("order_id", ID, nullable=False, index=True),
    Column("payment_id", ID),
    Column("customer_id", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("score", DecimalText, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("client", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("stage IN ('order', 'payment', 'refund')", name="stage"),
    CheckConstraint("decision IN ('allow', 'review')", name="decision"),
)
Index("ix_risk_decisions_created_at", risk_decisions.c.created_at)

# A blocked attempt, for audit: written in its own transaction after the attempt's own
# work was rolled back, so a block leaves this row and nothing else.
risk_attempts = Table(
    "risk_attempts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("stage", String(8), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("order_id", ID),
    Column("amount", BigInteger),
    Column("currency", String(3)),
    Column("score", DecimalText, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("client", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_risk_attempts_created_at", risk_attempts.c.created_at)

# The review queue. ``open_order_id`` is the order id while the review is open and NULL
# once decided: UNIQUE, so an order has at most one open review.
risk_reviews = Table(
    "risk_reviews",
    metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, nullable=False, index=True),
    Column("open_order_id", ID, unique=True),
    Column("decision_id", ID, nullable=False),
    Column("stage", String(8), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("status", String(10), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("decided_by", String(254)),
    Column("decided_at", UTCDateTime),
    Column("note", String(500)),
    Column("refund_id", ID),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("status IN ('open', 'approved', 'rejected')", name="status"),
)
Index("ix_risk_reviews_status_created_at", risk_reviews.c.status, risk_reviews.c.created_at)

# --- channel choice ---------------------------------------------------------------------

# A circuit breaker per channel: consecutive failed or timed-out calls, counted by one
# UPDATE each; at the threshold the channel is skipped until ``opened_until`` (a
# cool-down), then tried again: a success closes it, a failure opens it again.
channel_breakers = Table(
    "channel_breakers",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("opened_until", UTCDateTime),
    Column("last_failure", String(200)),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One-time recovery codes of an operator's two-factor sign-in: SHA-256 of each code; a
# used code is spent by a conditional UPDATE, so it works once.
admin_recovery_codes = Table(
    "admin_recovery_codes",
    metadata,
    Column("admin_id", ID, ForeignKey("admin_users.id"), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
)

# Console-wide settings an owner changes on the operators page (e.g. two-factor
# required for everyone); each change is audited.
console_settings = Table(
    "console_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(500), nullable=False),
    Column("updated_by", String(254), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The audit trail: every change made through the console, the CLI or the API, written in
# the change's own transaction, append-only, and hash-chained like the ledger (sealed
# after commit in ``seq`` order; services/audit.py).
audit_events = Table(
    "audit_events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", ID, nullable=False, unique=True),
    Column("occurred_at", UTCDateTime, nullable=False, index=True),
    Column("actor_kind", String(16), nullable=False),  # operator, api_key, cli
    Column("actor", String(254), nullable=False, index=True),
    Column("action", String(64), nullable=False, index=True),
    Column("subject", String(254), nullable=False),
    Column("before", Text),  # canonical JSON, for settings and roles
    Column("after", Text),
    Column("ip", String(64)),
    Column("request_id", String(64)),
    Column("chain_index", BigInteger, unique=True),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
)

audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("chain_index", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# --- promoters (分销): referral codes, two levels, commissions per product -------------

# A promoter is a payee (kind promoter) with a referral code; ``recruited_by`` is the
# promoter who recruited it, the level 2 of the orders it refers. ``customer_id`` is the
# promoter's own buyer id on the platform, if any: it cannot refer its own orders.
promoters = Table(
    "promoters",
    metadata,
    Column("payee_id", ID, ForeignKey("payees.id"), primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("recruited_by", ID, ForeignKey("promoters.payee_id")),
    Column("customer_id", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_promoters_recruited_by", promoters.c.recruited_by)

# A product's promoter commissions: level-1 and level-2 rates of the line (net of tax)
# and whose share pays them (the platform's or the creator's).
product_commissions = Table(
    "product_commissions",
    metadata,
    Column("product_id", ID, ForeignKey("products.id"), primary_key=True),
    Column("level1", DecimalText, nullable=False),
    Column("level2", DecimalText, nullable=False),
    Column("bearer", String(12), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("bearer IN ('platform', 'creator')", name="bearer"),
)

# How a referred order's line is split, fixed when the order is placed (as the line's
# revenue share is): the creator's part and each promoter's commission, by largest
# remainder (domain/commissions.py). The payment's entry and its earnings post exactly
# these amounts; refunds take them back pro rata.
order_commissions = Table(
    "order_commissions",
    metadata,
    Column("order_id", ID, ForeignKey("orders.id"), primary_key=True),
    Column("line_index", Integer, primary_key=True),
    Column("referral_code", String(64), nullable=False),
    Column("bearer", String(12), nullable=False),
    Column("creator_amount", BigInteger, nullable=False),
    Column("level1_id", ID, ForeignKey("payees.id"), nullable=False),
    Column("level1_rate", DecimalText, nullable=False),
    Column("level1_amount", BigInteger, nullable=False),
    Column("level2_id", ID, ForeignKey("payees.id")),
    Column("level2_rate", DecimalText, nullable=False),
    Column("level2_amount", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "creator_amount >= 0 AND level1_amount >= 0 AND level2_amount >= 0 "
        "AND (level2_id IS NOT NULL OR level2_amount = 0)",
        name="amounts",
    ),
)
Index("ix_order_commissions_level1_id", order_commissions.c.level1_id)

# --- partner platforms (跨平台结算) -------------------------------------------------------

# A partner platform is a payee (kind partner) with its agreement: the share of a sale
# it is owed and the currency it is settled in, at a recorded exchange rate.
partners = Table(
    "partners",
    metadata,
    Column("payee_id", ID, ForeignKey("payees.id"), primary_key=True),
    Column("share", DecimalText, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# A partner-sold order's partner share of each line, fixed when the order is placed (in
# the order's currency, out of the platform's part).
order_partner_shares = Table(
    "order_partner_shares",
    metadata,
    Column("order_id", ID, ForeignKey("orders.id"), primary_key=True),
    Column("line_index", Integer, primary_key=True),
    Column("partner_id", ID, ForeignKey("payees.id"), nullable=False),
    Column("rate", DecimalText, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount >= 0", name="amount"),
)

# A partner's earning settled in its own currency when its hold ended: the amount
# released in the sale's currency, what it became at the recorded rate (rate, where it
# came from, the time it is for), and what refunds took back of each since.
partner_settlements = Table(
    "partner_settlements",
    metadata,
    Column("earning_id", ID, ForeignKey("earnings.id"), primary_key=True),
    Column("payment_id", ID, nullable=False),
    Column("payee_id", ID, ForeignKey("payees.id"), nullable=False),
    Column("from_currency", String(3), nullable=False),
    Column("from_amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("clawed_from", BigInteger, nullable=False, default=0),
    Column("clawed", BigInteger, nullable=False, default=0),
    Column("rate", DecimalText, nullable=False),
    Column("rate_source", String(200), nullable=False),
    Column("rate_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "from_amount >= 0 AND amount >= 0 AND clawed_from >= 0 AND clawed_from <= from_amount "
        "AND clawed >= 0 AND clawed <= amount",
        name="amounts",
    ),
)
Index("ix_partner_settlements_payment_id", partner_settlements.c.payment_id)


# The console's search in any case (store/console_lists.py, migration 0025): lower() of
# each column it reads; a prefix search (the start of a customer id or a name) needs
# text_pattern_ops on PostgreSQL, whatever the database's collation.
def _lowered(table: Table, column: str, *, prefix: bool) -> Index:
    label = f"{column}_lower"
    ops = {label: "text_pattern_ops"} if prefix else {}
    return Index(
        f"ix_{table.name}_{column}_lower",
        func.lower(table.c[column]).label(label),
        postgresql_ops=ops,
    )


for _table, _column, _prefix in (
    (orders, "customer_id", True),
    (payments, "customer_id", True),
    (payments, "channel_trade_no", False),
    (refunds, "customer_id", True),
    (refunds, "channel_refund_no", False),
    (wallet_balances, "customer_id", True),
    (subscriptions, "customer_id", True),
    (agreements, "agreement_no", False),
    (invoice_requests, "customer_id", True),
    (invoice_requests, "invoice_number", False),
    (payees, "name", True),
):
    _lowered(_table, _column, prefix=_prefix)
