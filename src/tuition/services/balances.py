"""Changes to a customer's wallet balance: credit a lot, spend from the oldest lots.

Used inside the caller's unit of work by whatever causes the change (a paid top-up, a
payment from balance, a refund of one, an operator's adjustment); the caller posts the
ledger entry beside it.
"""

from __future__ import annotations

from datetime import datetime

from tuition.domain.errors import Conflict
from tuition.domain.ids import Prefix, new_id
from tuition.domain.refunds import RefundRefused
from tuition.domain.wallet import InsufficientBalance, LotKind, TransactionCause, consume_fifo
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import LotRecord, WalletTransaction


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
) -> WalletTransaction | None:
    """Inside an open unit of work: credit a lot; None if ``source`` was credited before
    (a retried top-up credits once, whatever the notification count)."""
    lot_id = new_id(Prefix.WALLET_LOT)
    lot = LotRecord(lot_id, customer_id, currency, kind.value, source, amount, amount, at)
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
        lots=[(lot_id, amount)],
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
) -> WalletTransaction:
    """Inside an open unit of work: spend ``amount`` from the oldest lots first.

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
    taken = consume_fifo(await uow.wallets.open_lots(customer_id, currency), amount)
    for lot_id, part in taken:
        await uow.wallets.take_from_lot(lot_id, part)
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
    """Inside the unit of work that records a refund of a top-up line: take its lot back
    whole. RefundRefused ``topup_spent`` when any of it has been spent meanwhile.

    The balance row is locked before the lot, as every spend does, so they never
    deadlock; a lot spent meanwhile fails the conditional UPDATE and rolls back."""
    spent = RefundRefused(
        "the top-up's credit has been spent (in part or whole)", code="topup_spent"
    )
    found = await uow.wallets.lot_by_source(source)
    if found is None or found.remaining != found.amount:
        raise spent
    balance = await uow.wallets.debit(found.customer_id, found.currency, found.amount, at)
    lot = await uow.wallets.take_back_lot(source)
    if balance is None or lot is None:
        raise spent
    return await _refund_move(
        uow,
        lot,
        -lot.amount,
        balance,
        cause_id=f"{refund_id}:{line_index}",
        description=f"top-up refunded by {refund_id}",
        at=at,
    )


async def restore_topup(
    uow: UnitOfWork, *, source: str, refund_id: str, line_index: int, at: datetime
) -> None:
    """A refund of a top-up failed: its lot and balance come back (balance first)."""
    lot = await uow.wallets.lot_by_source(source)
    assert lot is not None
    balance = await uow.wallets.credit(lot.customer_id, lot.currency, lot.amount, at)
    await uow.wallets.restore_lot(lot.id)
    await _refund_move(
        uow,
        lot,
        lot.amount,
        balance,
        cause_id=f"{refund_id}:{line_index}:failed",
        description=f"refund {refund_id} failed: the top-up is back",
        at=at,
    )


async def _refund_move(
    uow: UnitOfWork,
    lot: LotRecord,
    amount: int,
    balance: int,
    *,
    cause_id: str,
    description: str,
    at: datetime,
) -> WalletTransaction:
    tx, recorded = await _record(
        uow,
        customer_id=lot.customer_id,
        currency=lot.currency,
        amount=amount,
        balance=balance,
        cause=TransactionCause.REFUND,
        cause_id=cause_id,
        description=description,
        lots=[(lot.id, abs(amount))],
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
    lots: list[tuple[str, int]],
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
        lots=[{"lot_id": lot_id, "amount": part} for lot_id, part in lots],
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
