"""Reconciliation runs and cases, and the reads a run makes of payments, refunds and the
ledger (a read side: plain queries over the tables)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.ids import Prefix, new_id
from tuition.domain.reconciliation import (
    CaseState,
    EntryKind,
    Finding,
    OurPayment,
    OurRefund,
    business_day,
)
from tuition.store.db import insert_ignoring_conflicts
from tuition.store.tables import (
    journal_entries,
    payments,
    postings,
    reconciliation_cases,
    reconciliation_runs,
    refunds,
)


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    channel: str
    account: str
    business_day: str
    attempt: int
    bill_digest: str
    status: str
    report: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CaseRecord:
    id: str
    run_id: str
    last_run_id: str
    channel: str
    account: str
    business_day: str
    case_key: str
    kind: str
    subject: str
    reference: str
    payment_id: str | None
    refund_id: str | None
    currency: str
    amount_ours: int | None
    amount_gateway: int | None
    fee_ours: int | None
    fee_gateway: int | None
    detail: str
    status: CaseState
    resolution: str | None
    resolved_by: str | None
    note: str | None
    journal_source: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime


_RUN_FIELDS = list(RunRecord.__dataclass_fields__)
_CASE_FIELDS = list(CaseRecord.__dataclass_fields__)


def _run(m: Any) -> RunRecord:
    return RunRecord(**{f: m[f] for f in _RUN_FIELDS})


def _case(m: Any) -> CaseRecord:
    values = {f: m[f] for f in _CASE_FIELDS}
    values["status"] = CaseState(values["status"])
    return CaseRecord(**values)


class ReconciliationRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # -- runs -------------------------------------------------------------------------

    async def add_run(
        self,
        *,
        channel: str,
        account: str,
        day: date,
        bill_digest: str,
        status: str,
        report: dict[str, Any],
        at: datetime,
    ) -> RunRecord | None:
        """A new attempt for the day; None if a racing run took the same attempt number."""
        last = await self.conn.scalar(
            select(func.max(reconciliation_runs.c.attempt)).where(
                reconciliation_runs.c.channel == channel,
                reconciliation_runs.c.account == account,
                reconciliation_runs.c.business_day == day.isoformat(),
            )
        )
        record = RunRecord(
            id=new_id(Prefix.RECONCILIATION),
            channel=channel,
            account=account,
            business_day=day.isoformat(),
            attempt=(last or 0) + 1,
            bill_digest=bill_digest,
            status=status,
            report=report,
            created_at=at,
        )
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, reconciliation_runs).values(
                **{f: getattr(record, f) for f in _RUN_FIELDS}
            )
        )
        return record if result.rowcount == 1 else None

    async def set_report(self, run_id: str, *, status: str, report: dict[str, Any]) -> None:
        await self.conn.execute(
            update(reconciliation_runs)
            .where(reconciliation_runs.c.id == run_id)
            .values(status=status, report=report)
        )

    async def latest_run(self, channel: str, account: str, day: date) -> RunRecord | None:
        row = (
            (
                await self.conn.execute(
                    select(reconciliation_runs)
                    .where(
                        reconciliation_runs.c.channel == channel,
                        reconciliation_runs.c.account == account,
                        reconciliation_runs.c.business_day == day.isoformat(),
                    )
                    .order_by(reconciliation_runs.c.attempt.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _run(row)

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = (
            (
                await self.conn.execute(
                    select(reconciliation_runs).where(reconciliation_runs.c.id == run_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _run(row)

    async def runs(
        self, *, channel: str | None = None, day: date | None = None, limit: int = 100
    ) -> list[RunRecord]:
        query = select(reconciliation_runs)
        if channel is not None:
            query = query.where(reconciliation_runs.c.channel == channel)
        if day is not None:
            query = query.where(reconciliation_runs.c.business_day == day.isoformat())
        query = query.order_by(
            reconciliation_runs.c.business_day.desc(),
            reconciliation_runs.c.channel,
            reconciliation_runs.c.attempt.desc(),
        ).limit(limit)
        return [_run(m) for m in (await self.conn.execute(query)).mappings()]

    # -- cases ------------------------------------------------------------------------

    async def record_findings(
        self,
        run: RunRecord,
        findings: Sequence[Finding],
        *,
        states: dict[str, tuple[CaseState, str | None, str | None]],
        at: datetime,
    ) -> list[str]:
        """Insert each finding's case unless it exists; mark every one seen by ``run``.
        ``states`` gives a new case a state other than open (key -> state, resolution,
        note). Returns the keys of the cases that are new."""
        new: list[str] = []
        for finding in findings:
            state, resolution, note = states.get(finding.key, (CaseState.OPEN, None, None))
            values = {
                "id": new_id(Prefix.RECONCILIATION_CASE),
                "run_id": run.id,
                "last_run_id": run.id,
                "channel": run.channel,
                "account": run.account,
                "business_day": run.business_day,
                "case_key": finding.key,
                "kind": finding.kind.value,
                "subject": finding.subject.value,
                "reference": finding.reference[:64],
                "payment_id": finding.payment_id,
                "refund_id": finding.refund_id,
                "currency": finding.currency,
                "amount_ours": finding.amount_ours,
                "amount_gateway": finding.amount_gateway,
                "fee_ours": finding.fee_ours,
                "fee_gateway": finding.fee_gateway,
                "detail": finding.detail[:500],
                "status": state.value,
                "resolution": resolution,
                "resolved_by": None if state is CaseState.OPEN else "system",
                "note": note,
                "journal_source": None,
                "resolved_at": None if state is CaseState.OPEN else at,
                "created_at": at,
                "updated_at": at,
            }
            result = await self.conn.execute(
                insert_ignoring_conflicts(self.conn, reconciliation_cases).values(**values)
            )
            if result.rowcount == 1:
                new.append(finding.key)
        if findings:
            await self.conn.execute(
                update(reconciliation_cases)
                .where(
                    reconciliation_cases.c.channel == run.channel,
                    reconciliation_cases.c.account == run.account,
                    reconciliation_cases.c.case_key.in_([f.key for f in findings]),
                )
                .values(last_run_id=run.id)
            )
        return new

    async def cases(
        self,
        *,
        channel: str | None = None,
        account: str | None = None,
        day: date | None = None,
        status: CaseState | None = None,
        kind: str | None = None,
        limit: int = 500,
    ) -> list[CaseRecord]:
        c = reconciliation_cases.c
        query = select(reconciliation_cases)
        if channel is not None:
            query = query.where(c.channel == channel)
        if account is not None:
            query = query.where(c.account == account)
        if day is not None:
            query = query.where(c.business_day == day.isoformat())
        if status is not None:
            query = query.where(c.status == status.value)
        if kind is not None:
            query = query.where(c.kind == kind)
        query = query.order_by(c.business_day.desc(), c.created_at, c.id).limit(limit)
        return [_case(m) for m in (await self.conn.execute(query)).mappings()]

    async def cases_seen_by(self, run: RunRecord) -> list[CaseRecord]:
        """The cases of the run's day, and those it saw again (found on earlier days)."""
        c = reconciliation_cases.c
        query = (
            select(reconciliation_cases)
            .where(
                c.channel == run.channel,
                c.account == run.account,
                or_(c.business_day == run.business_day, c.last_run_id == run.id),
            )
            .order_by(c.created_at, c.id)
        )
        return [_case(m) for m in (await self.conn.execute(query)).mappings()]

    async def case_by_key(self, channel: str, account: str, key: str) -> CaseRecord | None:
        c = reconciliation_cases.c
        row = (
            (
                await self.conn.execute(
                    select(reconciliation_cases).where(
                        c.channel == channel, c.account == account, c.case_key == key
                    )
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _case(row)

    async def get_case(self, case_id: str) -> CaseRecord | None:
        row = (
            (
                await self.conn.execute(
                    select(reconciliation_cases).where(reconciliation_cases.c.id == case_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _case(row)

    async def close_case(
        self,
        case_id: str,
        *,
        target: CaseState,
        resolution: str,
        resolved_by: str,
        note: str | None,
        journal_source: str | None,
        at: datetime,
    ) -> bool:
        """Compare-and-set ``open → target``; False if the case was not open."""
        result = await self.conn.execute(
            update(reconciliation_cases)
            .where(
                reconciliation_cases.c.id == case_id,
                reconciliation_cases.c.status == CaseState.OPEN.value,
            )
            .values(
                status=target.value,
                resolution=resolution,
                resolved_by=resolved_by,
                note=note,
                journal_source=journal_source,
                resolved_at=at,
                updated_at=at,
            )
        )
        return result.rowcount == 1

    # -- our records ------------------------------------------------------------------

    async def our_payments(
        self,
        channel: str,
        *,
        ids: Collection[str],
        succeeded_between: tuple[datetime, datetime],
        zone: tzinfo,
    ) -> dict[str, OurPayment]:
        start, end = succeeded_between
        c = payments.c
        of_day = and_(
            c.channel == channel,
            c.status == "succeeded",
            c.succeeded_at >= start,
            c.succeeded_at < end,
        )
        condition = or_(of_day, c.id.in_(list(ids))) if ids else of_day
        rows = (await self.conn.execute(select(payments).where(condition))).mappings()
        return {
            m["id"]: OurPayment(
                id=m["id"],
                status=m["status"],
                amount=m["amount"],
                fee=m["fee"],
                currency=m["currency"],
                channel_trade_no=m["channel_trade_no"],
                business_day=None
                if m["succeeded_at"] is None
                else business_day(m["succeeded_at"], zone),
                succeeded_at=m["succeeded_at"],
            )
            for m in rows
            if m["channel"] == channel
        }

    async def our_refunds(
        self,
        channel: str,
        *,
        ids: Collection[str],
        succeeded_between: tuple[datetime, datetime],
        zone: tzinfo,
    ) -> dict[str, OurRefund]:
        start, end = succeeded_between
        r = refunds.c
        query = select(refunds, payments.c.channel).join(payments, payments.c.id == r.payment_id)
        of_day = and_(
            payments.c.channel == channel,
            r.status == "succeeded",
            r.succeeded_at >= start,
            r.succeeded_at < end,
        )
        condition = or_(of_day, r.id.in_(list(ids))) if ids else of_day
        rows = (await self.conn.execute(query.where(condition))).mappings()
        return {
            m["id"]: OurRefund(
                id=m["id"],
                payment_id=m["payment_id"],
                status=m["status"],
                amount=m["amount"],
                currency=m["currency"],
                fee_returned=m["fee_returned"],
                business_day=None
                if m["succeeded_at"] is None
                else business_day(m["succeeded_at"], zone),
                succeeded_at=m["succeeded_at"],
            )
            for m in rows
            if m["channel"] == channel
        }

    async def postings_to(self, account_key: str, sources: Collection[str]) -> int:
        """The sum of the postings to ``account_key`` by the entries of ``sources``."""
        if not sources:
            return 0
        total = await self.conn.scalar(
            select(func.coalesce(func.sum(postings.c.amount), 0))
            .select_from(
                postings.join(journal_entries, journal_entries.c.seq == postings.c.entry_seq)
            )
            .where(
                postings.c.account_key == account_key,
                journal_entries.c.source.in_(list(sources)),
            )
        )
        return int(total or 0)


def item_sources(entries: Sequence[tuple[EntryKind, str]]) -> list[str]:
    """The ledger sources of bill items (``payment:…`` / ``refund:…``)."""
    return [f"{kind.value}:{ref}" for kind, ref in entries]
