"""Correcting top-ups booked as sales by versions before the wallet.

Those versions booked a paid top-up like a course: the creator's share to the creator
and the rest to platform revenue, no wallet lot, nothing owed to the buyer. Nothing is
rewritten: each such top-up line gets a **correcting entry** (source
``topup_correction:<order>:<line>``, UNIQUE, so a second run posts nothing) that takes
the creator's share and the revenue back and credits the buyer's wallet liability, and
the buyer's wallet gets the lot the top-up should have credited, in the same
transaction. Postings for a line of net amount ``n``, creator share ``s`` (as the old
entry computed it) and credit ``c``::

    creator_payable:<cur>:<creator>   +s        the share it was never owed
    platform_revenue:<cur>            +(c - s)  revenue back (less, for a generous pack)
    customer_wallet:<cur>:<customer>  -c        owed to the buyer from now on

which is exactly the difference between the old entry and the one this version posts.
Shares booked then are the creator's available balance, so the share also leaves the
payee's available balance (which may go negative, netted against later earnings).
"""

from __future__ import annotations

from dataclasses import dataclass

from tuition.clock import Clock
from tuition.domain.ledger import AccountKind, AccountRef, Posting, build_entry, creator_shares
from tuition.domain.wallet import LotKind, TransactionCause
from tuition.services.balances import credit, topup_source
from tuition.services.settlement import topup_lines
from tuition.store.uow import UnitOfWork


@dataclass(frozen=True, slots=True)
class Correction:
    order_id: str
    line_index: int
    customer_id: str
    currency: str
    creator_id: str
    creator_share: int
    credit: int


async def wrong_topups(uow: UnitOfWork) -> list[Correction]:
    """Top-up lines of paid orders that were booked as sales: their payment's entry
    credits no wallet and no lot was ever credited."""
    found: list[Correction] = []
    async with uow:
        for order_id in await uow.orders.paid_with_kind("topup"):
            order = await uow.orders.get(order_id)
            payment = None if order is None else await uow.payments.paying(order_id)
            if order is None or payment is None:
                continue
            entry = await uow.ledger.entry_by_source(f"payment:{payment.id}")
            if entry is None or any(
                p.account.kind is AccountKind.CUSTOMER_WALLET for p in entry.postings
            ):
                continue
            lines = {line.line_index: line for line in order.lines}
            for topup in await topup_lines(uow, order):
                if topup.coins is not None:  # coin packs came with the wallet
                    continue
                if await uow.wallets.lot_by_source(topup_source(order.id, topup.index)):
                    continue
                line = lines[topup.index]
                net = line.total - line.tax - line.surcharge
                (share,) = creator_shares([net], [line.revenue_share])
                found.append(
                    Correction(
                        order.id,
                        topup.index,
                        order.customer_id,
                        order.currency,
                        line.creator_id,
                        share,
                        topup.value,
                    )
                )
    return found


async def correct_topups(uow: UnitOfWork, *, clock: Clock) -> list[Correction]:
    """Post the correcting entry and credit the lot for every wrong top-up line; the
    ones corrected by this call (none on a second run)."""
    done = []
    for fix in await wrong_topups(uow):
        now = clock.now()
        async with uow:
            source = topup_source(fix.order_id, fix.line_index)
            lot = await credit(
                uow,
                customer_id=fix.customer_id,
                currency=fix.currency,
                amount=fix.credit,
                kind=LotKind.TOPUP,
                source=source,
                cause=TransactionCause.TOPUP,
                cause_id=f"{fix.order_id}:{fix.line_index}",
                description=f"top-up, order {fix.order_id} (corrected: it was booked as a sale)",
                created_by="system",
                at=now,
            )
            if lot is None:  # corrected meanwhile by another run
                continue
            if fix.creator_share:  # the share leaves what the creator may be paid out
                await uow.payouts.add_available(
                    fix.creator_id, fix.currency, -fix.creator_share, now
                )
            lines = [
                (
                    AccountRef(AccountKind.CREATOR_PAYABLE, fix.currency, fix.creator_id),
                    fix.creator_share,
                ),
                (
                    AccountRef(AccountKind.PLATFORM_REVENUE, fix.currency),
                    fix.credit - fix.creator_share,
                ),
                (
                    AccountRef(AccountKind.CUSTOMER_WALLET, fix.currency, fix.customer_id),
                    -fix.credit,
                ),
            ]
            await uow.ledger.post(
                build_entry(
                    f"topup_correction:{fix.order_id}:{fix.line_index}",
                    f"top-up of order {fix.order_id} line {fix.line_index} was booked as a "
                    "sale: share and revenue back, the buyer's wallet credited",
                    [Posting(account, amount) for account, amount in lines if amount],
                    now,
                ),
                at=now,
            )
            await uow.commit()
        done.append(fix)
    return done
