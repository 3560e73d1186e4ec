"""Reconciliation runs: one channel account's business day, its bill against our books.

A run downloads and parses the day's bill (a malformed file raises ``BillMalformed``
before anything is written), loads our payments and refunds of the day and of every
trade the bill names, and classifies them (:mod:`tuition.domain.reconciliation`). Then:

- a 长款 (``gateway_only``) for a payment we hold as unpaid is queried; if the gateway
  says it succeeded, it goes through the one paid path
  (:func:`~tuition.services.settlement.apply_payment_state`, a compare-and-set plus a
  ledger entry with a UNIQUE source, so exactly once) and its case is resolved;
- a 短款 (``ours_only``) is queried and flagged with what the gateway says; nothing is
  ever reversed by a run;
- the day's settlement (what the gateway put in the merchant's account) is posted once,
  ``cash`` debit / ``channel_clearing`` credit, source ``settlement:<channel>:<account>:<day>``;
- the run reports whether channel clearing nets to zero over the bill's items.

A rerun is a new attempt: existing cases are found again (UNIQUE keys), never
duplicated or replaced, and the report says what changed since the previous attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from tuition.channels.base import SupportsBills
from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock
from tuition.domain.earnings import DEFAULT_HOLD, HoldRule
from tuition.domain.errors import ChannelError, Conflict, InvalidRequest
from tuition.domain.ledger import AccountKind, AccountRef, Posting, build_entry
from tuition.domain.payments import PaymentStatus
from tuition.domain.reconciliation import (
    TIMING_WINDOW,
    Bill,
    BillMalformed,
    CaseKind,
    CaseState,
    Classification,
    EntryKind,
    Finding,
    classify,
    day_bounds,
)
from tuition.services.settlement import apply_payment_state
from tuition.store.reconciliation import ReconciliationRepository, RunRecord, item_sources
from tuition.store.uow import UnitOfWork

_BALANCE_KINDS = (AccountKind.CHANNEL_CLEARING, AccountKind.CASH, AccountKind.CHANNEL_FEES)


@dataclass(frozen=True, slots=True)
class ReconcileDeps:
    registry: ChannelRegistry
    clock: Clock
    zone: tzinfo
    hold: HoldRule = DEFAULT_HOLD  # a payment recovered through the paid path holds this


@dataclass(frozen=True, slots=True)
class ReconcileDay:
    channel: str
    day: date


@dataclass(slots=True)
class _Decisions:
    states: dict[str, tuple[CaseState, str | None, str | None]] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def bill_channel(registry: ChannelRegistry, slug: str) -> SupportsBills:
    channel = registry.get(slug)
    if not isinstance(channel, SupportsBills):
        raise InvalidRequest(
            f"channel {slug!r} has no bills to reconcile",
            code="channel_has_no_bills",
            param="channel",
        )
    return channel


def bill_channels(registry: ChannelRegistry) -> list[str]:
    return sorted(c.slug for c in registry if isinstance(c, SupportsBills))


async def reconcile_day(cmd: ReconcileDay, uow: UnitOfWork, *, deps: ReconcileDeps) -> RunRecord:
    """Run the day; returns the new run (its ``report`` says everything it found)."""
    channel = bill_channel(deps.registry, cmd.channel)
    account = deps.registry.get(cmd.channel).app_id
    bill = await channel.fetch_bill(cmd.day)
    neighbours, next_missing = await _neighbours(channel, cmd.day)
    start, end = day_bounds(cmd.day, deps.zone)
    async with uow:
        repo = ReconciliationRepository(uow.conn)
        pays = await repo.our_payments(
            cmd.channel,
            ids={e.payment_id for e in bill.entries if not e.is_refund},
            succeeded_between=(start, end),
            zone=deps.zone,
        )
        refs = await repo.our_refunds(
            cmd.channel,
            ids={e.refund_id for e in bill.entries if e.is_refund and e.refund_id},
            succeeded_between=(start, end),
            zone=deps.zone,
        )
    of_day = [(EntryKind.PAYMENT, p.id) for p in pays.values() if p.business_day == cmd.day]
    of_day += [(EntryKind.REFUND, r.id) for r in refs.values() if r.business_day == cmd.day]
    late = {
        (EntryKind.PAYMENT, p.id)
        for p in pays.values()
        if p.succeeded_at is not None and end - p.succeeded_at <= TIMING_WINDOW
    } | {
        (EntryKind.REFUND, r.id)
        for r in refs.values()
        if r.succeeded_at is not None and end - r.succeeded_at <= TIMING_WINDOW
    }
    found = classify(
        cmd.day,
        bill.entries,
        payments=pays,
        refunds=refs,
        ours_of_day=of_day,
        on_neighbour_bills=frozenset(neighbours),
        awaiting_next_bill=frozenset(late) if next_missing else frozenset(),
    )
    decisions = await _decide(found, uow, deps, cmd.channel)
    # Clearing must net over the bill's rows and our own records of the day, except
    # those a neighbouring day's bill settles (paid across midnight).
    checked = [
        (e.kind, (e.refund_id or "") if e.is_refund else e.payment_id)
        for e in bill.entries
        if e.succeeded
    ]
    checked += [item for item in of_day if item not in neighbours and item not in checked]
    return await _record(cmd, account, bill, found, decisions, checked, uow, deps)


async def _neighbours(channel: SupportsBills, day: date) -> tuple[set[tuple[EntryKind, str]], bool]:
    seen: set[tuple[EntryKind, str]] = set()
    next_missing = False
    for other in (day - timedelta(days=1), day + timedelta(days=1)):
        try:
            bill = await channel.fetch_bill(other)
        except (ChannelError, BillMalformed):
            next_missing = next_missing or other > day
            continue
        seen |= {(e.kind, e.refund_id if e.is_refund else e.payment_id or "") for e in bill.entries}  # type: ignore[misc]
    return seen, next_missing


async def _decide(
    found: Classification, uow: UnitOfWork, deps: ReconcileDeps, slug: str
) -> _Decisions:
    """Query the gateway about 长款 and 短款; apply a confirmed 长款 through the paid path."""
    channel = deps.registry.get(slug)
    decided = _Decisions()
    for finding in found.findings:
        if finding.kind is CaseKind.TIMING and not finding.awaiting:
            decided.states[finding.key] = (CaseState.ACCEPTED, "matched_across_days", None)
            continue
        is_payment = finding.subject is EntryKind.PAYMENT and finding.payment_id is not None
        if finding.kind not in (CaseKind.GATEWAY_ONLY, CaseKind.OURS_ONLY) or not is_payment:
            continue
        assert finding.payment_id is not None
        try:
            state = await channel.query_payment(finding.payment_id)
        except ChannelError as exc:
            decided.notes[finding.key] = f"query failed: {exc.code}"
            continue
        decided.notes[finding.key] = f"the gateway's query says {state.status.value}"
        if finding.kind is CaseKind.OURS_ONLY or finding.amount_ours is None:
            continue  # 短款 is flagged, never reversed; a trade we never opened is flagged
        if state.status is not PaymentStatus.SUCCEEDED or state.amount != finding.amount_gateway:
            continue
        async with uow:
            payment = await uow.payments.get(finding.payment_id)
            assert payment is not None
            now = deps.clock.now()
            settled = await apply_payment_state(
                uow, payment, state, fee_rate=channel.fee_rate, at=now, hold=deps.hold
            )
            await uow.commit()
        note = "recovered through the paid path" if settled.changed else "already paid meanwhile"
        decided.states[finding.key] = (CaseState.RESOLVED, "recovered_paid_path", note)
        decided.recovered.append(finding.payment_id)
    return decided


async def _record(
    cmd: ReconcileDay,
    account: str,
    bill: Bill,
    found: Classification,
    decided: _Decisions,
    checked: list[tuple[EntryKind, str]],
    uow: UnitOfWork,
    deps: ReconcileDeps,
) -> RunRecord:
    now = deps.clock.now()
    async with uow:
        repo = ReconciliationRepository(uow.conn)
        previous = await repo.latest_run(cmd.channel, account, cmd.day)
        run = await repo.add_run(
            channel=cmd.channel,
            account=account,
            day=cmd.day,
            bill_digest=bill.digest,
            status="differences",
            report={},
            at=now,
        )
        if run is None:
            raise Conflict(f"another run of {cmd.channel} {cmd.day} is being recorded; rerun it")
        new = await repo.record_findings(run, found.findings, states=decided.states, at=now)
        for key, (state, resolution, note) in decided.states.items():
            # A case opened by an earlier attempt (a timing case waiting for this bill, a
            # 长款 whose query failed then) is closed now that the run decided it.
            existing = await repo.case_by_key(cmd.channel, account, key)
            if existing is not None and existing.status is CaseState.OPEN and key not in new:
                await repo.close_case(
                    existing.id,
                    target=state,
                    resolution=resolution or state.value,
                    resolved_by="system",
                    note=note or f"decided by the run of {cmd.day.isoformat()}",
                    journal_source=None,
                    at=now,
                )
        settlement = await _post_settlement(uow, cmd, account, bill, deps.zone, now)
        cases = await repo.cases_seen_by(run)
        clearing = await _clearing_check(
            repo, cmd.channel, bill.currency, checked, cases, settlement["source"]
        )
        report = _report(cmd, bill, found, decided, new, cases, settlement, clearing, previous)
        report["balances"] = {
            ref.key: await uow.ledger.balance(ref)
            for ref in _house_accounts(cmd.channel, bill.currency)
        }
        report["time_zone"] = str(deps.zone)
        status = "clean" if report["clean"] else "differences"
        await repo.set_report(run.id, status=status, report=report)
        await uow.commit()
    return RunRecord(**{**_fields(run), "status": status, "report": report})


def _fields(run: RunRecord) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunRecord.__dataclass_fields__}


def settlement_source(channel: str, account: str, day: date) -> str:
    return f"settlement:{channel}:{account}:{day.isoformat()}"


def _house_accounts(channel: str, currency: str) -> list[AccountRef]:
    return [
        AccountRef(kind, currency, channel if kind.qualified else "") for kind in _BALANCE_KINDS
    ]


async def _post_settlement(
    uow: UnitOfWork, cmd: ReconcileDay, account: str, bill: Bill, zone: tzinfo, now: datetime
) -> dict[str, Any]:
    source = settlement_source(cmd.channel, account, cmd.day)
    out: dict[str, Any] = {"source": source, "amount": bill.settled, "fees_taken": bill.fees_taken}
    if not bill.settled:
        out.update(posted=False, differs=False)
        return out
    existing = await uow.ledger.entry_by_source(source)
    if existing is not None:
        cash = sum(p.amount for p in existing.postings if p.account.kind is AccountKind.CASH)
        # A rerun posts nothing again; a bill that changed since is reported, not re-booked.
        out.update(posted=False, already_posted=cash, differs=cash != bill.settled)
        return out
    clearing = AccountRef(AccountKind.CHANNEL_CLEARING, bill.currency, cmd.channel)
    entry = build_entry(
        source,
        f"{cmd.channel} settlement of {cmd.day.isoformat()}",
        [
            Posting(AccountRef(AccountKind.CASH, bill.currency), bill.settled),
            Posting(clearing, -bill.settled),
        ],
        day_bounds(cmd.day, zone)[1] - timedelta(microseconds=1),
    )
    posted = await uow.ledger.post(entry, at=now)
    out.update(posted=posted, differs=False)
    return out


async def _clearing_check(
    repo: ReconciliationRepository,
    channel: str,
    currency: str,
    items: list[tuple[EntryKind, str]],
    cases: Iterable[Any],
    settlement: str,
) -> dict[str, Any]:
    clearing = AccountRef(AccountKind.CHANNEL_CLEARING, currency, channel).key
    adjustments = [c.journal_source for c in cases if c.journal_source]
    residual = await repo.postings_to(clearing, [*item_sources(items), settlement, *adjustments])
    return {"account": clearing, "residual": residual, "nets_to_zero": residual == 0}


def _report(
    cmd: ReconcileDay,
    bill: Bill,
    found: Classification,
    decided: _Decisions,
    new: list[str],
    cases: list[Any],
    settlement: dict[str, Any],
    clearing: dict[str, Any],
    previous: RunRecord | None,
) -> dict[str, Any]:
    findings: list[Finding] = found.findings
    open_cases = [c for c in cases if c.status is CaseState.OPEN]
    ours_only = [f for f in findings if f.kind is CaseKind.OURS_ONLY]
    report: dict[str, Any] = {
        "channel": cmd.channel,
        "business_day": cmd.day.isoformat(),
        "currency": bill.currency,
        "bill": {
            "digest": bill.digest,
            "payments": bill.totals.payments,
            "payment_amount": bill.totals.payment_amount,
            "refunds": bill.totals.refunds,
            "refund_amount": bill.totals.refund_amount,
            "fees": bill.totals.fees,
            "settled": bill.settled,
        },
        "matched": found.matched,
        "findings": dict(Counter(f.kind.value for f in findings)),
        "new_cases": new,
        "open_cases": len(open_cases),
        "differences": sum(1 for f in findings if f.kind is not CaseKind.TIMING),
        "recovered": decided.recovered,
        "queries": decided.notes,
        "ours_unsettled": sum(f.amount_ours or 0 for f in ours_only),
        "settlement": settlement,
        "clearing": clearing,
        "previous": None
        if previous is None
        else {
            "run_id": previous.id,
            "attempt": previous.attempt,
            "bill_changed": previous.bill_digest != bill.digest,
        },
    }
    report["clean"] = (
        not open_cases and clearing["nets_to_zero"] and not settlement.get("differs", False)
    )
    return report


# -- resolving a case -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolveCase:
    run_id: str
    case_id: str
    state: CaseState
    resolved_by: str
    note: str | None = None
    # For a fee mismatch resolved as "resolved": book the gateway's fee (a journal entry).
    book_fee: bool = True


async def resolve_case(cmd: ResolveCase, uow: UnitOfWork, *, clock: Clock) -> Any:
    """``open → resolved | accepted`` by compare-and-set; a resolved fee mismatch books
    the fee the gateway actually took (channel fees against clearing), once."""
    from tuition.domain.errors import NotFound
    from tuition.domain.reconciliation import case_transition

    now = clock.now()
    async with uow:
        repo = ReconciliationRepository(uow.conn)
        run = await repo.get_run(cmd.run_id)
        case = await repo.get_case(cmd.case_id)
        if run is None or case is None or case.channel != run.channel:
            raise NotFound(f"no case {cmd.case_id} in reconciliation {cmd.run_id}", param="case_id")
        case_transition(case.status, cmd.state)
        source = None
        resolution = cmd.state.value
        if (
            cmd.state is CaseState.RESOLVED
            and cmd.book_fee
            and case.kind == CaseKind.FEE_MISMATCH.value
            and case.fee_gateway is not None
            and case.fee_ours is not None
            and case.fee_gateway != case.fee_ours
        ):
            source = f"reconciliation:{case.id}"
            diff = case.fee_gateway - case.fee_ours
            if case.subject == EntryKind.REFUND.value:
                diff = -diff  # a refund's fee came back: more back is less expense
            entry = build_entry(
                source,
                f"fee the gateway took on {case.reference} ({case.business_day})",
                [
                    Posting(AccountRef(AccountKind.CHANNEL_FEES, case.currency), diff),
                    Posting(
                        AccountRef(AccountKind.CHANNEL_CLEARING, case.currency, case.channel), -diff
                    ),
                ],
                now,
            )
            await uow.ledger.post(entry, at=now)
            resolution = "booked_gateway_fee"
        moved = await repo.close_case(
            case.id,
            target=cmd.state,
            resolution=resolution,
            resolved_by=cmd.resolved_by,
            note=cmd.note,
            journal_source=source,
            at=now,
        )
        if not moved:
            raise Conflict(f"case {case.id} was resolved meanwhile", code="case_not_open")
        await uow.commit()
        return await repo.get_case(case.id)


# -- the morning job ------------------------------------------------------------------------

RECONCILE_JOB = "reconcile_day"
# Alipay and WeChat Pay publish the previous day's bills from about 09:00 Beijing time.
BILLS_READY_AT = timedelta(hours=10)
BILL_RETRY = timedelta(hours=1)


def job_subject(channel: str, day: date, zone: tzinfo) -> str:
    return f"{channel}|{day.isoformat()}|{zone}"


def due_subjects(registry: ChannelRegistry, now: datetime, zone: tzinfo) -> list[str]:
    """Yesterday's run of every channel with bills, once today's bills are out."""
    local = now.astimezone(zone)
    start_of_today = day_bounds(local.date(), zone)[0]
    if local - start_of_today < BILLS_READY_AT:
        return []
    yesterday = local.date() - timedelta(days=1)
    return [job_subject(slug, yesterday, zone) for slug in bill_channels(registry)]


async def run_job(
    uow: UnitOfWork,
    subject: str,
    registry: ChannelRegistry,
    clock: Clock,
    hold: HoldRule = DEFAULT_HOLD,
) -> datetime | None:
    """The worker's job: reconcile one channel's day; a bill not out yet is asked again."""
    from zoneinfo import ZoneInfo

    slug, day, zone = subject.split("|")
    deps = ReconcileDeps(registry, clock, ZoneInfo(zone), hold)
    try:
        await reconcile_day(ReconcileDay(slug, date.fromisoformat(day)), uow, deps=deps)
    except ChannelError:
        return clock.now() + BILL_RETRY
    return None
