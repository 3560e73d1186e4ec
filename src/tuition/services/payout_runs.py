"""Payout runs: a batch that is proposed, reviewed and approved before money moves.

:func:`propose_run` records, once per schedule and period (UNIQUE), what each payee with
payout details would get: all it has available above the minimum, and the tax that
would be withheld. Nothing moves yet. :func:`approve_run` records the operator and the
time by a compare-and-set from ``proposed`` (two approvals at once: one wins), then
:func:`execute_run` makes each item's payout with the key ``payee:currency:period``
(UNIQUE on payouts), so a run executed twice, by two workers, or again after a crash
between two payouts, makes each payee's payout once. An item whose payee no longer has
the approved amount available is skipped with the reason; nothing more than approved is
ever paid. :func:`retry_failed` pays again what an item's failed payout gave back, once
per failed payout (its key names the failed payout).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from tuition.domain.earnings import TaxProfile, mask_account
from tuition.domain.errors import Conflict, NotFound, TuitionError, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.payouts import GIVEN_BACK, PayoutMethod
from tuition.domain.tax import withhold
from tuition.services.payouts import (
    CreatePayout,
    PayoutDeps,
    create_payout,
    run_period,
    submit_payout,
    tax_month,
)
from tuition.store.payout_runs import PayoutRunRecord, RunItemRecord
from tuition.store.payouts import PayoutRecord
from tuition.store.uow import UnitOfWork

PROPOSED = "proposed"
APPROVED = "approved"
AUTO_APPROVER = "system:auto_approve"  # TUITION_PAYOUT_AUTO_APPROVE's runs name this


@dataclass(frozen=True, slots=True)
class RunView:
    run: PayoutRunRecord
    items: list[RunItemRecord]
    payouts: dict[str, PayoutRecord]  # the items' payouts, by id
    names: dict[str, str]  # payee names, by id
    # Payees whose payout details differ now from those the run was proposed with.
    changed: frozenset[str] = frozenset()

    def approved_to(self, item: RunItemRecord) -> str | None:
        """The account (masked) the item pays to once approved, whatever the payee's says
        now: the one it was proposed with."""
        return mask_account(item.payout_account)

    @property
    def total(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.currency] = out.get(item.currency, 0) + item.amount
        return out


async def propose_run(
    uow: UnitOfWork, *, schedule: str, proposed_by: str, deps: PayoutDeps
) -> tuple[PayoutRunRecord, bool]:
    """The run of the current period of ``schedule``, proposed now unless it was
    already; True when this call proposed it."""
    run, new = await _propose(uow, schedule=schedule, proposed_by=proposed_by, deps=deps)
    assert run is not None
    return run, new


async def propose_due_run(
    uow: UnitOfWork, *, schedule: str, proposed_by: str, deps: PayoutDeps
) -> tuple[PayoutRunRecord | None, bool]:
    """As :func:`propose_run`, but a period in which nobody is due a payout gets no run
    (yet): the schedule's way, so an idle platform collects no empty runs."""
    return await _propose(uow, schedule=schedule, proposed_by=proposed_by, deps=deps, if_due=True)


async def _propose(
    uow: UnitOfWork,
    *,
    schedule: str,
    proposed_by: str,
    deps: PayoutDeps,
    if_due: bool = False,
) -> tuple[PayoutRunRecord | None, bool]:
    now = deps.clock.now()
    period = run_period(now, schedule)
    async with uow:
        existing = await uow.payout_runs.of_period(schedule, period)
        if existing is not None:
            return existing, False
        run = PayoutRunRecord(
            id=new_id(Prefix.PAYOUT_RUN),
            schedule=schedule,
            period=period,
            status=PROPOSED,
            proposed_by=proposed_by,
            approved_by=None,
            approved_at=None,
            created_at=now,
            updated_at=now,
        )
        items: list[RunItemRecord] = []
        for payee in await uow.earnings.list_payees():
            if not payee.payout_account or payee.payout_method is None:
                continue
            for currency, available in sorted((await uow.payouts.available(payee.id)).items()):
                if available < deps.minimum:
                    continue
                tax = 0
                if payee.tax_profile == TaxProfile.INDIVIDUAL.value and (
                    currency == deps.tax_table.currency
                ):
                    paid, withheld = await uow.payouts.month_totals(
                        payee.id, currency, tax_month(now)
                    )
                    tax = withhold(
                        available,
                        paid_this_month=paid,
                        withheld_this_month=withheld,
                        table=deps.tax_table,
                    ).withheld_now
                items.append(
                    RunItemRecord(
                        run_id=run.id,
                        payee_id=payee.id,
                        currency=currency,
                        amount=available,
                        tax_estimate=tax,
                        status=PROPOSED,
                        reason=None,
                        payout_id=None,
                        updated_at=now,
                        # Shown to the approver and paid to once approved.
                        payout_method=payee.payout_method,
                        payout_account=payee.payout_account,
                    )
                )
        if if_due and not items:
            return None, False
        made = await uow.payout_runs.add(run, items)
        if made:
            await uow.events.emit(
                "payout_run.proposed",
                run.id,
                {"id": run.id, "period": period, "payees": len(items)},
                at=now,
            )
            await uow.commit()
    if made:
        return run, True
    # Another process proposed the period's run meanwhile: that one stands.
    async with uow:
        raced = await uow.payout_runs.of_period(schedule, period)
    assert raced is not None
    return raced, False


