"""``make demo``: a small knowledge shop, an operator, and an order ready to pay.

Safe to run again on the same database: the catalog is found by its creators'
``external_id`` and the products' ``metadata["demo"]`` instead of being made twice, the
operator gets a fresh password, and each run places a new order for a new reader.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from tuition.clock import Clock
from tuition.config import Settings
from tuition.domain.catalog import MembershipPeriod, ProductKind, Promotion
from tuition.domain.commissions import CommissionBearer, CommissionRates
from tuition.domain.errors import Conflict
from tuition.domain.money import coin_unit
from tuition.services import admin as admin_service
from tuition.services import catalog as catalog_service
from tuition.services import commissions as commission_service
from tuition.services import coupons as coupon_service
from tuition.services import fx as fx_service
from tuition.services import partners as partner_service
from tuition.services.catalog import NewCreator, NewProduct, PageQuery
from tuition.services.commissions import NewPromoter
from tuition.services.coupons import NewCoupon
from tuition.services.orders import CreateOrder, ItemRequest, OrderPolicy, create_order
from tuition.services.partners import NewPartner
from tuition.store.catalog import ProductFilter
from tuition.store.uow import UnitOfWork
from tuition.web.links import checkout_url

ADMIN_EMAIL = "admin@example.com"
# FREE100 makes the demo order free: the page then completes it with one button.
COUPONS = ("WELCOME20", "SAVE30", "FREE100")
# The demo order's link keeps working for a day, not the usual quarter of an hour.
DEMO_ORDER_TTL = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DemoInfo:
    checkout_url: str
    order_id: str
    admin_url: str
    admin_email: str
    admin_password: str
    coupons: tuple[str, ...]
    products: dict[str, str]  # demo key -> product id


_CREATORS = [
    ("demo:li-ming", "李明", Decimal("0.7")),
    ("demo:ada-chen", "Ada Chen", Decimal("0.6")),
]


async def seed_demo(
    uow_factory: Callable[[], UnitOfWork],
    settings: Settings,
    clock: Clock,
    *,
    operators: Callable[[], UnitOfWork] | None = None,
) -> DemoInfo:
    """The shop in ``uow_factory``'s store (test mode's, for ``make demo``) and the
    operator in ``operators``' (the live store, where the console signs in)."""
    operators = operators or uow_factory
    creators = await _creators(uow_factory, clock)
    products = await _products(uow_factory, clock, creators)
    await _coupons(uow_factory, clock)
    # An exchange rate, so the CNY courses can also be ordered in USD (docs/fx.md).
    await fx_service.put_rate(
        fx_service.SetRate("USD", "CNY", Decimal("7.1"), source="demo"), uow_factory(), clock=clock
    )
    referral = await _promoters(uow_factory, clock, products)
    await _partner(uow_factory, clock)
    password = secrets.token_urlsafe(12)
    try:
        await admin_service.create_admin_user(operators(), ADMIN_EMAIL, password, clock)
    except Conflict:
        await admin_service.set_admin_password(operators(), ADMIN_EMAIL, password)
    order = await create_order(
        CreateOrder(
            customer_id=f"demo-reader-{secrets.token_hex(3)}",
            currency="CNY",
            items=(ItemRequest(products["python"]), ItemRequest(products["writing"])),
            # Referred by a promoter: the Python course pays it 20 % and its recruiter 5 %.
            referral_code=referral,
        ),
        uow_factory(),
        clock=clock,
        policy=OrderPolicy(order_ttl=DEMO_ORDER_TTL, channel_fee_rates=settings.channel_fee_rates),
    )
    return DemoInfo(
        checkout_url=checkout_url(settings, order.id),
        order_id=order.id,
        admin_url=f"{settings.base_url}/admin",
        admin_email=ADMIN_EMAIL,
        admin_password=password,
        coupons=COUPONS,
        products=products,
    )


async def _creators(uow_factory: Callable[[], UnitOfWork], clock: Clock) -> dict[str, str]:
    found: dict[str, str] = {}
    records, _ = await catalog_service.list_creators(PageQuery(limit=100), uow_factory())
    existing = {r.external_id: r.creator.id for r in records if r.external_id}
    for external_id, name, share in _CREATORS:
        if external_id in existing:
            found[external_id] = existing[external_id]
            continue
        record = await catalog_service.create_creator(
            NewCreator(name=name, default_revenue_share=share, external_id=external_id),
            uow_factory(),
            clock=clock,
        )
        found[external_id] = record.creator.id
    return found


