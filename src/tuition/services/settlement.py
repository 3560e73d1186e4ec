"""The one paid path: what happens when a gateway says a payment settled (refunds:
services/refund_settlement.py).

Both a verified notification and the recovery job's query end here, inside the caller's
unit of work, so a payment is settled the same way whichever arrives first, and only
once: every step is a compare-and-set or a UNIQUE insert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from tuition.channels.base import PaymentState
from tuition.domain.booking import merged, portion, scaled
from tuition.domain.catalog import ProductKind
from tuition.domain.earnings import DEFAULT_HOLD, HoldRule
from tuition.domain.errors import IllegalTransition
from tuition.domain.ledger import JournalEntry, payment_succeeded_entry
from tuition.domain.money import coin_unit
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PAYMENT_TRANSITIONS, PaymentStatus, channel_fee
from tuition.domain.wallet import WALLET_CHANNEL, LotKind, TransactionCause
from tuition.services.balances import bonus_source, credit, topup_source
from tuition.services.commissions import LineShare, line_shares
from tuition.services.earnings import record_earnings
from tuition.services.fx import in_product_currency
from tuition.services.orders import mark_order_paid
from tuition.services.refund_settlement import hold_payment, open_refund
from tuition.services.tender import (
    commit_wallet_part,
    end_payment,
    payment_data,
    release_wallet_part,
)
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord
from tuition.store.uow import UnitOfWork

_OPEN = (PaymentStatus.CREATED, PaymentStatus.PENDING)
_MAY_SUCCEED = tuple(s for s in PaymentStatus if PaymentStatus.SUCCEEDED in PAYMENT_TRANSITIONS[s])
_RETURN_REASONS = {OrderStatus.EXPIRED: "order_expired", OrderStatus.CANCELLED: "order_cancelled"}


@dataclass(slots=True)
class Settled:
    """What a settlement changed; ``refunds_to_submit`` go to the channel after commit."""

    changed: bool = False
    refunds_to_submit: list[str] = field(default_factory=list)


async def apply_payment_state(
    uow: UnitOfWork,
    payment: PaymentRecord,
    state: PaymentState,
    *,
    fee_rate: Decimal,
    at: datetime,
    hold: HoldRule = DEFAULT_HOLD,
) -> Settled:
    """Move ``payment`` to what the gateway reported; the caller verified and commits.
    ``hold``: how long the order's earnings are held (PaymentDeps.hold)."""
    match state.status:
        case PaymentStatus.SUCCEEDED:
            return await _succeed(uow, payment, state, fee_rate=fee_rate, at=at, hold=hold)
        case PaymentStatus.FAILED | PaymentStatus.CLOSED:
            moved = await end_payment(
                uow, payment, state.status, at=at, failure_code=state.raw_status or None
            )
            return Settled(changed=moved)
        case PaymentStatus.CREATED | PaymentStatus.PENDING:
            return Settled()


async def _succeed(
    uow: UnitOfWork,
    payment: PaymentRecord,
    state: PaymentState,
    *,
    fee_rate: Decimal,
    at: datetime,
    hold: HoldRule,
) -> Settled:
    fee = channel_fee(payment.amount, fee_rate)
    paid_at = state.paid_at or at
    moved = await uow.payments.set_status(
        payment.id,
        expected=_MAY_SUCCEED,
        target=PaymentStatus.SUCCEEDED,
        at=at,
        fee=fee,
        succeeded_at=paid_at,
        channel_trade_no=state.channel_trade_no or payment.channel_trade_no,
    )
    if not moved:
        return Settled()
    order = await uow.orders.get(payment.order_id)
    assert order is not None, "a payment always has its order"
    # A split payment pays the order only with its balance part still held.
    paid_now = False
    part_held = order.status is OrderStatus.PENDING_PAYMENT and await commit_wallet_part(
        uow, payment, at=at
    )
    if part_held:
        try:
            paid_now = await mark_order_paid(uow, order, at=at)
        except IllegalTransition:  # cancelled or expired before this money came
            paid_now = False
    await uow.events.emit("payment.succeeded", payment.id, payment_data(payment), at=at)
    if paid_now:
        part = None
        if payment.wallet_part_id is not None:
            part = await uow.payments.get(payment.wallet_part_id)
            assert part is not None
            await uow.events.emit("payment.succeeded", part.id, payment_data(part), at=at)
        await _book_paid_order(
            uow, payment, order, fee=fee, paid_at=paid_at, at=at, wallet_part=part, hold=hold
        )
        return Settled(changed=True)
    await release_wallet_part(uow, payment, at=at, reason="order_not_payable", committed=part_held)
    # The order was paid by another attempt, or closed, before this money came: keep the
    # order as it is, book the money as revenue, and send it back through its channel
    # (the refund's entry then reverses it).
    current = await uow.orders.get(order.id, with_lines=False)
    assert current is not None
    await uow.payments.mark_duplicate(payment.id, of_order=order.id)
    await uow.ledger.post(
        payment_succeeded_entry(
            payment_id=payment.id,
            channel=payment.channel,
            currency=payment.currency,
            amount=payment.amount,
            fee=fee,
            tax=0,
            creator_shares=(),
            occurred_at=paid_at,
        ),
        at=at,
    )
    reason = _RETURN_REASONS.get(current.status, "duplicate_payment")
    await hold_payment(uow, payment, payment.amount, at)
    refund = await open_refund(uow, payment, amount=payment.amount, reason=reason, at=at)
    return Settled(changed=True, refunds_to_submit=[refund.id])


