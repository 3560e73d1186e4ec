"""Earnings: recorded with the paid order, held through the refund window, released by
a job, taken back by refunds (see domain/earnings.py for the rules).

:func:`record_earnings` runs inside the unit of work that books the paid order
(services/settlement.py), :func:`claw_back` inside the one that settles a refund
(services/refund_settlement.py), so an earning, its ledger posting and its hold are
written together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from tuition.clock import Clock, FrozenClock
from tuition.domain.earnings import (
    DEFAULT_HOLD,
    EarningRole,
    HeldEarning,
    HoldRule,
    HoldStatus,
    TaxProfile,
    hold_transition,
    mask_account,
    release_entry,
)
from tuition.domain.errors import NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import AccountKind, AccountRef, JournalEntry
from tuition.domain.money import allocate
from tuition.services import audit
from tuition.services.audit import Actor
from tuition.services.commissions import LineShare
from tuition.services.partners import (
    RateSource,
    StoredRates,
    claw_back_settled,
    settle_released,
    settlements,
)
from tuition.store.earnings import EarningRecord, EarningView, PayeeRecord
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord
from tuition.store.refunds import RefundRecord
from tuition.store.uow import UnitOfWork

RELEASE_JOB = "release_earnings"


async def record_earnings(
    uow: UnitOfWork,
    payment: PaymentRecord,
    order: OrderRecord,
    shares: Sequence[tuple[str, int] | LineShare],
    *,
    paid_at: datetime,
    at: datetime,
    hold: HoldRule = DEFAULT_HOLD,
) -> None:
    """Inside the caller's unit of work: hold each payee's share of each line
    (``shares`` as the payment's entry posted them: the payees' :class:`LineShare`, or
    one ``(creator, share)`` per line) until the order's refund window closes (``hold``:
    the platform's window for a product without one, or a fixed hold), and queue the job
    that releases it. A payment settled again records nothing twice."""
    by_index = {line.line_index: line for line in order.lines}
    given: list[LineShare] = []
    for n, share in enumerate(shares):
        if isinstance(share, LineShare):
            given.append(share)
        else:  # one (creator, share) per line, in line order
            line = order.lines[n]
            payee_id, amount = share
            given.append(
                LineShare(
                    line.line_index, payee_id, EarningRole.CREATOR, line.revenue_share, amount
                )
            )
    lines = [(by_index[s.line_index], s) for s in given if s.amount > 0]
    if not lines:
        return
    await uow.earnings.hold_earnings(
        payment_id=payment.id,
        order_id=order.id,
        currency=payment.currency,
        paid_at=paid_at,
        hold_days=hold.fixed_days,
        default_days=hold.default_days,
        product_ids=sorted({line.product_id for line, _ in lines}),
        rows=[
            EarningRecord(
                id=new_id(Prefix.EARNING),
                payee_id=share.payee_id,
                role=share.role.value,
                payment_id=payment.id,
                order_id=order.id,
                line_index=line.line_index,
                product_id=line.product_id,
                currency=payment.currency,
                base_amount=line.total - line.tax - line.surcharge,
                rate=share.rate,
                amount=share.amount,
                clawed_pending=0,
                clawed_available=0,
                created_at=at,
            )
            for line, share in lines
        ],
        job_kind=RELEASE_JOB,
        at=at,
    )


@dataclass(frozen=True, slots=True)
class Clawback:
    """What a refund takes back from the payees: each line's part per payee (summing to
    the line's ``creator_amount``), and the payees who give back from pending."""

    by_line: dict[int, list[tuple[str, int]]]
    pending: frozenset[str]