async def _products(
    uow_factory: Callable[[], UnitOfWork], clock: Clock, creators: dict[str, str]
) -> dict[str, str]:
    li, ada = creators["demo:li-ming"], creators["demo:ada-chen"]
    have: dict[str, str] = {}
    for creator in (li, ada):
        records, _ = await catalog_service.list_products(
            ProductFilter(creator_id=creator), PageQuery(limit=100), uow_factory()
        )
        have.update({r.metadata["demo"]: r.product.id for r in records if "demo" in r.metadata})
    now = clock.now()
    sale = Promotion(now - timedelta(days=1), now + timedelta(days=30), percent_off=Decimal("0.15"))

    async def product(
        key: str,
        creator: str,
        title: str,
        price: int,
        kind: ProductKind = ProductKind.COURSE,
        *,
        description: str = "",
        components: tuple[str, ...] = (),
        period: MembershipPeriod | None = None,
        promotion: Promotion | None = None,
        refund_policy: dict[str, object] | None = None,
        topup_credit: int | None = None,
        currency: str = "CNY",
        **coins: Any,
    ) -> None:
        if key in have:
            return
        new = NewProduct(
            creator_id=creator,
            kind=kind,
            title=title,
            prices={currency: price},
            description=description,
            components=components,
            period=period,
            promotion=promotion,
            metadata={"demo": key},
            refund_policy=refund_policy,
            topup_credit=topup_credit,
            **coins,
        )
        record = await catalog_service.create_product(new, uow_factory(), clock=clock)
        have[key] = record.product.id

    await product("python", li, "Python 数据分析实战", 19900, description="从 pandas 到可视化")
    # Refunds: the unconsumed share of this one (report progress to see it shrink).
    prorate = {"window_days": 14, "consumption": "prorate"}
    await product("writing", li, "高效写作 30 讲", 9900, refund_policy=prorate)
    await product("design", ada, "Design Systems in Practice", 29900, promotion=sale)
    await product("compound", li, "一文读懂复利", 990, ProductKind.ARTICLE)
    pair = (have["python"], have["writing"])
    await product("bundle", li, "数据与写作套餐", 24900, ProductKind.BUNDLE, components=pair)
    # A top-up credits the reader's balance (a liability), which then pays for courses.
    await product("topup", li, "余额充值 ¥100", 10000, ProductKind.TOPUP, topup_credit=10000)
    coin = coin_unit()
    if coin is not None:
        # Coins: a pack of 100 plus 20 bonus, ¥10 on the web and ¥12 in the iOS app, and a
        # paid question sold for 50 coins (revenue: what the coins spent were worth).
        await product(
            "coin_pack",
            li,
            f"充 100 {coin.label} 送 20",
            1000,
            ProductKind.TOPUP,
            topup_coins=100,
            topup_bonus_coins=20,
            surface_prices={"ios": {"CNY": 1200}},
        )
        await product(
            "question", li, "付费问答 向李明提问", 50, ProductKind.CONSULTATION, currency=coin.code
        )
    year = MembershipPeriod.YEAR
    await product(
        "membership", ada, "年度会员 Annual membership", 36500, ProductKind.MEMBERSHIP, period=year
    )
    return have


async def _promoters(
    uow_factory: Callable[[], UnitOfWork], clock: Clock, products: dict[str, str]
) -> str:
    """Two promoters, 王芳 who recruited 张伟, and the Python course's commissions (20 % /
    5 %, borne by the platform); the code the demo order is placed with."""
    recruiter: str | None = None
    for name, code in (("王芳", "WANGFANG"), ("张伟", "ZHANGWEI")):
        uow = uow_factory()
        async with uow:
            found = await uow.commissions.promoter_by_code(code)
        if found is None:
            payee, _ = await commission_service.create_promoter(
                uow_factory(),
                NewPromoter(name=name, code=code, recruited_by=recruiter),
                at=clock.now(),
            )
            recruiter = payee.id
        else:
            recruiter = found.payee_id
    await commission_service.set_product_commission(
        uow_factory(),
        products["python"],
        rates=CommissionRates(Decimal("0.2"), Decimal("0.05")),
        bearer=CommissionBearer.PLATFORM,
        at=clock.now(),
    )
    return "ZHANGWEI"


PARTNER = "Global Learn 海外合作平台"


async def _partner(uow_factory: Callable[[], UnitOfWork], clock: Clock) -> None:
    """A partner platform that sells the shop's courses for 10 %, settled in USD at the
    demo's rate when its hold ends (docs/payouts.md, "Partner platforms")."""
    uow = uow_factory()
    async with uow:
        payees = await uow.earnings.list_payees()
    if any(p.kind == "partner" and p.name == PARTNER for p in payees):
        return
    await partner_service.create_partner(
        uow_factory(),
        NewPartner(name=PARTNER, share=Decimal("0.1"), currency="USD"),
        at=clock.now(),
    )


async def _coupons(uow_factory: Callable[[], UnitOfWork], clock: Clock) -> None:
    wanted = [
        NewCoupon(code="WELCOME20", percent_off=Decimal("0.2"), max_per_customer=1),
        NewCoupon(code="SAVE30", amount_off={"CNY": 3000}, min_spend={"CNY": 20000}),
        NewCoupon(code="FREE100", percent_off=Decimal("1")),
    ]
    for coupon in wanted:
        with contextlib.suppress(Conflict):  # made by an earlier run
            await coupon_service.create_coupon(coupon, uow_factory(), clock=clock)