async def settle_wallet_payment(
    uow: UnitOfWork,
    payment: PaymentRecord,
    order: OrderRecord,
    *,
    at: datetime,
    spent: Mapping[str, int] | None = None,
    hold: HoldRule = DEFAULT_HOLD,
) -> None:
    """Inside the unit of work that debited the balance: the payment from balance
    succeeds and pays the order (it is ``pending_payment``: the caller checked).
    ``spent``: for a coin-priced order, the money value per currency of the coin lots
    the payment spent (what its revenue is)."""
    moved = await uow.payments.set_status(
        payment.id,
        expected=_OPEN,
        target=PaymentStatus.SUCCEEDED,
        at=at,
        fee=0,
        succeeded_at=at,
    )
    if not moved or not await mark_order_paid(uow, order, at=at):
        raise IllegalTransition(f"order {order.id} was paid meanwhile", code="order_not_payable")
    await uow.events.emit("payment.succeeded", payment.id, payment_data(payment), at=at)
    await _book_paid_order(uow, payment, order, fee=0, paid_at=at, at=at, spent=spent, hold=hold)


async def settle_free_order(uow: UnitOfWork, order: OrderRecord, *, at: datetime) -> None:
    """Inside an open unit of work: an order whose total is 0 (a 100 % coupon) is paid
    with no payment at all: the order turns paid, access is granted and ``order.paid``
    goes out, as for any paid order; nothing moved, so no ledger entry and no earnings.
    The caller checked that the order is free and held it (``hold_payable``)."""
    if order.total != 0 or not await mark_order_paid(uow, order, at=at):
        raise IllegalTransition(f"order {order.id} was paid meanwhile", code="order_not_payable")
    await uow.events.emit("order.paid", order.id, _order_data(order), at=at)


async def _book_paid_order(
    uow: UnitOfWork,
    payment: PaymentRecord,
    order: OrderRecord,
    *,
    fee: int,
    paid_at: datetime,
    at: datetime,
    wallet_part: PaymentRecord | None = None,
    spent: Mapping[str, int] | None = None,
    hold: HoldRule,
) -> None:
    """The paid order's entry (creator shares; top-ups credit the buyer's wallet, a
    liability, never revenue), the wallet credits themselves, and ``order.paid``.

    A split payment books one entry per payment (the balance part and the channel's),
    each its portion of the order's tax and shares; a coin payment books the money value
    of the coins spent, not their count (see domain/booking.py)."""
    credits = await _credit_topups(uow, order, at=at)
    # Each payee's share of each line: the creators', then a referred order's promoters'.
    shares = await line_shares(uow, order)
    amounts = [share.amount for share in shares]
    # (the payment its earnings are held under, the payees' shares it holds)
    earned: list[tuple[PaymentRecord, list[LineShare]]] = []
    if spent is not None:
        entries = []
        for currency, value in sorted(spent.items()):
            tax, parts = scaled(value, order.total, order.tax_total, amounts)
            if value:
                line_shares_now = _with_amounts(shares, parts)
                entries.append(
                    _entry(
                        payment, order, currency, value, 0, tax, _posted(line_shares_now), paid_at
                    )
                )
                earned.append((replace(payment, currency=currency), line_shares_now))
        if entries:
            await uow.ledger.post(merged(entries), at=at)
    else:
        fundings = [(payment, payment.amount, fee)]
        if wallet_part is not None:
            fundings = [(wallet_part, wallet_part.amount, 0), (payment, payment.amount, fee)]
        splits = portion(
            order.total, order.tax_total, amounts, [amount for _, amount, _ in fundings]
        )
        for (funding, amount, funding_fee), (tax, parts) in zip(fundings, splits, strict=True):
            entry = _entry(
                funding,
                order,
                funding.currency,
                amount,
                funding_fee,
                tax,
                _posted(_with_amounts(shares, parts)),
                paid_at,
                credits=[(order.customer_id, value) for _, value in credits if value],
            )
            # A product sold in another currency: its revenue in the product's currency.
            entry = in_product_currency(entry, order.pricing, funding.currency)
            await uow.ledger.post(entry, at=at)
        # The earnings of a split order are held once, under the channel payment: a
        # refund of either part takes the payees' shares back from the same earnings,
        # which the order-wide refund split never overdraws.
        earned.append((payment, shares))
    for earning_payment, held in earned:
        await record_earnings(uow, earning_payment, order, held, paid_at=paid_at, at=at, hold=hold)
    await uow.events.emit("order.paid", order.id, _order_data(order), at=at)