async def approve_run(uow: UnitOfWork, run_id: str, *, operator: str, deps: PayoutDeps) -> RunView:
    """Approve a proposed run (recording ``operator`` and the time), then pay it."""
    if not operator.strip():
        raise ValidationFailed("the approving operator is required", param="operator")
    now = deps.clock.now()
    async with uow:
        run = await _run(uow, run_id)
        if run.status != PROPOSED:
            raise Conflict(
                f"payout run {run_id} was approved by {run.approved_by} already",
                code="payout_run_approved",
            )
        if not await uow.payout_runs.approve(run_id, operator=operator, at=now):
            raise Conflict(f"payout run {run_id} changed meanwhile", code="payout_run_changed")
        # The payout details the approver saw (taken when the run was proposed) are the
        # ones paid to: a payee's account changed after the proposal does not redirect
        # the run's money. A run proposed before items kept them takes them now.
        accounts: dict[str, tuple[str, str]] = {}
        for item in await uow.payout_runs.items(run_id):
            if item.payout_account is not None:
                continue
            payee = await uow.earnings.payee(item.payee_id)
            if payee is not None and payee.payout_method and payee.payout_account:
                accounts[payee.id] = (payee.payout_method, payee.payout_account)
        await uow.payout_runs.snapshot_accounts(run_id, accounts)
        await uow.events.emit(
            "payout_run.approved", run_id, {"id": run_id, "approved_by": operator}, at=now
        )
        await uow.commit()
    return await execute_run(uow, run_id, deps=deps)


async def execute_run(uow: UnitOfWork, run_id: str, *, deps: PayoutDeps) -> RunView:
    """Make the payout of every item of an approved run that has none yet; safe to run
    again (after a crash, or in two workers at once): each payout's key is UNIQUE."""
    async with uow:
        run = await _run(uow, run_id)
        items = await uow.payout_runs.items(run_id)
    if run.status != APPROVED:
        raise Conflict(f"payout run {run_id} is not approved", code="payout_run_not_approved")
    for item in items:
        if item.status != PROPOSED:
            continue
        key = f"{item.payee_id}:{item.currency}:{run.period}"
        destination = None
        if item.payout_method is not None and item.payout_account:
            destination = (item.payout_method, item.payout_account)
        await _pay_item(
            uow, run, item, key=key, amount=item.amount, deps=deps, destination=destination
        )
    return await view_run(uow, run_id)


async def retry_failed(uow: UnitOfWork, run_id: str, *, operator: str, deps: PayoutDeps) -> RunView:
    """Pay again, once, what each failed or returned payout of the run gave back."""
    view = await view_run(uow, run_id)
    if view.run.status != APPROVED:
        raise Conflict(f"payout run {run_id} is not approved", code="payout_run_not_approved")
    for item in view.items:
        failed = view.payouts.get(item.payout_id or "")
        if failed is None or failed.status not in GIVEN_BACK:
            continue
        await _pay_item(
            uow,
            view.run,
            item,
            key=f"retry:{failed.id}",
            amount=failed.amount,
            deps=deps,
            requested_by=f"run:{run_id}:retry:{operator}",
        )
    return await view_run(uow, run_id)


async def _pay_item(
    uow: UnitOfWork,
    run: PayoutRunRecord,
    item: RunItemRecord,
    *,
    key: str,
    amount: int,
    deps: PayoutDeps,
    requested_by: str | None = None,
    destination: tuple[str, str] | None = None,
) -> None:
    cmd = CreatePayout(
        payee_id=item.payee_id,
        currency=item.currency,
        amount=amount,
        requested_by=requested_by or f"run:{run.id}",
        run_key=key,
        destination=destination,
    )
    try:
        payout: PayoutRecord | None = await create_payout(cmd, uow, deps=deps)
    except Conflict as exc:
        if exc.code != "payout_run_done":
            await _settle(uow, item, status="skipped", payout_id=None, reason=str(exc), deps=deps)
            return
        payout = None  # made by an earlier attempt: link it
    except (ValidationFailed, NotFound) as exc:
        await _settle(uow, item, status="skipped", payout_id=None, reason=str(exc), deps=deps)
        return
    if payout is None:
        async with uow:
            payout = await uow.payouts.by_run_key(key)
        assert payout is not None
    await _settle(uow, item, status="created", payout_id=payout.id, reason=None, deps=deps)
    if payout.method != PayoutMethod.BANK.value:
        # Best effort: the payout's own job sends it or asks again.
        with contextlib.suppress(TuitionError):
            await submit_payout(uow, payout.id, deps=deps)


async def _settle(
    uow: UnitOfWork,
    item: RunItemRecord,
    *,
    status: str,
    payout_id: str | None,
    reason: str | None,
    deps: PayoutDeps,
) -> None:
    async with uow:
        # A concurrent executor may have linked it first; its link stands.
        await uow.payout_runs.settle_item(
            item,
            status=status,
            payout_id=payout_id,
            reason=reason[:500] if reason else None,
            at=deps.clock.now(),
        )
        await uow.commit()


async def view_run(uow: UnitOfWork, run_id: str) -> RunView:
    async with uow:
        run = await _run(uow, run_id)
        items = await uow.payout_runs.items(run_id)
        payouts: dict[str, PayoutRecord] = {}
        names: dict[str, str] = {}
        changed: set[str] = set()
        for item in items:
            if item.payout_id is not None:
                payout = await uow.payouts.get(item.payout_id)
                if payout is not None:
                    payouts[payout.id] = payout
            payee = await uow.earnings.payee(item.payee_id)
            names[item.payee_id] = payee.name if payee is not None else item.payee_id
            if item.payout_account is not None and (
                payee is None
                or (payee.payout_method, payee.payout_account)
                != (item.payout_method, item.payout_account)
            ):
                changed.add(item.payee_id)
    return RunView(run, items, payouts, names, frozenset(changed))


async def _run(uow: UnitOfWork, run_id: str) -> PayoutRunRecord:
    run = await uow.payout_runs.get(run_id)
    if run is None:
        raise NotFound(f"no payout run {run_id}", code="payout_run_not_found", param="run_id")
    return run