async def claw_back(uow: UnitOfWork, refund: RefundRecord, *, at: datetime) -> Clawback:
    """Inside the unit of work settling ``refund``: take each line's payees' part back
    from their earnings, split over what each still holds of the line (the creator's
    share and a referred line's commissions) by largest remainder, so a full refund
    returns each exactly. During the hold it comes from pending; after it from available,
    which may go below zero. A payment settled before earnings were held gives back from
    available, all of it the creator's."""
    parts = [line for line in refund.lines if line.creator_amount > 0]
    if not parts:
        return Clawback({}, frozenset())
    # A split payment's balance part has no earnings of its own: they are held under
    # the channel payment it belongs to (services/settlement.py).
    earned_by = await uow.payments.split_of(refund.payment_id) or refund.payment_id
    status = await uow.earnings.lock_hold_for_clawback(earned_by, at)
    if status is None:  # booked before earnings were held: straight from available
        await uow.earnings.ensure_creator_payees([line.creator_id for line in parts], at)
        for line in parts:
            await uow.payouts.add_available(
                line.creator_id, refund.currency, -line.creator_amount, at
            )
        return Clawback(
            {line.line_index: [(line.creator_id, line.creator_amount)] for line in parts},
            frozenset(),
        )
    pending = status is HoldStatus.PENDING
    # Read under the hold's row lock: every earlier refund's take is counted.
    rows = await uow.earnings.of_payment(earned_by)
    by_line: dict[int, list[tuple[str, int]]] = {}
    conversions: list[JournalEntry] = []
    for line in parts:
        held = sorted(
            (r for r in rows if r.line_index == line.line_index),
            key=lambda r: _ROLE_ORDER[EarningRole(r.role)],
        )
        left = [r.amount - r.clawed_pending - r.clawed_available for r in held]
        if not held or sum(left) < line.creator_amount:
            raise AssertionError(
                f"refund {refund.id} takes back more of line {line.line_index} than it earned"
            )
        taken = allocate(line.creator_amount, left)
        for row, take in zip(held, taken, strict=True):
            if take and not await uow.earnings.claw_back(
                earned_by, line.line_index, row.payee_id, row.role, take, pending=pending
            ):
                raise AssertionError(
                    f"refund {refund.id} takes back more of line {line.line_index} "
                    f"than {row.payee_id} earned"
                )
            if take and not pending:  # after the hold: from available, may go below zero
                # A partner's share was converted when released: it gives back in its
                # own currency, at the rate it was settled at.
                settled = None
                if row.role == EarningRole.PARTNER.value:
                    settled = await claw_back_settled(
                        uow,
                        row,
                        take,
                        source=f"partner_clawback:{refund.id}:{line.line_index}:{row.payee_id}",
                        at=at,
                    )
                if settled is None:
                    await uow.payouts.add_available(row.payee_id, refund.currency, -take, at)
                else:
                    settled_in, given, conversion = settled
                    if given:
                        await uow.payouts.add_available(row.payee_id, settled_in, -given, at)
                    conversions.append(conversion)
        by_line[line.line_index] = [
            (row.payee_id, take) for row, take in zip(held, taken, strict=True) if take
        ]
    # Balances first, then the journal: the lock order of every money path.
    for conversion in conversions:
        await uow.ledger.post(conversion, at=at)
    payees = frozenset(p for split in by_line.values() for p, _ in split)
    return Clawback(by_line, payees if pending else frozenset())


_ROLE_ORDER = {role: n for n, role in enumerate(EarningRole)}


async def release_earnings(
    uow: UnitOfWork, payment_id: str, *, clock: Clock, rates: RateSource | None = None
) -> datetime | None:
    """Make a payment's held earnings available once its hold ends (the worker job); a
    partner's share is converted into its currency then, at the rate ``rates`` gives
    (default: the rates recorded through ``PUT /v1/fx_rates``).

    Returns when to look again if the hold has not ended. Safe to run twice or in two
    workers at once: the hold moves by compare-and-set and the entry's source is UNIQUE.
    """
    later, _released = await _release(uow, payment_id, clock=clock, rates=rates)
    return later


