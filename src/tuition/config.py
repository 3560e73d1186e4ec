"""Settings, read once from ``TUITION_*`` environment variables (and ``.env``)."""

from __future__ import annotations

import secrets
from datetime import tzinfo
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tuition.domain.coins import CoinUnit, SpendOrder
from tuition.domain.errors import ValidationFailed
from tuition.domain.modes import Mode
from tuition.domain.refunds import RefundPolicy, parse_policy
from tuition.domain.risk import RiskPolicy

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# Where test mode keeps its data on PostgreSQL when no URL of its own is set.
TEST_MODE_SCHEMA = "tuition_test"
# The settings that configure a channel, which test mode may set apart from live.
CHANNEL_SETTING_PREFIXES = (
    "alipay_",
    "wechatpay_",
    "unionpay_",
    "sandbox_",
    "apple_",
    "bank_transfer_",
)


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TUITION_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite+aiosqlite:///./tuition.db"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    order_ttl_seconds: int = Field(default=15 * 60, ge=60, le=7 * 24 * 3600)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Request bodies: refused with 413 over these sizes (notifications come unauthenticated,
    # so theirs is small), and with 408 when one has not fully arrived in time.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_notify_body_bytes: int = Field(default=64 * 1024, ge=1024)
    body_timeout_seconds: float = Field(default=30, gt=0)
    # What each channel charges, as a fraction of the amount (for fees and surcharge mode).
    channel_fee_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "sandbox": Decimal("0.006"),
            "alipay": Decimal("0.006"),
            "wechatpay": Decimal("0.006"),
        }
    )
    # The refund rules of every product that sets none of its own (docs/refunds.md), as
    # JSON: {"window_days": 7, "consumption": null | "limit" | "prorate",
    # "max_progress": "0.3", "revoke_on_partial": false}.
    refund_policy: dict[str, Any] = Field(default_factory=lambda: {"window_days": 7})
    # `tuition payouts run` pays each payee once per period of this schedule (docs/payouts.md);
    # no payout is made below the minimum (minor units).
    payout_schedule: Literal["weekly", "monthly"] = "monthly"
    payout_minimum: int = Field(default=100, ge=1)
    # What each channel does with its fee on a refund: {"alipay": "kept"}; a channel not
    # named returns it pro rata, as Alipay and WeChat Pay do (docs/channels.md).
    # The platform's virtual coin (docs/wallet.md): {"code", "name", "symbol", "decimals",
    # "currency"}; null turns coins off. Spent in ``coin_spend_order``.
    coins: dict[str, Any] | None = Field(
        default_factory=lambda: {"code": "XCN", "name": "coins", "decimals": 0, "currency": "CNY"}
    )
    coin_spend_order: SpendOrder = SpendOrder.FIFO
    refund_fee_policies: dict[str, Literal["pro_rata", "kept"]] = Field(default_factory=dict)
    # Subscriptions (docs/subscriptions.md): renewal orders are made this many days before
    # a period ends; a failed renewal is retried after these days (from the first
    # failure); a past-due subscriber keeps access this many days after the period end.
    subscription_renewal_lead_days: int = Field(default=3, ge=0, le=28)
    subscription_retry_days: list[int] = Field(default_factory=lambda: [1, 3, 7])
    subscription_grace_days: int = Field(default=7, ge=0, le=60)

    # Signs checkout links and admin cookies. Set it in production; when empty, one is
    # made once and kept in secret_key_file so every local process agrees.
    secret_key: str = Field(default="", repr=False)
    secret_key_file: str = ".tuition-secret-key"
    admin_session_hours: float = Field(default=12, gt=0)
    # Channels enabled in live mode, in checkout order; the sandbox is never live.
    channels: list[str] = Field(default_factory=lambda: ["sandbox"])
    # Test mode (docs/api.md "Test and live modes"): its own store and its own channels.
    # The store defaults to a sibling SQLite file (tuition.db -> tuition.test.db) or, on
    # PostgreSQL, the schema ``tuition_test`` of the same database. Test mode's channels
    # default to the sandbox (and in simulator mode every channel the simulator plays);
    # each is configured by the live settings with ``test_channel_settings`` laid over
    # them, e.g. {"alipay_gateway_url": "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
    # "alipay_app_id": "9021000000000000", ...}.
    test_mode_database_url: str = ""
    # Which mode's data the admin console shows until an operator switches (docs/admin.md).
    console_mode: Mode = "live"
    test_channels: list[str] | None = None
    test_channel_settings: dict[str, Any] = Field(default_factory=dict, repr=False)
    # Demo and test mode: serve the gateway simulator at /simulator and point the
    # sandbox channel at it.
    simulator: bool = False
    simulator_key_file: str = ".tuition-simulator-key.pem"
    sandbox_url: str = ""  # default: <public url>/simulator
    sandbox_app_id: str = "sandbox_app"
    sandbox_secret: str = Field(default="sandbox_secret", repr=False)
    embedded_worker: bool | None = None  # default: on for SQLite, off for PostgreSQL
    # A claimed job or delivery returns to the pool this long after its worker went silent.
    worker_lease_seconds: float = Field(default=60, gt=0)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    # Payments still open this long after creation are queried (lost notifications).
    recover_after_seconds: float = Field(default=60, ge=0)
    # Webhooks go to public addresses only; these hosts (exact names or IPs) are exempt,
    # for local development. See docs/webhooks.md.
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    # Ledger anchors (docs/operations.md): where signed chain heads are written, the
    # signing key (an Ed25519 private key PEM, or any other bytes for HMAC-SHA256), and
    # an optional URL each anchor is also POSTed to. Empty dir: no daily anchor.
    ledger_anchor_dir: str = ""
    ledger_anchor_key_file: str = ""
    ledger_anchor_key: str = Field(default="", repr=False)  # HMAC key, instead of a file
    ledger_anchor_url: str = ""

    # Alipay open platform, public-key mode (RSA2); see docs/channels.md. Key files hold
    # PEM (PKCS#8 or PKCS#1) or the bare base64 body Alipay's key tool prints.
    alipay_app_id: str = ""
    alipay_private_key_file: str = ""  # the app's private key
    alipay_public_key_file: str = ""  # Alipay's public key (not the app's own)
    alipay_gateway_url: str = "https://openapi.alipay.com/gateway.do"
    # WeChat Pay API v3, directly connected merchant.
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    wechatpay_private_key_file: str = ""  # the merchant API certificate's private key
    wechatpay_serial_no: str = ""  # that certificate's serial number
    wechatpay_apiv3_key: str = Field(default="", repr=False)
    wechatpay_public_key_file: str = ""  # the WeChat Pay public key ...
    wechatpay_public_key_id: str = ""  # ... and its id, PUB_KEY_ID_...
    wechatpay_platform_cert_files: list[str] = Field(default_factory=list)  # older merchants
    wechatpay_base_url: str = "https://api.mch.weixin.qq.com"

    @property
    def enabled_channels(self) -> list[str]:
        """``channels`` as set; left unset in simulator mode, every channel it can play."""
        if self.simulator and "channels" not in self.model_fields_set:
            return ["sandbox", "alipay", "wechatpay"]
        return list(self.channels)

    # The platform's business time zone: reconciliation days (Alipay and WeChat Pay bills
    # are Beijing days), daily figures and admin timestamps (docs/reconciliation.md).
    time_zone: str = "Asia/Shanghai"
    # The merchant's name on receipts (docs/history.md).
    merchant_name: str = Field(default="Tuition", min_length=1, max_length=200)
    # Currency conversion (docs/fx.md): added to the exchange rate when a product is sold
    # in a currency it has no price in, as a fraction in [0, 1) ("0.02" is 2 %).
    fx_markup: Decimal = Field(default=Decimal(0), ge=0, lt=1)
    # Risk control (docs/risk.md): an order or payment whose rules' scores add up to at
    # least these is reviewed / blocked; unset, only the rules' own actions decide.
    risk_review_score: Decimal | None = Field(default=None, ge=0)
    risk_block_score: Decimal | None = Field(default=None, ge=0)
    # What a review holds: the payment (not started until approved) or the paid order's
    # entitlements (granted when approved; a rejected paid order is refunded).
    risk_review_holds: Literal["payment", "entitlements"] = "payment"

    # Smart channel choice (docs/payments.md): how `{"channel": "auto"}` ranks channels
    # (success_per_fee or expected_net), over how many hours of finished attempts; a
    # channel failing this many calls in a row is skipped for the cool-down.
    channel_strategy: Literal["success_per_fee", "expected_net"] = "expected_net"
    channel_success_window_hours: int = Field(default=7 * 24, ge=1, le=90 * 24)
    channel_breaker_failures: int = Field(default=5, ge=1, le=1000)
    channel_breaker_cooldown_seconds: float = Field(default=300, gt=0)

    def risk_thresholds(self) -> RiskPolicy:
        return RiskPolicy(
            review=self.risk_review_score,
            block=self.risk_block_score,
            hold=self.risk_review_holds,
        )

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Asia/Shanghai)"
            ) from None
        return value

    @property
    def zone(self) -> tzinfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.time_zone)

    @field_validator("channels", "test_channels")
    @classmethod
    def _known_channels(cls, value: list[str] | None) -> list[str] | None:
        known = ("sandbox", "alipay", "wechatpay", "unionpay", "apple", "bank_transfer")
        unknown = sorted(set(value or ()) - set(known))
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {', '.join(known)}")
        return value

    @field_validator("test_channel_settings")
    @classmethod
    def _channel_settings_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = {
            name
            for name in cls.model_fields
            if name.startswith(CHANNEL_SETTING_PREFIXES) or name == "channel_fee_rates"
        }
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} is not a channel setting; test mode may override "
                "the channels' own settings (alipay_*, wechatpay_*, apple_*, …) and "
                "channel_fee_rates"
            )
        return value

    def for_mode(self, mode: Mode) -> Settings:
        """These settings as one mode sees them: test mode's channels and channel
        settings laid over the live ones (the store is :meth:`store_url`)."""
        if mode == "live":
            return self
        channels = self.test_channels
        if channels is None:
            channels = ["sandbox", "alipay", "wechatpay"] if self.simulator else ["sandbox"]
        update = {**self.test_channel_settings, "channels": channels}
        return type(self).model_validate({**self.model_dump(), **update})

    def auto_approves_payouts(self, mode: Mode) -> bool:
        """Whether ``mode``'s payout runs are approved without an operator."""
        return self.payout_auto_approve if mode == "live" else self.test_payout_auto_approve

    def mode_channels(self, mode: Mode) -> list[str]:
        """The channels ``mode`` may use, in checkout order: never the sandbox live.

        Raises ConfigError when a real channel would take test mode's money with live
        mode's credentials (docs/api.md, "Test and live modes")."""
        chosen = self.for_mode(mode).enabled_channels
        slugs = [slug for slug in chosen if mode == "test" or slug != "sandbox"]
        if not self.simulator:  # the simulator plays every gateway: nothing real is reached
            for slug in slugs:
                problem = self._credential_problem(mode, slug)
                if problem is not None:
                    raise ConfigError(problem)
        return slugs

    def _credential_problem(self, mode: Mode, slug: str) -> str | None:
        if slug == "apple":
            wanted = "Sandbox" if mode == "test" else "Production"
            if self.for_mode(mode).apple_environment != wanted:
                where = (
                    "TUITION_TEST_CHANNEL_SETTINGS"
                    if mode == "test"
                    else ("TUITION_APPLE_ENVIRONMENT")
                )
                return (
                    f"{where}: {mode} mode takes App Store transactions of the {wanted} "
                    "environment only"
                )
            return None
        identity = _TEST_IDENTITY.get(slug)
        if mode == "live" or identity is None:
            return None
        overrides = self.test_channel_settings
        if not any(
            name in overrides and overrides[name] != getattr(self, name) for name in identity
        ):
            return (
                f"TUITION_TEST_CHANNEL_SETTINGS: test mode's {slug} would use live mode's "
                f"credentials (real money, booked as test data); set one of "
                f"{', '.join(identity)} for its sandbox, or leave {slug} out of "
                "TUITION_TEST_CHANNELS"
            )
        return None

    def store_url(self, mode: Mode) -> tuple[str, str | None]:
        """Where ``mode`` keeps its data: a database URL and, on PostgreSQL, the schema
        (None: the database's own ``public`` schema)."""
        if mode == "live":
            return self.database_url, None
        if self.test_mode_database_url:
            return self.test_mode_database_url, None
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite":
            return self.database_url, TEST_MODE_SCHEMA
        path = url.database or ""
        if path in ("", ":memory:"):
            return self.database_url, None  # a private in-memory database either way
        test_path = Path(path)
        test_path = test_path.with_name(f"{test_path.stem}.test{test_path.suffix or '.db'}")
        return url.set(database=str(test_path)).render_as_string(hide_password=False), None

    @property
    def runs_embedded_worker(self) -> bool:
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.database_url.startswith("sqlite")

    @field_validator("channel_fee_rates")
    @classmethod
    def _rates_in_range(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for channel, rate in value.items():
            if not Decimal(0) <= rate < Decimal(1):
                raise ValueError(f"fee rate of {channel!r} must be in [0, 1), got {rate}")
        return value

    @field_validator("refund_policy")
    @classmethod
    def _refund_policy_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_policy(value, param="TUITION_REFUND_POLICY")
        except ValidationFailed as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("coins")
    @classmethod
    def _coins_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _coin_unit(value, SpendOrder.FIFO)
        return value

    def coin_unit(self) -> CoinUnit | None:
        """The configured coin, or None when coins are off."""
        return None if self.coins is None else _coin_unit(self.coins, self.coin_spend_order)

    def default_refund_policy(self) -> RefundPolicy:
        return parse_policy(self.refund_policy)

    @field_validator("database_url", "test_mode_database_url")
    @classmethod
    def _known_database_url(cls, value: str) -> str:
        if not value:
            return value  # test_mode_database_url unset: derived from database_url
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                f"not a database URL: {value!r}; expected e.g. "
                "'sqlite+aiosqlite:///./tuition.db' or "
                "'postgresql+asyncpg://user:pass@host:5432/db'"
            ) from None
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+asyncpg")
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"unsupported driver {url.drivername!r}; use one of {', '.join(SUPPORTED_DRIVERS)}"
            )
        return url.render_as_string(hide_password=False)

    @property
    def signing_key(self) -> bytes:
        """``secret_key``, or the locally kept one (made on first use)."""
        if self.secret_key:
            return self.secret_key.encode()
        path = Path(self.secret_key_file)
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    # Apple App Store in-app purchase (docs/channels.md): the app's bundle id, its Apple
    # id (required in Production), the environment its transactions come from, the
    # root certificates their chains must end in (Apple Root CA - G3), OCSP checks, and
    # what each App Store product id sells: {"<product id>": {"product_id": "prod_…",
    # "commission": "0.15"}} (commission default 0.30).
    apple_bundle_id: str = ""
    apple_app_apple_id: int | None = None
    apple_environment: Literal["Production", "Sandbox"] = "Production"
    apple_root_certificate_files: list[str] = Field(default_factory=list)
    apple_online_checks: bool = True
    apple_products: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Offline bank transfer (对公转账, docs/channels.md): the account buyers pay to, and
    # how long an order waits for the transfer once the buyer chose it.
    bank_transfer_account_name: str = ""
    bank_transfer_bank_name: str = ""
    bank_transfer_account_number: str = Field(default="", repr=False)
    bank_transfer_expiry_days: int = Field(default=3, ge=1, le=60)
    # UnionPay online payments (全渠道 5.1.0); see docs/channels.md. The signing
    # certificate is the PKCS#12 file UnionPay issues the merchant; the root and middle
    # certificates verify UnionPay's own signing certificate, whose CN must name
    # ``unionpay_cert_cn`` ("00040000:SIGN" in UnionPay's test environment).
    unionpay_mer_id: str = ""
    unionpay_sign_cert_file: str = ""
    unionpay_sign_cert_password: str = Field(default="", repr=False)
    unionpay_root_cert_file: str = ""
    unionpay_middle_cert_file: str = ""
    unionpay_cert_cn: str = "中国银联股份有限公司"
    unionpay_gateway_url: str = "https://gateway.95516.com"
    unionpay_file_url: str = "https://filedownload.95516.com"
    # Paid orders' earnings are held for their refund window (a product's own, else
    # TUITION_REFUND_POLICY's window_days); a number of days here holds every order that
    # long instead (docs/payouts.md).
    payout_hold_days: int | None = Field(default=None, ge=0, le=3650)
    # The worker (and `tuition payouts run`) proposes each period's payout run
    # (TUITION_PAYOUT_SCHEDULE); an operator approves it in the console before money
    # moves, unless this approves it at once: live mode's runs, and test mode's
    # separately (test_payout_auto_approve), so approving sandbox runs automatically
    # never approves live money (docs/payouts.md).
    payout_auto_approve: bool = False
    test_payout_auto_approve: bool = False
    # WeChat Pay contract deduction (委托代扣): the plan (模板) id renewals are signed
    # under; unset, WeChat Pay subscriptions renew by hand (docs/channels.md).
    wechatpay_papay_plan_id: int | None = Field(default=None, ge=1)
    # WeChat web OAuth (snsapi_base) for JSAPI inside WeChat: the AppSecret of the official
    # account TUITION_WECHATPAY_APPID names (docs/checkout.md). Empty: a buyer inside
    # WeChat pays JSAPI only when the order names their openid.
    wechatpay_app_secret: str = Field(default="", repr=False)
    wechatpay_oauth_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    wechatpay_api_url: str = "https://api.weixin.qq.com"
    # The platform's own iOS / Android app (its open-platform appid) and its WeChat
    # mini-program, bound to the WeChat Pay merchant: each enables a method (API only).
    wechatpay_app_appid: str = ""
    wechatpay_miniprogram_appid: str = ""
    # The checkout page's branding (docs/checkout.md), besides merchant_name: a logo file
    # (PNG, JPEG, WebP or SVG; served from /assets, nothing loads from elsewhere), the
    # accent colour (#RRGGBB) of buttons and links, and where buyers get help (an email
    # address, a phone number or a URL, shown as given).
    merchant_logo_file: str = ""
    merchant_accent_colour: str = Field(default="", pattern=r"^(#[0-9A-Fa-f]{6})?$")
    merchant_support: str = Field(default="", max_length=200)

    # Exchange rates partner platforms' shares are settled at until the FX service gives
    # them, as JSON {"CNY/USD": "0.1389"}: units of the quote per unit of the base
    # (docs/payouts.md, Partner platforms).
    fx_rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("fx_rates")
    @classmethod
    def _fx_rates_valid(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for pair, rate in value.items():
            base, slash, quote = pair.partition("/")
            if not (slash and len(base) == len(quote) == 3 and base.isupper() and quote.isupper()):
                raise ValueError(f"an exchange rate is named BASE/QUOTE, e.g. CNY/USD: {pair!r}")
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"the {pair} rate must be a positive number, got {rate}")
        return value

    # The most a console operator with the support role may refund at once, per currency
    # in minor units (a currency not listed: nothing); finance and owners have no limit
    # (docs/admin.md).
    support_refund_limit: dict[str, int] = Field(default_factory=lambda: {"CNY": 50000})

    @field_validator("support_refund_limit")
    @classmethod
    def _limits_not_negative(cls, value: dict[str, int]) -> dict[str, int]:
        if any(limit < 0 for limit in value.values()):
            raise ValueError("a refund limit cannot be negative")
        return {currency.upper(): limit for currency, limit in value.items()}