def _with_amounts(shares: list[LineShare], amounts: list[int]) -> list[LineShare]:
    return [replace(share, amount=a) for share, a in zip(shares, amounts, strict=True)]


def _posted(shares: list[LineShare]) -> list[tuple[str, int]]:
    return [(share.payee_id, share.amount) for share in shares]


def _entry(
    payment: PaymentRecord,
    order: OrderRecord,
    currency: str,
    amount: int,
    fee: int,
    tax: int,
    shares: list[tuple[str, int]],
    paid_at: datetime,
    *,
    credits: list[tuple[str, int]] | None = None,
) -> JournalEntry:
    return payment_succeeded_entry(
        payment_id=payment.id,
        channel=payment.channel,
        currency=currency,
        amount=amount,
        fee=fee,
        tax=tax,
        creator_shares=shares,
        wallet_credits=credits or [],
        paid_from_wallet=order.customer_id if payment.channel == WALLET_CHANNEL else None,
        occurred_at=paid_at,
    )


async def _credit_topups(
    uow: UnitOfWork, order: OrderRecord, *, at: datetime
) -> list[tuple[int, int]]:
    """Credit each top-up line's lots (a coin pack: its coins, worth what the line paid,
    and its bonus coins, worth nothing); ``(line index, money credited)`` for the entry.

    The wallet before the ledger, on every path that touches both: one lock order, so a
    top-up, a payment from balance and a refund into it never deadlock."""
    credits = []
    for topup in await topup_lines(uow, order):
        source = topup_source(order.id, topup.index)
        lots = [(topup.coins or topup.value, LotKind.TOPUP, source, topup.value)]
        if topup.bonus:
            lots.append((topup.bonus, LotKind.BONUS, bonus_source(source), 0))
        for amount, kind, lot_source, value in lots:
            await credit(
                uow,
                customer_id=order.customer_id,
                currency=topup.unit,
                amount=amount,
                kind=kind,
                source=lot_source,
                cause=TransactionCause.TOPUP,
                cause_id=f"{order.id}:{topup.index}" + (":bonus" if kind is LotKind.BONUS else ""),
                description=f"{'bonus' if kind is LotKind.BONUS else 'top-up'}, order {order.id}",
                created_by="system",
                at=at,
                worth=None if topup.coins is None else (order.currency, value),
            )
        credits.append((topup.index, topup.value))
    return credits


@dataclass(frozen=True, slots=True)
class TopUpLine:
    """What a paid top-up line credits: money (``value`` in the order's currency), or a
    coin pack's ``coins`` (worth ``value``) and ``bonus`` coins (worth nothing)."""

    index: int
    value: int
    unit: str  # the wallet currency credited: the order's, or the coin code
    coins: int | None = None
    bonus: int = 0


async def topup_lines(uow: UnitOfWork, order: OrderRecord) -> list[TopUpLine]:
    topups = [line for line in order.lines if line.kind == ProductKind.TOPUP.value]
    if not topups:
        return []
    catalog = await uow.catalog.products_by_ids([line.product_id for line in topups])
    lines = []
    for line in topups:
        product = catalog.get(line.product_id)
        if product is not None and product.topup_coins is not None:
            coin = coin_unit()
            if coin is None:
                raise AssertionError(f"coin pack {product.id} sold while coins are off")
            lines.append(
                TopUpLine(
                    line.line_index,
                    line.total - line.tax - line.surcharge,
                    coin.code,
                    product.topup_coins * line.quantity,
                    (product.topup_bonus_coins or 0) * line.quantity,
                )
            )
            continue
        credit_each = product.topup_credit if product is not None else None
        if credit_each is None:
            raise AssertionError(f"top-up {line.product_id} of order {order.id} has no credit")
        lines.append(TopUpLine(line.line_index, credit_each * line.quantity, order.currency))
    return lines


async def topup_credits(uow: UnitOfWork, order: OrderRecord) -> list[tuple[int, int]]:
    """(line index, money credited to the wallet's liability) for each top-up line."""
    return [(topup.index, topup.value) for topup in await topup_lines(uow, order)]


def _order_data(order: OrderRecord) -> dict[str, object]:
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "total": order.total,
        "currency": order.currency,
        "status": "paid",
    }