async def release_due(
    uow: UnitOfWork, *, clock: Clock, limit: int = 500, rates: RateSource | None = None
) -> int:
    """Release every hold that has ended (a sweep beside the per-payment jobs); how many
    this call released."""
    async with uow:
        due = await uow.earnings.due_holds(clock.now(), limit=limit)
    released = 0
    for payment_id in due:
        _later, moved = await _release(uow, payment_id, clock=clock, rates=rates)
        released += moved
    return released


async def _release(
    uow: UnitOfWork, payment_id: str, *, clock: Clock, rates: RateSource | None = None
) -> tuple[datetime | None, bool]:
    async with uow:
        hold = await uow.earnings.hold(payment_id)
        if hold is None or hold.status is HoldStatus.RELEASED:
            return None, False
        now = clock.now()
        if hold.release_at > now:
            return hold.release_at, False
        hold_transition(hold.status, HoldStatus.RELEASED)
        if not await uow.earnings.release(payment_id, now=now):
            return None, False  # another worker released it
        rows = await uow.earnings.of_payment(payment_id)
        entry = release_entry(
            payment_id,
            hold.currency,
            [HeldEarning(r.payee_id, r.amount, r.clawed_pending) for r in rows],
            occurred_at=now,
        )
        # A partner's share becomes its currency's, at the rate in force now.
        plan = await settle_released(
            uow,
            payment_id=payment_id,
            currency=hold.currency,
            released=[(r, r.amount - r.clawed_pending) for r in rows],
            at=now,
            rates=rates or StoredRates(),
        )
        for payee_id, amounts in sorted(plan.gains.items()):
            for currency, amount in sorted(amounts.items()):
                if amount:  # nets a negative balance left by an earlier clawback
                    await uow.payouts.add_available(payee_id, currency, amount, now)
        if entry is not None:
            await uow.ledger.post(entry, at=now)
        for conversion in plan.entries:
            await uow.ledger.post(conversion, at=now)
        await settlements(uow).add_settlements(plan.records)
        await uow.events.emit(
            "earnings.released",
            payment_id,
            {
                "payment_id": payment_id,
                "order_id": hold.order_id,
                "currency": hold.currency,
                "released": [
                    {"payee_id": r.payee_id, "amount": r.amount - r.clawed_pending} for r in rows
                ],
            },
            at=now,
        )
        await uow.commit()
    return None, True


# --- reads ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayeeBalance:
    currency: str
    pending: int  # in the refund hold
    available: int  # may be below zero after a clawback: netted against later earnings
    in_payout: int = 0  # net of tax, payouts not yet paid
    paid_out: int = 0  # net of tax
    tax_withheld: int = 0


async def payee_of(uow: UnitOfWork, payee_id: str) -> PayeeRecord:
    payee = await uow.earnings.payee(payee_id)
    if payee is None:
        raise NotFound(f"no payee {payee_id}", code="payee_not_found", param="payee_id")
    return payee


async def balance_of(uow: UnitOfWork, payee_id: str) -> tuple[PayeeRecord, list[PayeeBalance]]:
    """A payee's balances per currency, read from its ledger accounts."""
    async with uow:
        payee = await payee_of(uow, payee_id)
        return payee, await balances_within(uow, payee_id)


async def balances_within(uow: UnitOfWork, payee_id: str) -> list[PayeeBalance]:
    """As :func:`balance_of`, inside a unit of work the caller has open (an export reads
    every payee's balances on its one connection)."""
    accounts = await uow.earnings.account_balances(payee_id)
    payouts = await uow.payouts.totals(payee_id)
    by_currency: dict[str, dict[AccountKind, int]] = {c: {} for c in payouts}
    for key, amount in accounts.items():
        account = AccountRef.parse(key)
        by_currency.setdefault(account.currency, {})[account.kind] = -amount  # credit-normal
    return [
        PayeeBalance(
            currency=currency,
            pending=kinds.get(AccountKind.CREATOR_PENDING, 0),
            available=kinds.get(AccountKind.CREATOR_PAYABLE, 0),
            **payouts.get(currency, {}),
        )
        for currency, kinds in sorted(by_currency.items())
    ]


