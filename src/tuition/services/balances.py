"""Changes to a customer's wallet balance: credit a lot, spend from the oldest lots.

Used inside the caller's unit of work by whatever causes the change (a paid top-up, a
payment from balance, a refund of one, an operator's adjustment); the caller posts the
ledger entry beside it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tuition.domain.coins import SpendOrder, spending_order, take_coins
from tuition.domain.errors import Conflict
from tuition.domain.ids import Prefix, new_id
from tuition.domain.money import get_currency
from tuition.domain.refunds import RefundRefused
from tuition.domain.wallet import InsufficientBalance, LotKind, TransactionCause, consume_fifo
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import LotRecord, Shortfall, WalletTransaction


async def credit(
    uow: UnitOfWork,
    *,
    customer_id: str,
    currency: str,
    amount: int,
    kind: LotKind,
    source: str,
    cause: TransactionCause,
    cause_id: str,
    description: str,
    created_by: str,
    at: datetime,
    worth: tuple[str, int] | None = None,
) -> WalletTransaction | None:
    """Inside an open unit of work: credit a lot; None if ``source`` was credited before
    (a retried top-up credits once, whatever the notification count). A lot of coins
    says what it is ``worth`` (money currency, minor units; 0 for bonus coins)."""
    lot_id = new_id(Prefix.WALLET_LOT)
    coin = get_currency(currency).virtual
    if coin != (worth is not None):
        raise ValueError("a coin lot, and only a coin lot, has a money value")
    value_currency, value = worth if worth is not None else (None, None)
    lot = LotRecord(
        lot_id,
        customer_id,
        currency,
        kind.value,
        source,
        amount,
        amount,
        at,
        value_currency,
        value,
        value,
    )
    if not await uow.wallets.add_lot(lot):
        return None
    balance = await uow.wallets.credit(customer_id, currency, amount, at)
    tx, _ = await _record(
        uow,
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        balance=balance,
        cause=cause,
        cause_id=cause_id,
        description=description,
        lots=[_lot_part(lot_id, amount, value, value_currency)],
        created_by=created_by,
        at=at,
    )
    return tx


async def debit(
    uow: UnitOfWork,
    *,
    customer_id: str,
    currency: str,
    amount: int,
    cause: TransactionCause,
    cause_id: str,
    description: str,
    created_by: str,
    at: datetime,
    spend_order: SpendOrder = SpendOrder.FIFO,
) -> WalletTransaction:
    """Inside an open unit of work: spend ``amount`` from the oldest lots first (coins:
    in ``spend_order``; each part of the transaction's ``lots`` then says the money
    ``value`` it recognised, see :func:`recognised`).

    Raises InsufficientBalance (409, naming the shortfall) when the balance does not
    cover it; the conditional UPDATE is the guard, so racing spends never overdraw.
    """
    balance = await uow.wallets.debit(customer_id, currency, amount, at)
    if balance is None:
        have = (await uow.wallets.balances(customer_id)).get(currency, 0)
        raise InsufficientBalance(
            f"the wallet holds {have} {currency}; {amount} is needed, {amount - have} more",
            param="amount",
        )
    taken = await _take(uow, customer_id, currency, amount, spend_order)
    tx, recorded = await _record(
        uow,
        customer_id=customer_id,
        currency=currency,
        amount=-amount,
        balance=balance,
        cause=cause,
        cause_id=cause_id,
        description=description,
        lots=taken,
        created_by=created_by,
        at=at,
    )
    if not recorded:
        raise Conflict(f"{cause.value} {cause_id} was already debited", code="already_debited")
    return tx


async def _take(
    uow: UnitOfWork, customer_id: str, currency: str, amount: int, spend_order: SpendOrder
) -> list[dict[str, Any]]:
    if not get_currency(currency).virtual:
        taken = consume_fifo(await uow.wallets.open_lots(customer_id, currency), amount)
        for lot_id, part in taken:
            await uow.wallets.take_from_lot(lot_id, part)
        return [_lot_part(lot_id, part) for lot_id, part in taken]
    lots = await uow.wallets.open_coin_lots(customer_id, currency)
    by_id = {lot.id: lot for lot in lots}
    parts = []
    for take in take_coins(spending_order(lots, spend_order), amount):
        await uow.wallets.take_coins(take.lot_id, take.coins, take.value_remaining)
        parts.append(
            _lot_part(take.lot_id, take.coins, take.value, by_id[take.lot_id].value_currency)
        )
    return parts


def recognised(tx: WalletTransaction) -> dict[str, int]:
    """Money value per currency of the coin lots a debit spent (nothing for money)."""
    values: dict[str, int] = {}
    for part in tx.lots:
        if part.get("value_currency") is not None:
            currency = str(part["value_currency"])
            values[currency] = values.get(currency, 0) + int(part["value"])
    return values


async def release(
    uow: UnitOfWork, held: WalletTransaction, *, cause_id: str, description: str, at: datetime
) -> WalletTransaction:
    """Give back what the debit ``held`` took, to the very lots it took from (balance
    first, as every change does); recorded once per ``cause_id``."""
    balance = await uow.wallets.credit(held.customer_id, held.currency, -held.amount, at)
    for part in held.lots:
        await uow.wallets.give_back(
            str(part["lot_id"]), int(part["amount"]), int(part.get("value") or 0)
        )
    tx, recorded = await _record(
        uow,
        customer_id=held.customer_id,
        currency=held.currency,
        amount=-held.amount,
        balance=balance,
        cause=TransactionCause.RELEASE,
        cause_id=cause_id,
        description=description,
        lots=list(held.lots),
        created_by="system",
        at=at,
    )
    if not recorded:
        raise AssertionError(f"hold {held.cause_id} was released before")
    return tx


def _lot_part(
    lot_id: str, amount: int, value: int | None = None, value_currency: str | None = None
) -> dict[str, Any]:
    part: dict[str, Any] = {"lot_id": lot_id, "amount": amount}
    if value_currency is not None:
        part["value"] = value or 0
        part["value_currency"] = value_currency
    return part


def _tx_data(tx: WalletTransaction) -> dict[str, object]:
    return {
        "id": tx.id,
        "customer_id": tx.customer_id,
        "currency": tx.currency,
        "amount": tx.amount,
        "balance_after": tx.balance_after,
        "cause": tx.cause,
        "cause_id": tx.cause_id,
        "lots": tx.lots,
    }


async def take_back_topup(
    uow: UnitOfWork, *, source: str, refund_id: str, line_index: int, at: datetime
) -> WalletTransaction:
    """Inside the unit of work that records a refund of a top-up line: take its lots
    back whole (a coin pack's bonus lot with its paid lot). RefundRefused ``topup_spent``
    when any of them has been spent meanwhile.

    The balance row is locked before the lots, as every spend does, so they never
    deadlock; a lot spent meanwhile fails the conditional UPDATE and rolls back."""
    spent = RefundRefused(
        "the top-up's credit has been spent (in part or whole)", code="topup_spent"
    )
    lots = await _topup_lots(uow, source)
    if not lots or any(lot.remaining != lot.amount for lot in lots):
        raise spent
    first, total = lots[0], sum(lot.amount for lot in lots)
    balance = await uow.wallets.debit(first.customer_id, first.currency, total, at)
    taken = [await uow.wallets.take_back_lot(lot.source) for lot in lots]
    if balance is None or any(lot is None for lot in taken):
        raise spent
    return await _refund_move(
        uow,
        lots,
        -total,
        balance,
        cause_id=f"{refund_id}:{line_index}",
        description=f"top-up refunded by {refund_id}",
        at=at,
    )


async def take_back_topup_short(
    uow: UnitOfWork, *, source: str, refund_id: str, line_index: int, at: datetime
) -> WalletTransaction | None:
    """Like :func:`take_back_topup`, for a refund that cannot be refused (Apple's): what
    is left of the top-up's lots is taken back, and what was spent of them becomes the
    wallet's shortfall (``wallet_shortfalls``, flagged by ``wallet.shortfall``): the
    customer owes it, and the ledger's wallet liability shows it as a debit balance.

    The balance row is locked first (as every spend does), then the lots are read and
    emptied by compare-and-set against what was read."""
    lots = await _topup_lots(uow, source)
    if not lots:
        raise AssertionError(f"top-up {source} credited no lot")
    first = lots[0]
    if await uow.wallets.debit(first.customer_id, first.currency, 0, at) is None:
        raise AssertionError(f"wallet {first.customer_id}/{first.currency} has no balance row")
    lots = await _topup_lots(uow, source)  # as of the lock
    if all(lot.remaining == lot.amount for lot in lots):
        return await take_back_topup(
            uow, source=source, refund_id=refund_id, line_index=line_index, at=at
        )
    left = sum(lot.remaining for lot in lots)
    short = sum(lot.amount for lot in lots) - left
    if first.value_currency is None:  # money: what is short is its own value
        value_currency, value = first.currency, short
    else:  # coins: the money value of the coins spent (recognised when they were)
        value_currency = first.value_currency
        value = sum((lot.value or 0) - (lot.value_remaining or 0) for lot in lots)
    for lot in lots:
        if not await uow.wallets.empty_lot(lot.id, lot.remaining):
            raise AssertionError(f"lot {lot.id} changed under the balance lock")
    tx = None
    if left:
        balance = await uow.wallets.debit(first.customer_id, first.currency, left, at)
        if balance is None:
            raise AssertionError(f"wallet {first.customer_id} holds less than its lots")
        tx = await _refund_move(
            uow,
            lots,
            -left,
            balance,
            cause_id=f"{refund_id}:{line_index}",
            description=f"top-up refunded by {refund_id} (in part spent)",
            at=at,
        )
    shortfall = Shortfall(
        id=new_id(Prefix.WALLET_TRANSACTION),
        customer_id=first.customer_id,
        currency=first.currency,
        amount=short,
        value_currency=value_currency,
        value=value,
        cause_id=f"{refund_id}:{line_index}",
        created_at=at,
    )
    if not await uow.wallets.add_shortfall(shortfall):
        raise AssertionError(f"shortfall {shortfall.cause_id} was recorded before")
    await uow.events.emit(
        "wallet.shortfall",
        shortfall.id,
        {
            "id": shortfall.id,
            "customer_id": shortfall.customer_id,
            "currency": shortfall.currency,
            "amount": shortfall.amount,
            "value_currency": shortfall.value_currency,
            "value": shortfall.value,
            "refund_id": refund_id,
        },
        at=at,
    )
    return tx


async def restore_topup(
    uow: UnitOfWork, *, source: str, refund_id: str, line_index: int, at: datetime
) -> None:
    """A refund of a top-up failed: its lots and balance come back (balance first)."""
    lots = await _topup_lots(uow, source)
    assert lots
    first, total = lots[0], sum(lot.amount for lot in lots)
    balance = await uow.wallets.credit(first.customer_id, first.currency, total, at)
    for lot in lots:
        await uow.wallets.restore_lot(lot.id)
    await _refund_move(
        uow,
        lots,
        total,
        balance,
        cause_id=f"{refund_id}:{line_index}:failed",
        description=f"refund {refund_id} failed: the top-up is back",
        at=at,
    )


async def _topup_lots(uow: UnitOfWork, source: str) -> list[LotRecord]:
    found = [
        await uow.wallets.lot_by_source(source),
        await uow.wallets.lot_by_source(bonus_source(source)),
    ]
    return [lot for lot in found if lot is not None]


async def _refund_move(
    uow: UnitOfWork,
    lots: list[LotRecord],
    amount: int,
    balance: int,
    *,
    cause_id: str,
    description: str,
    at: datetime,
) -> WalletTransaction:
    first = lots[0]
    tx, recorded = await _record(
        uow,
        customer_id=first.customer_id,
        currency=first.currency,
        amount=amount,
        balance=balance,
        cause=TransactionCause.REFUND,
        cause_id=cause_id,
        description=description,
        lots=[_lot_part(lot.id, lot.amount, lot.value, lot.value_currency) for lot in lots],
        created_by="system",
        at=at,
    )
    if not recorded:
        raise AssertionError(f"wallet move {tx.cause}:{tx.cause_id} was recorded before")
    return tx


async def _record(
    uow: UnitOfWork,
    *,
    customer_id: str,
    currency: str,
    amount: int,
    balance: int,
    cause: TransactionCause,
    cause_id: str,
    description: str,
    lots: list[dict[str, Any]],
    created_by: str,
    at: datetime,
) -> tuple[WalletTransaction, bool]:
    """Log one credit (``amount`` > 0) or debit with the balance after it, and emit
    ``wallet.credited`` / ``wallet.debited``; False beside it if its cause was logged
    before (UNIQUE), in which case nothing is emitted."""
    tx = WalletTransaction(
        id=new_id(Prefix.WALLET_TRANSACTION),
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        balance_after=balance,
        cause=cause.value,
        cause_id=cause_id,
        description=description[:500],
        lots=lots,
        created_by=created_by,
        created_at=at,
    )
    if not await uow.wallets.record(tx):
        return tx, False
    event = "wallet.credited" if amount > 0 else "wallet.debited"
    await uow.events.emit(event, tx.id, _tx_data(tx), at=at)
    return tx, True


def topup_source(order_id: str, line_index: int) -> str:
    """The lot a top-up line credited (UNIQUE: a retried top-up credits once)."""
    return f"order:{order_id}:{line_index}"


def bonus_source(source: str) -> str:
    """The bonus lot credited beside the paid lot of a coin pack line."""
    return f"{source}:bonus"
