"""Wallet use cases: credit a top-up, pay an order from balance, operator adjustments,
and read balances, lots and transactions.

Every balance change is a conditional UPDATE plus a lot change and a log row, in the
transaction of what caused it, with its ledger entry: a top-up credits
``customer_wallet`` (a liability) and no creator; spending it recognises the order's
revenue and creator shares; an adjustment moves money between the wallet and
``wallet_adjustments``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from tuition.domain.catalog import ProductKind
from tuition.domain.errors import Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import AccountKind, AccountRef, Posting, build_entry
from tuition.domain.money import CURRENCIES, check_amount, get_currency
from tuition.domain.wallet import WALLET_CHANNEL, LotKind, TransactionCause
from tuition.services.balances import credit, debit, recognised
from tuition.services.payments import PaymentDeps, get_payment, hold_payable
from tuition.services.risk import payment_subject, refusing, screen_payment
from tuition.services.settlement import settle_wallet_payment
from tuition.store.payments import PaymentRecord, new_attempt
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import LotRecord, Shortfall, WalletTransaction


@dataclass(frozen=True, slots=True)
class Wallet:
    customer_id: str
    balances: Mapping[str, int]
    lots: tuple[LotRecord, ...]
    # What it owes after unrefusable refunds (Apple's) took back spent top-ups.
    shortfalls: tuple[Shortfall, ...] = ()


@dataclass(frozen=True, slots=True)
class Adjustment:
    customer_id: str
    currency: str
    amount: int  # positive credits, negative debits
    reason: str
    created_by: str
    # The same key (per customer) makes the same adjustment once: a form posted twice, a
    # request retried. None: every call is a new adjustment.
    key: str | None = None


async def pay_with_wallet(order_id: str, uow: UnitOfWork, *, deps: PaymentDeps) -> PaymentRecord:
    """Pay an order from the buyer's balance at once, all in one transaction: the balance
    is debited, the payment succeeds, the order is paid, access is granted and the
    ledger entry posted. Not enough balance is ``409 insufficient_balance`` and writes
    nothing. Risk control screens it as any payment (services/risk.py)."""
    return await refusing(uow, _pay_with_wallet(order_id, uow, deps=deps))


async def _pay_with_wallet(order_id: str, uow: UnitOfWork, *, deps: PaymentDeps) -> PaymentRecord:
    now = deps.clock.now()
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        await hold_payable(uow, order, at=now)
        if order.total == 0:  # nothing to take: no payment, no zero-amount entry
            raise Conflict(
                f"order {order.id} is free: complete it with POST /v1/orders/{order.id}/complete",
                code="order_is_free",
            )
        if any(line.kind == ProductKind.TOPUP.value for line in order.lines):
            raise Conflict(
                "a top-up is paid through a payment channel, not from the balance it credits",
                code="wallet_cannot_pay_topup",
                param="channel",
            )
        payment = new_attempt(
            payment_id=new_id(Prefix.PAYMENT),
            order_id=order.id,
            customer_id=order.customer_id,
            channel=WALLET_CHANNEL,
            method="balance",
            app_id=WALLET_CHANNEL,
            amount=order.total,
            currency=order.currency,
            at=now,
        )
        # Risk hook: a block or a review refuses the payment before anything is written.
        subject = payment_subject(order, payment.id, payment.amount, ip=None, payer=None)
        await screen_payment(uow, subject, at=now, thresholds=deps.risk)
        await uow.payments.add(payment)
        coins = get_currency(order.currency).virtual
        spent: dict[str, int] | None = {} if coins else None
        if order.total > 0:
            tx = await debit(
                uow,
                customer_id=order.customer_id,
                currency=order.currency,
                amount=order.total,
                cause=TransactionCause.ORDER,
                cause_id=payment.id,
                description=f"order {order.id}",
                created_by="customer",
                at=now,
                spend_order=deps.coin_spend_order,
            )
            if coins:  # revenue is what the coins spent are worth
                spent = recognised(tx)
        await settle_wallet_payment(uow, payment, order, at=now, spent=spent, hold=deps.hold)
        uow.outcome(payment.id)  # what a retry with the same Idempotency-Key gets back
        await uow.commit()
    return await get_payment(uow, payment.id)


async def adjust(cmd: Adjustment, uow: UnitOfWork, *, deps: PaymentDeps) -> WalletTransaction:
    """An operator's credit or debit with a reason, posted against ``wallet_adjustments``;
    a debit never takes the balance below zero."""
    get_currency(cmd.currency)
    if type(cmd.amount) is not int or cmd.amount == 0:
        raise ValidationFailed("amount must be a non-zero integer", param="amount")
    check_amount(abs(cmd.amount), param="amount")
    if not cmd.reason.strip():
        raise ValidationFailed("an adjustment needs a reason", param="reason")
    now = deps.clock.now()
    adjustment_id = new_id(Prefix.WALLET_ADJUSTMENT)
    if cmd.key is not None:
        digest = hashlib.sha256(f"{cmd.customer_id}\n{cmd.key}".encode()).hexdigest()
        adjustment_id = f"{Prefix.WALLET_ADJUSTMENT}_{digest[:32]}"
    description = f"adjustment: {cmd.reason.strip()}"
    async with uow:
        made = await uow.wallets.transaction_by_cause(TransactionCause.ADJUSTMENT, adjustment_id)
        if made is not None:
            return made
        coin = get_currency(cmd.currency).virtual
        if coin and deps.coins is None:
            raise ValidationFailed("coins are off on this platform", param="currency")
        if cmd.amount > 0:
            tx = await credit(
                uow,
                customer_id=cmd.customer_id,
                currency=cmd.currency,
                amount=cmd.amount,
                kind=LotKind.ADJUSTMENT,
                source=f"adjustment:{adjustment_id}",
                cause=TransactionCause.ADJUSTMENT,
                cause_id=adjustment_id,
                description=description,
                created_by=cmd.created_by,
                at=now,
                # Coins given by hand are worth nothing: no money came in for them.
                worth=(deps.coins.currency, 0) if coin and deps.coins else None,
            )
            if tx is None:  # the same key, committed by a racing request meanwhile
                made = await uow.wallets.transaction_by_cause(
                    TransactionCause.ADJUSTMENT, adjustment_id
                )
                assert made is not None
                return made
        else:
            tx = await debit(
                uow,
                customer_id=cmd.customer_id,
                currency=cmd.currency,
                amount=-cmd.amount,
                cause=TransactionCause.ADJUSTMENT,
                cause_id=adjustment_id,
                description=description,
                created_by=cmd.created_by,
                at=now,
                spend_order=deps.coin_spend_order,
            )
        # Money moves by its amount; coins by the money value of the lots they touch
        # (nothing for a credit of coins, what the coins taken were worth for a debit).
        moved = recognised(tx) if coin else {cmd.currency: cmd.amount}
        postings = []
        for currency, amount in sorted(moved.items()):
            signed = -amount if coin else amount
            if signed:
                wallet = AccountRef(AccountKind.CUSTOMER_WALLET, currency, cmd.customer_id)
                house = AccountRef(AccountKind.WALLET_ADJUSTMENTS, currency)
                postings += [Posting(house, signed), Posting(wallet, -signed)]
        if postings:
            await uow.ledger.post(
                build_entry(
                    f"wallet_adjustment:{adjustment_id}",
                    f"{description} by {cmd.created_by}"[:500],
                    postings,
                    now,
                ),
                at=now,
            )
        await uow.commit()
    return tx


async def wallet_of(uow: UnitOfWork, customer_id: str) -> Wallet:
    async with uow:
        balances = await uow.wallets.balances(customer_id)
        lots = await uow.wallets.lots_of(customer_id)
        shortfalls = await uow.wallets.shortfalls_of(customer_id)
    return Wallet(customer_id, balances, tuple(lots), tuple(shortfalls))


async def transactions_of(
    uow: UnitOfWork, customer_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[WalletTransaction], bool]:
    async with uow:
        return await uow.wallets.transactions(
            customer_id, limit=limit, starting_after=starting_after
        )


async def wallet_problems(uow: UnitOfWork) -> list[str]:
    """Wallets whose ledger account, the liability, differs from what they hold, and
    balances that differ from their lots.

    A wallet's liability in a money currency is its balance, plus the money value not
    yet recognised of its coin lots worth that currency, plus balance parts of split
    payments held now (debited from the balance, not yet from the ledger), plus top-ups
    out of it for a pending refund (same), less what it owes after an unrefusable
    refund took back a spent top-up (its shortfalls)."""
    async with uow:
        balances = await uow.wallets.all_balances()
        lots = await uow.wallets.lot_totals()
        owed = {key: amount for key, amount in balances.items() if not _coin(key[1])}
        for extra in (
            await uow.wallets.coin_values(),
            await uow.payments.held_parts(),
            await uow.refunds.pending_wallet_takebacks(),
        ):
            for wallet_key, amount in extra.items():
                owed[wallet_key] = owed.get(wallet_key, 0) + amount
        # What a wallet owes after an unrefusable refund (the ledger shows it as a debit).
        for wallet_key, amount in (await uow.wallets.shortfall_values()).items():
            owed[wallet_key] = owed.get(wallet_key, 0) - amount
        ledger = await uow.ledger.balances()
    booked: dict[tuple[str, str], int] = {}
    for key, amount in ledger.items():
        account = AccountRef.parse(key)
        if account.kind is AccountKind.CUSTOMER_WALLET:
            booked[(account.qualifier, account.currency)] = -amount  # a credit balance
    problems = [
        f"wallet {customer}/{currency}: balance {balances.get((customer, currency), 0)} but "
        f"its lots hold {lots.get((customer, currency), 0)}"
        for customer, currency in sorted(balances.keys() | lots.keys())
        if balances.get((customer, currency), 0) != lots.get((customer, currency), 0)
    ]
    return problems + [
        f"wallet {customer}/{currency}: owed {owed.get((customer, currency), 0)}, "
        f"ledger {booked.get((customer, currency), 0)}"
        for customer, currency in sorted(owed.keys() | booked.keys())
        if owed.get((customer, currency), 0) != booked.get((customer, currency), 0)
    ]


def _coin(currency: str) -> bool:
    known = CURRENCIES.get(currency)
    return known is None or known.virtual  # not ISO: coins (if since turned off)