async def update_payee(
    uow: UnitOfWork,
    payee_id: str,
    *,
    at: datetime,
    name: str | None = None,
    tax_profile: TaxProfile | None = None,
    payout_method: str | None = None,
    payout_account: str | None = None,
    actor: Actor = audit.SYSTEM,
) -> PayeeRecord:
    """Change a payee's name, tax profile or payout details (given fields only), audited
    (the account masked)."""
    values: dict[str, str | None] = {}
    if name is not None:
        values["name"] = name
    if tax_profile is not None:
        values["tax_profile"] = tax_profile.value
    if payout_method is not None:
        if not payout_account:
            raise ValidationFailed("a payout method needs its account", param="payout_account")
        values["payout_method"] = payout_method
        values["payout_account"] = payout_account
    async with uow:
        before = await payee_of(uow, payee_id)
        if values:
            await uow.earnings.update_payee(payee_id, at, **values)
        payee = await payee_of(uow, payee_id)
        if values:
            await audit.record(
                uow.conn,
                actor,
                "payee.updated",
                payee_id,
                clock=FrozenClock(at),
                before=_payee_facts(before),
                after=_payee_facts(payee),
            )
        await uow.commit()
    return payee


def _payee_facts(payee: PayeeRecord) -> dict[str, str | None]:
    return {
        "name": payee.name,
        "tax_profile": payee.tax_profile,
        "payout_method": payee.payout_method,
        "payout_account": mask_account(payee.payout_account),
    }


async def earnings_of(
    uow: UnitOfWork, payee_id: str, *, limit: int, starting_after: str | None
) -> tuple[list[EarningView], bool]:
    async with uow:
        await payee_of(uow, payee_id)
        page, more = await uow.earnings.of_payee(
            payee_id, limit=limit, starting_after=starting_after
        )
        settled = await settlements(uow).of_earnings([v.earning.id for v in page])
    return [replace(v, settlement=settled.get(v.earning.id)) for v in page], more


async def payee_problems(uow: UnitOfWork) -> list[str]:
    """Payees whose held earnings differ from their ``creator_pending`` account (for
    ``tuition ledger verify``, beside the wallets). Every payee on record is checked; a
    pending posting for an id that is no payee (an entry posted by hand) is not."""
    async with uow:
        known = {p.id for p in await uow.earnings.list_payees()}
        records = {
            AccountKind.CREATOR_PENDING: await uow.earnings.pending_totals(),
            AccountKind.CREATOR_PAYABLE: await uow.payouts.all_available(),
            AccountKind.CREATOR_IN_PAYOUT: {
                (p, c): t["in_payout"]
                for p in known
                for c, t in (await uow.payouts.totals(p)).items()
                if t["in_payout"]
            },
        }
        ledger = await uow.ledger.balances()
    booked: dict[AccountKind, dict[tuple[str, str], int]] = {kind: {} for kind in records}
    for key, amount in ledger.items():
        account = AccountRef.parse(key)
        if account.kind in booked and account.qualifier in known and amount:
            booked[account.kind][(account.qualifier, account.currency)] = -amount
    problems = []
    for kind, kept in records.items():
        kept = {k: v for k, v in kept.items() if v}
        for payee, currency in sorted(kept.keys() | booked[kind].keys()):
            have, want = kept.get((payee, currency), 0), booked[kind].get((payee, currency), 0)
            if have != want:
                problems.append(f"payee {payee}/{currency}: {_LABELS[kind]} {have}, {kind} {want}")
    return problems


_LABELS = {
    AccountKind.CREATOR_PENDING: "held earnings",
    AccountKind.CREATOR_PAYABLE: "available balance",
    AccountKind.CREATOR_IN_PAYOUT: "payouts under way",
}