# A real channel in test mode must name its own merchant or gateway (one of these in
# TUITION_TEST_CHANNEL_SETTINGS), never run on live mode's credentials.
_TEST_IDENTITY: dict[str, tuple[str, ...]] = {
    "alipay": ("alipay_app_id", "alipay_gateway_url"),
    "wechatpay": ("wechatpay_mchid", "wechatpay_base_url"),
    "unionpay": ("unionpay_mer_id", "unionpay_gateway_url"),
    "bank_transfer": ("bank_transfer_account_number",),
}

_COIN_KEYS = frozenset({"code", "name", "symbol", "decimals", "currency"})


def _coin_unit(value: dict[str, Any], order: SpendOrder) -> CoinUnit:
    unknown = sorted(set(value) - _COIN_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; expected {', '.join(sorted(_COIN_KEYS))}")
    if "code" not in value or "name" not in value:
        raise ValueError('coins need a "code" and a "name", e.g. {"code": "XCN", "name": "学币"}')
    try:
        return CoinUnit(**value, spend_order=order)
    except (ValidationFailed, TypeError) as exc:
        raise ValueError(getattr(exc, "message", str(exc))) from None


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one line per bad variable."""
    from pydantic_settings import SettingsError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "TUITION_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']}")
        if len(lines) == 1:
            raise ConfigError(f"invalid configuration: {lines[0]}") from None
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    except SettingsError as exc:
        # A list or dict setting whose value is not JSON: pydantic-settings names only
        # the field (`error parsing value for field "channels" from source ...`).
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "?"
        raise ConfigError(
            f"invalid configuration: TUITION_{field.upper()}: not valid JSON; write a list "
            'or object, e.g. TUITION_CHANNELS=\'["sandbox", "alipay"]\''
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
